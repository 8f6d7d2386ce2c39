"""LabHub: the asyncio service between the lab's devices, InfluxDB and its users."""

__version__ = "0.1.0"
