"""Fixtures: the real mosquitto and influxd, started once per test session on free loopback ports, and hubs.

Only tests under this directory see them: a unit test cannot start a service by asking for one."""

from __future__ import annotations

import asyncio
import shutil
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
