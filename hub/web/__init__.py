"""The HTTP API and pages (aiohttp), built by create_app from a small dependencies object."""
