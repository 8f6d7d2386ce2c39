"""SIGTERM stops a test run the way Ctrl-C does: every fixture's finalizer runs, so the session's mosquitto and
influxd processes are stopped with it. By default SIGTERM killed pytest outright and left them running.

asyncio's `remove_signal_handler` puts SIGTERM back to its default (the in-process lab and hub install their
own handler while they run), so the handler is installed again after each test."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

import pytest


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def install() -> None:
    if signal.getsignal(signal.SIGTERM) is not _interrupt:
        signal.signal(signal.SIGTERM, _interrupt)


def pytest_configure(config: Any) -> None:
    install()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: Any, nextitem: Any) -> None:
    install()
