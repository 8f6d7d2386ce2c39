"""Fixtures: the real mosquitto and influxd, started once per test session on free loopback ports, and hubs.

Only tests under this directory see them: a unit test cannot start a service by asking for one."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.access.dynsec import HUB_USER
from hub.config import DeviceConfig, HubConfig, InfluxConfig, LabConfig, MqttConfig
from hub.credentials import read_secret
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port
from hub.runtime import Hub
from tests.conftest import make_state_dir, unique


@dataclass
class Services:
    state_dir: Path
    mqtt_port: int
    influx_port: int
    mosquitto: Service
    influxd: Service

    @property
    def hub_auth(self) -> tuple[str, str]:
        """The hub's broker account, for tests that speak as the hub (publishing commands)."""
        password = read_secret(self.state_dir / "secrets" / "mqtt-hub")
        assert password is not None
        return HUB_USER, password

    @property
    def influx_url(self) -> str:
        return f"http://127.0.0.1:{self.influx_port}"


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    state = make_state_dir("labhub-test-")
    mqtt_port = free_port()
    influx_port = free_port()
    mosquitto = start_mosquitto(state, port=mqtt_port, open_mode=True)
    try:
        influxd = start_influxd(state, http_port=influx_port, rpc_port=free_port())
    except BaseException:
        mosquitto.stop()
        raise
    try:
        yield Services(state, mqtt_port, influx_port, mosquitto, influxd)
    finally:
        influxd.stop()
        mosquitto.stop()
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class ClosedLab:
    """A *closed* mosquitto (anonymous clients refused, each account's client id its own), as `labhub up` runs by
    default; the rest of the suite shares a broker in classroom open mode. Its registry is `state`'s, which the
    CLI (`cli`) and a hub made with `config` share; every test makes its own cohort, accounts and database."""

    state: Path
    port: int
    broker: Service

    @property
    def internal_port(self) -> int:
        """The listener of the hub and the security admin."""
        return MqttConfig(port=self.port).hub_port

    def secret(self, name: str) -> str:
        value = read_secret(self.state / "secrets" / name)
        assert value is not None
        return value

    @property
    def hub_auth(self) -> tuple[str, str]:
        return HUB_USER, self.secret("mqtt-hub")

    @property
    def cli_log(self) -> Path:
        return self.state / "cli.log"

    def config(self, services: Services, *, own_registry: bool = False, **hub_options: Any) -> LabConfig:
        """A hub on this broker with its own database; `own_registry`: a registry of its own (it then knows only
        the devices its test adds), not the lab's that the CLI writes."""
        name = unique()
        if own_registry:
            hub_options["registry"] = str(self.state / "registries" / f"{name}.sqlite3")
        return LabConfig(
            state_dir=self.state,
            mqtt=MqttConfig(port=self.port, launch=False, client_id=f"hub-{name}"),
            influx=InfluxConfig(url=services.influx_url, database=name, launch=False),
            hub=HubConfig(http_port=0, open_mode=False, **hub_options),
        )

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """`labhub …` as a trainer runs it, against this lab; its stderr (the log) is kept for the secrets grep."""
        config = self.state / "lab.toml"
        if not config.exists():
            config.write_text(f'state_dir = "{self.state}"\n[mqtt]\nport = {self.port}\nlaunch = false\n')
        done = subprocess.run(
            [sys.executable, "-m", "hub.cli", *args, "--config", str(config)],
            capture_output=True,
            text=True,
            timeout=30,
        )
        with open(self.cli_log, "a") as fh:
            fh.write(done.stderr)
        assert done.returncode == 0, done.stderr + done.stdout
        return done

    def logs(self) -> str:
        """The broker's log and the CLI's."""
        return "\n".join(p.read_text(errors="replace") for p in (self.broker.log_path, self.cli_log) if p.exists())

    def stop(self) -> None:
        self.broker.stop()
        shutil.rmtree(self.state, ignore_errors=True)


def start_closed_lab(max_connections: int = MqttConfig().max_connections) -> ClosedLab:
    """A new closed broker; a test that counts connections starts its own with a small `max_connections`."""
    state = make_state_dir("labhub-closed-")
    port = free_port()
    try:
        return ClosedLab(
            state, port, start_mosquitto(state, port=port, open_mode=False, max_connections=max_connections)
        )
    except BaseException:
        shutil.rmtree(state, ignore_errors=True)
        raise


@pytest.fixture(scope="session")
def closed() -> Iterator[ClosedLab]:
    """The session's closed broker, started when a test first asks for it."""
    lab = start_closed_lab()
    try:
        yield lab
    finally:
        lab.stop()


def lab_config(services: Services, *, devices: tuple[tuple[str, str], ...] = (), **hub_options: Any) -> LabConfig:
    """A config for one test: its own database and client id, the session's broker and influxd."""
    name = unique()
    hub_options.setdefault("open_mode", True)  # the session's broker runs in classroom open mode
    hub_options.setdefault("registry", str(services.state_dir / "registries" / f"{name}.sqlite3"))
    return LabConfig(
        state_dir=services.state_dir,
        mqtt=MqttConfig(port=services.mqtt_port, launch=False, client_id=f"hub-{name}"),
        influx=InfluxConfig(url=services.influx_url, database=name, launch=False),
        hub=HubConfig(http_port=0, **hub_options),
        languages={},
        devices=tuple(DeviceConfig(DeviceRef.parse(ref), kind) for ref, kind in devices),
    )


HubFactory = Callable[..., Awaitable[Hub]]


@pytest.fixture
async def running() -> AsyncIterator[Callable[..., asyncio.Task[Any]]]:
    """Start coroutines for a test (a bridge, a simulator); cancel them at its end."""
    tasks: list[asyncio.Task[Any]] = []

    def start(coro: Any) -> asyncio.Task[Any]:
        tasks.append(asyncio.create_task(coro))
        return tasks[-1]

    yield start
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


@pytest.fixture
async def start_hub(services: Services) -> AsyncIterator[HubFactory]:
    """Start hubs for a test (stopped at its end); `start_hub(config=...)` or `start_hub(devices=..., **hub options)`."""
    running: list[tuple[Hub, asyncio.Task[None]]] = []

    async def start(config: LabConfig | None = None, worker: int = 0, workers: int = 1, **kwargs: Any) -> Hub:
        hub = Hub(config or lab_config(services, **kwargs), worker=worker, workers=workers)
        task = asyncio.create_task(hub.run())
        ready = asyncio.create_task(hub.ready.wait())
        await asyncio.wait([task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # startup failed: raise its error
        if not hub.mqtt.connected.is_set():
            raise AssertionError(f"hub did not connect: {hub.mqtt.last_error}")
        running.append((hub, task))
        return hub

    yield start
    for hub, task in running:
        hub.stop()
        try:
            await asyncio.wait_for(asyncio.shield(task), 30)
        except TimeoutError:
            raise AssertionError(f"the hub did not stop within 30 s; where each task waits:\n{task_stacks()}") from None


def task_stacks() -> str:
    """Every task's await chain and every thread's stack: what a hub that will not stop is waiting for (CI saw
    one, once, stuck after "stopping")."""
    lines = []
    for task in asyncio.all_tasks():
        lines.append(f"task {task.get_name()}:")
        coro: Any = task.get_coro()
        while coro is not None:
            frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
            if frame is not None:
                lines.append(f"  {frame.f_code.co_filename}:{frame.f_lineno} {frame.f_code.co_name}")
            coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
    for ident, top in sys._current_frames().items():
        lines.append(f"thread {ident}:")
        lines.extend(f"  {f.filename}:{f.lineno} {f.name}" for f in traceback.extract_stack(top)[-6:])
    return "\n".join(lines)
