"""Arm commands: the relay's state machine, commands over MQTT, and their audit trail."""
