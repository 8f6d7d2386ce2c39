"""Bridges from other transports to the lab's MQTT topics: USB-serial boards."""
