"""Stand-in for MicroPython's `machine`: what a kit's main.py may call on a board."""

import os
import sys


def reset() -> None:
    sys.exit(0)


def unique_id() -> bytes:
    return os.getpid().to_bytes(4, "big")
