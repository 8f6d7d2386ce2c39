"""The `labhub` command line: one module per command group; `main.py` assembles them (`python -m hub.cli`)."""
