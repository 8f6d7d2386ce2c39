"""The device contract, pure (no I/O library, nothing from hub): topics, kinds, decoding and validation of payloads,
the problems and their EN/FR feedback, arm profiles and command checks, serial framing. Shared by the hub, the
simulators and firmware authors.
"""
