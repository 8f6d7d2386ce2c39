"""Stand-ins that let a kit's firmware run on this machine: Arduino headers for g++ and MicroPython modules."""
