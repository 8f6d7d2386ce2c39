"""USB-serial boards behind real pseudo-terminals, bridged to the real broker, hub and InfluxDB: readings, SDS011
frames, an arm's commands, unplug/replug. Framing without a broker is unit-tested (tests/unit/test_serial.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devices.arm import load_profiles
from firmware_sim.serial import PtyPort, Sds011Sensor, SerialArm
from hub.bridges.serial_bridge import Bridge
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import MqttListener, api_token, count_when_stable, influx_query, wait_until

# Boards behind pseudo-terminals, through the real broker, hub and InfluxDB ------------------------------------


@pytest.fixture
def tty_dir(tmp_path: Path) -> Path:
    return tmp_path


async def bridged(hub: Hub, services: Services, key: str, kind: str, port: Path, protocol: str) -> Bridge:
    """Register the device and run a bridge for it, logged in with its own bridge account."""
    await hub.accounts.add_device(key, kind)
    hub.apply_registry()
    login = await hub.accounts.bridge_login(key)
    from devices.topics import DeviceRef

    return Bridge(
        DeviceRef.parse(key),
        str(port),
        protocol,
        mqtt_port=services.mqtt_port,
        username=login.username,
        password=login.password,
    )


async def test_a_lines_sketch_is_stored_and_its_noise_reported(
    services: Services, start_hub: HubFactory, tty_dir: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    cohort = unique("s")
    key = f"{cohort}/ana/uno"
    port = PtyPort(tty_dir / "ttyACM0")
    port.plug()
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    try:
        bridge = await bridged(hub, services, key, "generic", port.path, "lines")
        running(bridge.run())
        await bridge.port_open.wait()
        port.write(b"\x00\xff\xfe\x8c\x91 boot noise\r\n")  # a reset's garbage, then the sketch's lines
        port.write(b"temp=21.5,hum=40\r\n")
        port.write(b"Sensor ready!\r\ntemp=21.7,hum=41\r\n")
        db = hub.cfg.influx.database
        assert (
            await count_when_stable(services.influx_port, db, "/^generic\\./", "temp", f"cohort = '{cohort}'", 2) == 2
        )
        rows = influx_query(services.influx_port, db, f"SELECT temp, hum FROM /^generic\\./ WHERE cohort = '{cohort}'")
        assert [row[1:] for row in rows[0]["values"]] == [[21.5, 40.0], [21.7, 41.0]]
        codes = {(await errors.next_json(timeout=3))["code"] for _ in range(2)}
        assert codes == {"serial_garbage", "not_a_reading"}
    finally:
        errors.close()
        port.unplug()


async def test_an_sds011_behind_a_pty_is_stored_and_bad_frames_are_reported(
    services: Services, start_hub: HubFactory, tty_dir: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    cohort = unique("s")
    key = f"{cohort}/ana/pm1"
    port = PtyPort(tty_dir / "ttyUSB0")
    port.plug()
    sensor = Sds011Sensor(port, period_s=0.05, fault="checksum")
    errors = await MqttListener(services.mqtt_port, f"lab/{key}/errors").ready()
    try:
        bridge = await bridged(hub, services, key, "air_quality", port.path, "sds011")
        running(bridge.run())
        await bridge.port_open.wait()
        started = time.monotonic()
        feed = running(sensor.run())
        await wait_until(lambda: len(sensor.good) >= 6, what="frames")
        feed.cancel()
        sent = list(sensor.good)
        db = hub.cfg.influx.database
        where = f"cohort = '{cohort}'"
        assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", where, len(sent)) == len(sent)
        took = time.monotonic() - started
        rows = influx_query(services.influx_port, db, f"SELECT pm2_5, pm10 FROM air_quality WHERE {where}")
        assert [tuple(row[1:]) for row in rows[0]["values"]] == sent  # every valid frame, nothing else
        problem = await errors.next_json(timeout=3)
        assert problem["code"] == "checksum_error" and problem["source"] == "serial-bridge"
        assert bridge.stats.problem_codes["checksum_error"] == sensor.frames - len(sent)
        print(f"SDS011 behind a pty: {len(sent)} frames stored in {took:.2f} s")
    finally:
        errors.close()
        port.unplug()


async def test_a_serial_arm_is_driven_through_the_bridge_to_done(
    services: Services, start_hub: HubFactory, tty_dir: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    key = f"{unique('s')}/ana/arm1"
    port = PtyPort(tty_dir / "ttyACM1")
    port.plug()
    try:
        bridge = await bridged(hub, services, key, "arm", port.path, "lines")
        arm = SerialArm(bridge.ref, load_profiles()["mearm"], port)
        running(arm.run())
        running(bridge.run())
        await bridge.mqtt.subscribed.wait()
        await wait_until(lambda: hub.ingest.devices[bridge.ref].online, what="the bridge to say the arm is online")
        token = api_token(hub, "learner", f"{bridge.ref.cohort}/{bridge.ref.learner}")  # the learner's phone
        url = f"http://127.0.0.1:{hub.http_port}/api/devices/{key}/commands?wait=10"
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
            async with session.post(url, json={"type": "move", "targets": {"base": 30}}) as resp:
                record = await resp.json()
        assert resp.status == 200 and record["state"] == "done", record
        assert arm.pose["base"] == 30
        assert bridge.stats.commands >= 1 and bridge.stats.acks >= 2  # accepted, done
    finally:
        port.unplug()


async def test_unplug_and_replug_lose_only_what_was_sent_while_unplugged(
    services: Services, start_hub: HubFactory, tty_dir: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    cohort = unique("s")
    key = f"{cohort}/ana/uno"
    port = PtyPort(tty_dir / "ttyACM2")  # absent when the bridge starts: it waits for it
    bridge = await bridged(hub, services, key, "generic", port.path, "lines")
    running(bridge.run())
    await bridge.mqtt.subscribed.wait()
    sent: list[int] = []
    lost: list[int] = []
    # Cleared: the sketch holds its next line. It is held while the cable is pulled (so that happens between
    # two lines) and from plug-in until the bridge has the port open: a real board resets when its port is
    # opened (DTR) and only then prints, and pyserial discards what came before the open anyway.
    between_lines = asyncio.Event()

    async def sketch() -> None:  # a numbered reading every 20 ms; what finds no cable is lost
        n = 0
        while True:
            await between_lines.wait()
            n += 1
            (sent if port.write(f"n={n}\n".encode()) else lost).append(n)
            await asyncio.sleep(0.02)

    port.plug()
    running(sketch())
    await bridge.port_open.wait()
    between_lines.set()
    await wait_until(lambda: len(sent) >= 30, what="readings before the unplug")
    between_lines.clear()
    await wait_until(lambda: bridge.stats.readings == len(sent), what="the bridge to read all that was sent")
    port.unplug()
    between_lines.set()
    await wait_until(lambda: len(lost) >= 25, what="readings while unplugged")
    between_lines.clear()
    port.plug()
    replugged = time.monotonic()
    await bridge.port_open.wait()
    between_lines.set()
    first_after = len(sent) + len(lost) + 1
    db = hub.cfg.influx.database

    def stored_after() -> bool:
        rows = influx_query(
            services.influx_port, db, f"SELECT n FROM /^generic\\./ WHERE cohort = '{cohort}' AND n > {first_after}"
        )
        return bool(rows)

    await wait_until(stored_after, timeout=5, what="a reading stored after the replug")
    resumed_s = time.monotonic() - replugged
    await wait_until(lambda: len(sent) >= 120, what="more readings after the replug")
    count = len(sent)
    stop_at = sent[-1]
    total = await count_when_stable(
        services.influx_port, db, "/^generic\\./", "n", f"cohort = '{cohort}' AND n <= {stop_at}", count
    )
    rows = influx_query(
        services.influx_port, db, f"SELECT n FROM /^generic\\./ WHERE cohort = '{cohort}' AND n <= {stop_at}"
    )
    stored = sorted(int(row[1]) for row in rows[0]["values"])
    print(
        f"unplug/replug: {len(lost)} lost while unplugged, {total} stored, resumed {resumed_s:.2f} s after the replug"
    )
    assert stored == [n for n in sent if n <= stop_at]  # everything written while plugged in, nothing more
    assert set(stored).isdisjoint(lost)
    assert resumed_s < 2.0
    assert bridge.stats.losses == 1 and bridge.stats.problem_codes.get("port_lost") == 1
