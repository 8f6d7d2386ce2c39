"""Fixtures: the real mosquitto and influxd, started once per test session on free loopback ports, and hubs."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.access.credentials import read_secret
from hub.access.dynsec import HUB_USER
from hub.config import DeviceConfig, HubConfig, InfluxConfig, LabConfig, MqttConfig
from hub.ops.services import Service, free_port, start_influxd, start_mosquitto
from hub.runtime import Hub


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


def make_state_dir(prefix: str) -> Path:
    """A temp dir the broker's unprivileged user can reach (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def scratch() -> Iterator[Callable[[str], Path]]:
    """Make state dirs (see make_state_dir) that are removed after the test."""
    made: list[Path] = []

    def new(prefix: str) -> Path:
        made.append(make_state_dir(prefix))
        return made[-1]

    yield new
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


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


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


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
        await asyncio.wait_for(task, 30)


# Every log record of the run (INFO and up) also goes to one file, which the last test greps for secrets.
SESSION_LOG = Path(tempfile.gettempdir()) / f"labhub-test-log-{os.getpid()}.log"
LAST = "test_no_secret_appears_in_any_log"


def pytest_configure(config: Any) -> None:
    handler = logging.FileHandler(SESSION_LOG, mode="w")
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def pytest_unconfigure(config: Any) -> None:
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == str(SESSION_LOG):
            logging.getLogger().removeHandler(handler)
            handler.close()
    SESSION_LOG.unlink(missing_ok=True)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    """The secrets grep runs last, so it sees the logs of every other test."""
    items.sort(key=lambda item: item.name == LAST)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault tests' counts (published, stored, lost, duplicates), printed whatever the outcome."""
    from tests.test_faults import REPORT

    if REPORT:
        terminalreporter.section("fault tests")
        for line in REPORT:
            terminalreporter.write_line(line)
