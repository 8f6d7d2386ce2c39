"""Bridges to the tools makers already run (Home Assistant, Node-RED): they read the lab, never write to it."""
