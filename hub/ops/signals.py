"""Stopping on SIGINT (Ctrl-C), SIGTERM or SIGHUP, for everything that runs until stopped.

SIGHUP is what a closed terminal sends: by default it killed `labhub up` outright, and the mosquitto and influxd
it had started (in sessions of their own, so the hangup does not reach them) kept running with its ports. Under
`nohup` (SIGHUP ignored from the start) it stays ignored: that lab is meant to outlive its terminal."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Coroutine, Iterable
from typing import Any


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGINT and SIGTERM; SIGHUP too, unless this process was started with it ignored (`nohup`)."""
    hangup = () if signal.getsignal(signal.SIGHUP) is signal.SIG_IGN else (signal.SIGHUP,)
    return (signal.SIGINT, signal.SIGTERM, *hangup)


def stop_on_signals() -> asyncio.Event:
    """An event that SIGINT, SIGTERM or SIGHUP sets (for the commands that run until stopped)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in stop_signals():
        loop.add_signal_handler(sig, stop.set)
    return stop


async def run_until_stopped(jobs: Iterable[Coroutine[Any, Any, object]], stop: asyncio.Event) -> None:
    """Run `jobs` side by side until `stop` is set, then cancel them; one job's failure cancels the others."""
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(job) for job in jobs]
        await stop.wait()
        for task in tasks:
            task.cancel()
