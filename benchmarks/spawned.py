"""A throwaway lab for the benchmarks that run the hub from a config object (`bench_export.py`, `bench_ws.py`):
a temporary state dir with the lab's own mosquitto (open mode) and influxd on free ports, and the hub in a
spawned interpreter of its own, as `labhub hub` runs. Everything is stopped, and the state dir removed, on exit.
`clean_up` is the other benchmarks' end of a state dir."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.connection
import resource
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from hub.config import LabConfig, MqttConfig
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port


def clean_up(state: Path, passed: bool) -> None:
    """A benchmark's state dir once its services are stopped: removed after a passing run (the broker's event log
    alone reaches hundreds of MB), kept after a failing one, for its logs."""
    if passed:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"the lab's state (logs) is kept in {state}")


def raise_fd_limit() -> None:
    """Hundreds of connections in one process (and mosquitto, which inherits it)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass(frozen=True)
class Services:
    state: Path
    mqtt_port: int
    influx_port: int
    broker_pid: int

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"


@contextlib.contextmanager
def services(prefix: str, max_connections: int = MqttConfig().max_connections) -> Iterator[Services]:
    raise_fd_limit()
    state = Path(tempfile.mkdtemp(prefix=prefix))
    state.chmod(0o755)
    mqtt_port, influx_port = free_port(), free_port()
    try:
        broker = start_mosquitto(state, port=mqtt_port, open_mode=True, max_connections=max_connections)
        try:
            influxd = start_influxd(state, http_port=influx_port, rpc_port=free_port())
            try:
                yield Services(state, mqtt_port, influx_port, broker.proc.pid)
            finally:
                influxd.stop()
        finally:
            broker.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)


def _serve(cfg: LabConfig, port_out: multiprocessing.connection.Connection) -> None:
    raise_fd_limit()
    from hub.runtime import Hub

    async def main() -> None:
        hub = Hub(cfg)
        task = asyncio.create_task(hub.run())
        await hub.ready.wait()
        port_out.send(hub.http_port)
        await task

    asyncio.run(main())


@contextlib.contextmanager
def hub_process(cfg: LabConfig, timeout_s: float = 60.0) -> Iterator[tuple[int, psutil.Process]]:
    """The hub of `cfg` (`http_port = 0`: any free port) in its own process: its HTTP port and process."""
    ctx = multiprocessing.get_context("spawn")
    ours, theirs = ctx.Pipe()
    proc = ctx.Process(target=_serve, args=(cfg, theirs), daemon=True)
    proc.start()
    try:
        if not ours.poll(timeout_s):
            raise SystemExit(f"the hub did not start in {timeout_s:.0f} s")
        assert proc.pid is not None
        yield ours.recv(), psutil.Process(proc.pid)
    finally:
        proc.terminate()
        proc.join(30)
