"""The lab doctor: diagnoses a device's firmware from the broker's events and the hub's traffic."""
