"""Run a kit's MicroPython main.py on CPython: `python run_main.py KIT_FOLDER` (main.py and secrets.py there).

This folder's stand-ins (`umqtt.simple`, `network`, `ntptime`, `machine`) come first on the path; the kit's
folder before them, so its `secrets.py` is the one imported (as on the board, not the standard library's).
`time` is CPython's own module (it cannot be shadowed) given MicroPython's ticks_ms/ticks_diff/sleep_ms; with
KIT_SPEEDUP=n the board's clock runs n times faster (its periods pass sooner), wall-clock time stays real.
"""

import os
import runpy
import sys
import time

SPEEDUP = float(os.environ.get("KIT_SPEEDUP", "1"))
_START = time.monotonic()


def ticks_ms() -> int:
    return int((time.monotonic() - _START) * 1000 * SPEEDUP)


def ticks_diff(a: int, b: int) -> int:
    return a - b


def sleep_ms(ms: int) -> None:
    time.sleep(ms / 1000 / SPEEDUP)


time.ticks_ms = ticks_ms  # type: ignore[attr-defined]
time.ticks_diff = ticks_diff  # type: ignore[attr-defined]
time.sleep_ms = sleep_ms  # type: ignore[attr-defined]

if __name__ == "__main__":
    kit = os.path.abspath(sys.argv[1])
    sys.path[:0] = [kit, os.path.dirname(os.path.abspath(__file__))]
    sys.modules.pop("secrets", None)
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    runpy.run_path(os.path.join(kit, "main.py"), run_name="__main__")
