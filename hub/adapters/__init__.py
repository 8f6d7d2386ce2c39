"""The only importers of the I/O libraries: paho-mqtt (mqtt, paho_fastpath), InfluxDB's HTTP APIs (influx,
influx_read, influxql) and pyserial (serial_port). Foreign objects become our own types here."""
