"""The lab runner's lifecycle with a stand-in hub and stand-in services: what a stop signal, a dead service or a
dead worker does, and that everything started is stopped. Real signals to this process; no service is started
(the workers are tiny Python processes)."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from hub.config import LabConfig
from hub.ops import lab
from hub.ops.lab import LabPlan, run_lab
from hub.ops.services import Service, spawn, wait_ready
from hub.ops.signals import run_until_stopped
from hub.pace import Backoff

Script = Callable[["FakeHub"], Awaitable[None]]


async def idle(hub: FakeHub) -> None:
    pass


class FakeHub:
    """Ready at once; runs `script` beside it and runs until stopped."""

    drain_s = 0.0  # how long it takes to stop

    def __init__(
        self, script: Script, cfg: LabConfig, worker: int, workers: int, services: Callable[[], Any] = tuple
    ) -> None:
        self.cfg, self.worker, self.workers = cfg, worker, workers
        self.services = services  # what health would show of the lab's services
        self.script = script
        self.http_port = 8123
        self.tls = None  # no LAN mode
        self.ready = asyncio.Event()
        self.stops = 0
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self.stops += 1
        asyncio.get_running_loop().call_later(self.drain_s, self._stop.set)

    async def run(self) -> None:
        self.ready.set()
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self.script(self))
            await self._stop.wait()


def fake_hubs(monkeypatch: pytest.MonkeyPatch, script: Script) -> list[FakeHub]:
    made: list[FakeHub] = []

    def make(cfg: LabConfig, report_every_s: float, worker: int, workers: int, services: Any = tuple) -> FakeHub:
        made.append(FakeHub(script, cfg, worker, workers, services))
        return made[-1]

    monkeypatch.setattr(lab, "Hub", make)
    return made


def signal_when(sig: int, ready: Callable[[], bool] = lambda: True) -> Script:
    """A script that sends `sig` to this process once `ready()` (and the lab has had a moment to print)."""

    async def script(hub: FakeHub) -> None:
        await asyncio.sleep(0.05)
        while not ready():  # noqa: ASYNC110 (a file another process writes)
            await asyncio.sleep(0.01)
        signal.raise_signal(sig)

    return script


NO_PID = 2**22 + 1  # above Linux's largest pid: no process, so the lab's record (hub.ops.leftovers) skips it


@dataclass
class FakeService:
    name: str
    life: int = 1_000_000  # how many alive() checks it survives
    stopped: bool = False
    proc: Any = field(
        default_factory=lambda: SimpleNamespace(returncode=None, send_signal=lambda sig: None, pid=NO_PID)
    )

    def alive(self) -> bool:
        self.life -= 1
        if self.life < 0:
            self.proc.returncode = 3
        return self.life >= 0

    def log_tail(self) -> str:
        return "last words"

    def stop(self) -> None:
        self.stopped = True


def cfg_in(tmp_path: Path) -> LabConfig:
    return LabConfig(tmp_path / "state")


async def run(plan: LabPlan) -> int:
    """The lab's exit code; a lab that does not stop fails the test instead of hanging it."""
    async with asyncio.timeout(10):
        return await run_lab(plan)


async def test_a_stop_signal_stops_the_hub_and_the_lab_ends_cleanly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    hubs = fake_hubs(monkeypatch, signal_when(signal.SIGTERM))
    assert await run(LabPlan(cfg_in(tmp_path), workers=2, worker=0)) == 0
    [hub] = hubs
    assert hub.stops == 1 and (hub.worker, hub.workers) == (0, 2)
    out = capsys.readouterr().out
    assert "LabHub is up" in out and "http://127.0.0.1:8123/" in out  # the port the hub really has
    assert (tmp_path / "state").stat().st_mode & 0o077 in (0, 0o011)  # made private before anything runs


async def test_only_worker_0_prints_the_banner(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_hubs(monkeypatch, signal_when(signal.SIGINT))
    assert await run(LabPlan(cfg_in(tmp_path), workers=2, worker=1)) == 0
    assert "LabHub is up" not in capsys.readouterr().out


async def test_a_service_that_keeps_dying_stops_the_lab_with_code_1(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    hubs = fake_hubs(monkeypatch, idle)
    broker, database = FakeService("mosquitto"), FakeService("influxd", life=3)  # each restart: still dead
    monkeypatch.setattr(lab, "service_starters", lambda cfg, abort: [lambda: broker, lambda: database])
    monkeypatch.setattr(lab, "SERVICE_CHECK_S", 0.01)
    monkeypatch.setattr(lab, "SERVICE_RESTART", Backoff(0.01, 0.01, jitter=False))
    with caplog.at_level(logging.INFO, logger="labhub"):
        assert await run(LabPlan(cfg_in(tmp_path), whole_lab=True)) == 1
    assert hubs[0].stops == 1 and broker.stopped and database.stopped
    messages = [r.getMessage() for r in caplog.records if r.name == "labhub"]
    restarts = [m for m in messages if m.startswith("influxd exited (code 3); restarting it")]
    assert len(restarts) == lab.FAST_FAILURES - 1 and restarts[0].endswith("Its log:\nlast words")
    assert (
        f"influxd exited (code 3), {lab.FAST_FAILURES} times within 60 s; stopping the lab. Its log:\nlast words"
        in messages
    )
    assert messages[-1] == "lab stopped"  # said last, once the services are down


async def test_a_service_that_dies_is_started_again_and_health_shows_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The lab goes on; the restart reuses the same start; the new process is the one stopped with the lab."""
    first, second = FakeService("influxd", life=3), FakeService("influxd")
    databases = [first, second]
    seen: list[Any] = []

    async def stop_once_restarted(hub: FakeHub) -> None:
        while not [s for s in hub.services() if s.restarts]:
            seen.extend(s for s in hub.services() if not s.up)
            await asyncio.sleep(0.005)
        seen.extend(hub.services())
        signal.raise_signal(signal.SIGTERM)

    fake_hubs(monkeypatch, stop_once_restarted)
    monkeypatch.setattr(lab, "service_starters", lambda cfg, abort: [lambda: databases.pop(0)])
    monkeypatch.setattr(lab, "SERVICE_CHECK_S", 0.01)
    monkeypatch.setattr(lab, "SERVICE_RESTART", Backoff(0.05, 0.05, jitter=False))
    with caplog.at_level(logging.INFO, logger="labhub"):
        assert await run(LabPlan(cfg_in(tmp_path), whole_lab=True)) == 0
    assert databases == [] and second.stopped and not first.stopped
    down, up = seen[0], seen[-1]
    assert (down.name, down.up, down.restarts, down.last_exit) == ("influxd", False, 0, 3)
    assert (up.up, up.restarts, up.last_exit) == (True, 1, 3)
    messages = [r.getMessage() for r in caplog.records if r.name == "labhub"]
    assert "influxd exited (code 3); restarting it in 0.1 s. Its log:\nlast words" in messages


async def test_a_stop_signal_while_services_start_stops_those_started_and_the_hub_never_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    hubs = fake_hubs(monkeypatch, idle)
    broker = FakeService("mosquitto")
    started: list[str] = []

    def start_broker() -> FakeService:  # runs in a thread, as a real start-up does
        started.append("mosquitto")
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.2)  # Ctrl-C comes while the broker is still starting
        return broker

    def start_database() -> FakeService:
        started.append("influxd")
        return FakeService("influxd")

    monkeypatch.setattr(lab, "service_starters", lambda cfg, abort: [start_broker, start_database])
    assert await run(LabPlan(cfg_in(tmp_path), whole_lab=True)) == 128 + signal.SIGINT
    assert started == ["mosquitto"] and broker.stopped and hubs == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_stop_signal_while_a_service_waits_for_its_port_ends_the_lab_at_once_and_stops_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sig: signal.Signals
) -> None:
    """Ctrl-C during a start that never answers: the start gives up at once and its process is stopped."""
    hubs = fake_hubs(monkeypatch, idle)
    spawned: list[Service] = []

    def start_stuck(abort: threading.Event | None) -> Service:  # a real process that never opens its port, waited
        argv = [sys.executable, "-c", "import time; time.sleep(60)"]  # for as the real starts do
        spawned.append(spawn("stand-in", argv, tmp_path / "stand-in.log", "127.0.0.1:1"))
        wait_ready(spawned[-1], lambda: False, timeout=5, abort=abort)
        return spawned[-1]

    monkeypatch.setattr(lab, "service_starters", lambda cfg, abort: [functools.partial(start_stuck, abort)])

    async def ctrl_c() -> float:
        while not spawned:  # noqa: ASYNC110 (a list a thread fills)
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # well into the wait for the port
        signal.raise_signal(sig)
        return time.monotonic()

    code, signalled_at = await asyncio.gather(run(LabPlan(cfg_in(tmp_path), whole_lab=True)), ctrl_c())
    assert time.monotonic() - signalled_at < 1.0
    assert code == 128 + sig and hubs == []
    with pytest.raises(ProcessLookupError):
        os.kill(spawned[0].proc.pid, 0)  # terminated and reaped


async def test_a_worker_that_dies_is_restarted_until_the_lab_stops(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    runs = tmp_path / "runs"
    monkeypatch.setattr(lab, "WORKER_RESTART", Backoff(0.01, 0.01, jitter=False))

    fake_hubs(monkeypatch, signal_when(signal.SIGTERM, lambda: runs.exists() and len(runs.read_text()) >= 3))
    worker = (sys.executable, "-c", f"open({str(runs)!r}, 'a').write('x')")
    with caplog.at_level(logging.INFO, logger="labhub"):
        assert await run(LabPlan(cfg_in(tmp_path), extra_workers=(worker,), workers=2)) == 0
    restarts = [r.getMessage() for r in caplog.records if "restarting it" in r.getMessage()]
    assert len(restarts) >= 2 and restarts[0] == "worker 1 exited with code 0; restarting it"
    count = len(runs.read_text())
    await asyncio.sleep(0.2)
    assert len(runs.read_text()) == count  # none started after the lab stopped


async def test_a_running_worker_is_stopped_with_the_lab(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"

    fake_hubs(monkeypatch, signal_when(signal.SIGTERM, lambda: pid_file.exists() and bool(pid_file.read_text())))
    code = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    assert await run(LabPlan(cfg_in(tmp_path), extra_workers=((sys.executable, "-c", code),), workers=2)) == 0
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)  # terminated and reaped


async def test_jobs_run_until_stopped_then_are_cancelled() -> None:
    stop = asyncio.Event()
    cancelled: list[str] = []

    async def job(name: str) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append(name)
            raise

    async def stopper() -> None:
        await asyncio.sleep(0.01)
        stop.set()

    async with asyncio.timeout(5):
        await run_until_stopped([job("a"), job("b"), stopper()], stop)
    assert sorted(cancelled) == ["a", "b"]


async def test_a_failing_job_cancels_the_others() -> None:
    cancelled: list[str] = []

    async def job() -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.append("job")
            raise

    async def broken() -> None:
        raise ValueError("broken board")

    with pytest.raises(ExceptionGroup) as failed:
        async with asyncio.timeout(5):
            await run_until_stopped([job(), broken()], asyncio.Event())
    assert failed.group_contains(ValueError) and cancelled == ["job"]


async def test_a_worker_that_stops_with_the_lab_is_not_restarted(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A terminal's Ctrl-C reaches the workers too: one that exits while the hub drains is not started again."""
    pids = tmp_path / "pids"
    monkeypatch.setattr(lab, "WORKER_RESTART", Backoff(0.01, 0.01, jitter=False))
    monkeypatch.setattr(FakeHub, "drain_s", 0.5)

    async def ctrl_c(hub: FakeHub) -> None:
        while not pids.exists() or not pids.read_text():  # noqa: ASYNC110 (a file another process writes)
            await asyncio.sleep(0.01)
        os.kill(int(pids.read_text().split()[0]), signal.SIGINT)
        signal.raise_signal(signal.SIGINT)

    fake_hubs(monkeypatch, ctrl_c)
    code = f"import os, time; open({str(pids)!r}, 'a').write(f'{{os.getpid()}} '); time.sleep(60)"
    with caplog.at_level(logging.INFO, logger="labhub"):
        assert await run(LabPlan(cfg_in(tmp_path), extra_workers=((sys.executable, "-c", code),), workers=2)) == 0
    assert len(pids.read_text().split()) == 1
    assert not [r for r in caplog.records if "restarting it" in r.getMessage()]


def test_a_lab_that_is_its_process_settles_the_collector() -> None:
    import gc

    from hub.ops.lab import GC_YOUNG, settle_gc

    before = gc.get_threshold()
    try:
        settle_gc()
        assert gc.get_threshold()[0] == GC_YOUNG and gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)
