"""Issue 12, the serial bridge's README promises: `port_absent` and a board back within a second of being plugged
in; `port_not_connected` (a command never kept for later); `write_failed` after 1 s; at most 2 problem reports a
second (the rest counted); disabling a device disables its bridge account. Boards behind real pseudo-terminals,
the real broker and hub."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from firmware_sim.serial import PtyPort
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.integration.test_serial import bridged
from tests.support import MqttListener, MqttPublisher, wait_until

# From the README.
REPORTS_PER_S = 2
BACK_WITHIN_S = 1.0  # a replugged (or late) board is back within a second
WRITE_TIMEOUT_S = 1.0


def read_line(port: PtyPort, timeout: float = 3.0) -> bytes:
    """The next line the bridge wrote down the cable (what the board reads)."""
    deadline = time.monotonic() + timeout
    data = b""
    while not data.endswith(b"\n"):
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing came down the cable (so far {data!r})")
        data += port.read()
        time.sleep(0.005)
    return data


async def test_an_absent_port_is_reported_and_the_board_is_bridged_within_a_second_of_plugging_in(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tmp_path / "ttyACM0")  # not plugged in
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        running(bridge.run())
        absent = await errors.next_json(timeout=5)
        assert absent["code"] == "port_absent" and str(port.path) in absent["message"] and absent["hint"]
        await asyncio.sleep(0.7)  # the scenario: the board is plugged in a while later
        port.plug()
        plugged = time.monotonic()
        await asyncio.wait_for(bridge.port_open.wait(), 5)
        took = time.monotonic() - plugged
    finally:
        errors.close()
        port.unplug()
    assert took <= BACK_WITHIN_S, took


async def test_a_command_while_the_port_is_closed_is_reported_and_never_sent_later(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tmp_path / "ttyACM1")
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    hub_side = MqttPublisher(services.mqtt_port, auth=services.hub_auth)  # only the hub publishes commands
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        running(bridge.run())
        await asyncio.wait_for(bridge.mqtt.subscribed.wait(), 5)
        assert (await errors.next_json(timeout=5))["code"] == "port_absent"
        await hub_side.publish(f"lab/{key}/commands", json.dumps({"id": "old", "type": "stop"}))
        refused = await errors.next_json(timeout=3)
        assert refused["code"] == "port_not_connected" and refused["hint"]
        port.plug()
        await asyncio.wait_for(bridge.port_open.wait(), 5)
        await hub_side.publish(f"lab/{key}/commands", json.dumps({"id": "new", "type": "stop"}))
        first = await asyncio.to_thread(read_line, port)
    finally:
        errors.close()
        hub_side.close()
        port.unplug()
    assert json.loads(first) == {"id": "new", "type": "stop"}  # the old order never reaches the arm


async def test_a_write_the_board_does_not_take_fails_after_1_s_with_write_failed(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tmp_path / "ttyACM2")
    port.plug()
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    hub_side = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        running(bridge.run())
        await asyncio.wait_for(bridge.port_open.wait(), 5)
        await asyncio.wait_for(bridge.mqtt.subscribed.wait(), 5)
        # A board that never reads its port: the cable's buffer towards it is full.
        fd = os.open(port.path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY)
        try:
            for _ in range(100):  # the terminal layer moves data on behind the scenes: fill until it stays full
                if not fill(fd):
                    break
                await asyncio.sleep(0.05)
        finally:
            os.close(fd)
        sent = time.monotonic()
        await hub_side.publish(f"lab/{key}/commands", json.dumps({"id": "m1", "type": "stop"}))
        failed = await errors.next_json(timeout=WRITE_TIMEOUT_S + 2)
        took = time.monotonic() - sent
    finally:
        errors.close()
        hub_side.close()
        port.unplug()
    assert failed["code"] == "write_failed" and failed["hint"], failed
    assert WRITE_TIMEOUT_S - 0.1 <= took <= WRITE_TIMEOUT_S + 0.7, took


def fill(fd: int) -> int:
    """Write into the cable until it takes no more; how many bytes it took."""
    taken = 0
    with contextlib.suppress(BlockingIOError):
        while True:
            taken += os.write(fd, b"z" * 4096)
    return taken


async def test_serial_problems_are_reported_at_most_2_a_second_and_the_rest_counted(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tmp_path / "ttyACM3")
    port.plug()
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        running(bridge.run())
        await asyncio.wait_for(bridge.port_open.wait(), 5)
        await asyncio.wait_for(bridge.mqtt.connected.wait(), 5)
        started = time.monotonic()
        lines = 0
        arrivals: list[tuple[float, dict[str, Any]]] = []
        while time.monotonic() - started < 2.5:  # a noisy cable: 50 debug prints a second for 2.5 s
            port.write(b"Booting sensor...\n")
            lines += 1
            await asyncio.sleep(0.02)
            while errors.pending():
                arrivals.append((time.monotonic() - started, await errors.next_json()))
        await wait_until(lambda: bridge.stats.problems == lines, what="the bridge to read every line")
        await asyncio.sleep(1.0 / REPORTS_PER_S + 0.1)  # the scenario: quiet a moment, then one more problem
        port.write(b"Booting sensor...\n")
        lines += 1
        last = await errors.next_json(timeout=3)
    finally:
        errors.close()
        port.unplug()
    assert all(m["code"] == "not_a_reading" for _, m in arrivals) and last["code"] == "not_a_reading"
    later = [at for at, _ in arrivals if at >= 1.0]  # past the first second (a burst may go first: see the report)
    assert len(later) <= REPORTS_PER_S * 1.5 + 1, later  # 1.5 s of steady noise: at most 2 a second
    assert last["suppressed_before"] >= 1
    reports = [m for _, m in arrivals] + [last]
    assert len(reports) + sum(m.get("suppressed_before", 0) for m in reports) == lines  # the rest counted


async def test_disabling_a_device_disables_its_bridge_account(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tmp_path / "ttyACM4")
    port.plug()
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        running(bridge.run())
        await asyncio.wait_for(bridge.mqtt.connected.wait(), 5)
        connects = bridge.mqtt.connects
        await hub.accounts.set_device_enabled(key, False)
        await wait_until(lambda: not bridge.mqtt.connected.is_set(), timeout=2, what="the bridge cut off")
        await asyncio.sleep(1.5)  # the scenario: the bridge keeps trying (0.2 s, 0.4 s, 0.8 s backoff)
        assert not bridge.mqtt.connected.is_set() and bridge.mqtt.connects == connects, "the bridge got back in"
        await hub.accounts.set_device_enabled(key, True)
        await asyncio.wait_for(bridge.mqtt.connected.wait(), 6)  # and back when enabled again
    finally:
        port.unplug()
