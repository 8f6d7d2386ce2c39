"""Running a lab: the lab runner, mosquitto and influxd as child processes, the simulated fleet, the banner."""
