"""USB-serial boards: framing (pure, and through pyserial's loop://), and boards behind real pseudo-terminals
bridged to the real broker, hub and InfluxDB — readings, SDS011 frames, an arm's commands, unplug/replug."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devices.arm import load_profiles
from devices.serial_protocols import (
    AckLine,
    LineFramer,
    Sds011Framer,
    SerialProblem,
    Telemetry,
    encode_command,
    parse_line,
    sds011_frame,
)
from firmware_sim.serial import PtyPort, Sds011Sensor, SerialArm
from hub.adapters.serial_port import SerialPort
from hub.bridges.serial_bridge import Bridge
from hub.runtime import Hub
from tests.conftest import HubFactory, Services, unique
from tests.support import MqttListener, api_token, count_when_stable, influx_query, wait_until

# Framing ----------------------------------------------------------------------------------------------------


def test_lines_are_framed_across_chunks_and_long_lines_are_cut() -> None:
    framer = LineFramer(max_bytes=32)
    assert framer.feed(b"temp=2") == []
    assert framer.feed(b"1.5\r\nhum=4") == [b"temp=21.5"]
    assert framer.feed(b"0\n") == [b"hum=40"]
    out = framer.feed(b"x" * 40)
    assert len(out) == 1 and isinstance(out[0], SerialProblem) and out[0].code == "line_too_long"
    assert framer.feed(b"yyy\nok=1\n") == [b"ok=1"]  # the rest of the long line is skipped, then all is well
    framer.feed(b"half a li")
    framer.reset()  # the cable was pulled
    assert framer.feed(b"ne\nok=2\n") == [b"ne", b"ok=2"]
    assert framer.feed(b"a=1\rb=2\r") == [b"a=1", b"b=2"]  # CR alone ends a line too
    long_line = b"z" * 40 + b"\n"  # complete in one chunk, still too long
    out = framer.feed(long_line + b"ok=3\n")
    assert isinstance(out[0], SerialProblem) and out[0].code == "line_too_long" and out[1:] == [b"ok=3"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"temp=21.5,hum=40", Telemetry(b'{"temp": 21.5, "hum": 40.0}')),
        (b"temp:21.5 hum:40\r", Telemetry(b'{"temp": 21.5, "hum": 40.0}')),
        (b"pm2_5=12\tpm10=20;door=open", Telemetry(b'{"pm2_5": 12.0, "pm10": 20.0, "door": "open"}')),
        (b"led=true", Telemetry(b'{"led": true}')),
        (b"t=-3.5e1", Telemetry(b'{"t": -35.0}')),
        ("unit=°C,t=21".encode(), Telemetry(b'{"unit": "\\u00b0C", "t": 21.0}')),  # UTF-8 text is text
        (b'{"pm2_5": 12.4}', Telemetry(b'{"pm2_5": 12.4}')),
        (b"{pm2_5: 3}", Telemetry(b"{pm2_5: 3}")),  # broken JSON goes on: the hub explains the mistake
        (b'{"id": "m1", "status": "accepted"}', AckLine(b'{"id": "m1", "status": "accepted"}')),
        (b"", None),
        (b"  \r", None),
    ],
)
def test_a_line_becomes_a_reading_or_an_acknowledgement(line: bytes, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\x00\xff\xfe\x8c\x91\x92garbage", "serial_garbage"),
        (b"Booting sensor...", "not_a_reading"),
        (b"temp=21.5 and then some", "not_a_reading"),
        (b"ets Jun  8 2016 00:22:57", "not_a_reading"),
    ],
)
def test_what_is_not_a_reading_is_a_problem_with_a_hint(line: bytes, code: str) -> None:
    problem = parse_line(line)
    assert isinstance(problem, SerialProblem) and problem.code == code and problem.as_json()["hint"]


def test_commands_go_down_as_one_compact_json_line() -> None:
    assert encode_command(b'{"id": "m1", "type": "stop"}') == b'{"id":"m1","type":"stop"}\n'
    for bad in (b"not json", b"[1, 2]", b'{"a": NaN}', b"[" * 5000):
        with pytest.raises(ValueError):
            encode_command(bad)
    assert isinstance(parse_line(b'{"a":' + b"[" * 5000), Telemetry)  # no RecursionError: the hub will say why


def test_sds011_frames_garbage_and_checksums() -> None:
    good = sds011_frame(12.3, 45.6)
    assert len(good) == 10 and good[:2] == b"\xaa\xc0" and good[-1:] == b"\xab"
    bad = good[:8] + bytes([(good[8] + 1) & 0xFF]) + good[9:]
    framer = Sds011Framer()
    events = framer.feed(b"\x13\x37" + good[:4]) + framer.feed(good[4:] + bad + sds011_frame(1.0, 2.0))
    assert [type(e).__name__ for e in events] == ["SerialProblem", "Telemetry", "SerialProblem", "Telemetry"]
    garbage, first, checksum, second = events
    assert isinstance(garbage, SerialProblem) and garbage.code == "serial_garbage"
    assert isinstance(checksum, SerialProblem) and checksum.code == "checksum_error"
    assert isinstance(first, Telemetry) and json.loads(first.payload) == {"pm2_5": 12.3, "pm10": 45.6}
    assert isinstance(second, Telemetry) and json.loads(second.payload) == {"pm2_5": 1.0, "pm10": 2.0}
    # A frame cut short by the next one: no checksum error, the next frame is read.
    events = framer.feed(good[:6] + sds011_frame(7.0, 8.0))
    assert [json.loads(e.payload) for e in events if isinstance(e, Telemetry)] == [{"pm2_5": 7.0, "pm10": 8.0}]
    assert not any(isinstance(e, SerialProblem) and e.code == "checksum_error" for e in events)
    # A header byte inside garbage does not derail it: the next real frame is found.
    events = framer.feed(b"\xaa\x00\x01" + sds011_frame(5.0, 6.0))
    assert isinstance(events[-1], Telemetry) and json.loads(events[-1].payload) == {"pm2_5": 5.0, "pm10": 6.0}


def test_framing_through_pyserial_loopback() -> None:
    """pyserial's loop:// port: what is written is read back, in whatever chunks the port gives."""
    port = SerialPort("loop://", 9600)
    port.open()
    try:
        port.write(b"\x00\x01" + sds011_frame(8.8, 9.9) + sds011_frame(1.2, 3.4))
        framer = Sds011Framer()
        events = []
        deadline = time.monotonic() + 2
        while len([e for e in events if isinstance(e, Telemetry)]) < 2 and time.monotonic() < deadline:
            events += framer.feed(port.read())
    finally:
        port.close()
    readings = [json.loads(e.payload) for e in events if isinstance(e, Telemetry)]
    assert readings == [{"pm2_5": 8.8, "pm10": 9.9}, {"pm2_5": 1.2, "pm10": 3.4}]


async def test_while_the_broker_is_unreachable_readings_wait_in_a_bounded_buffer() -> None:
    from devices.topics import DeviceRef

    bridge = Bridge(DeviceRef("c", "l", "d"), "loop://", mqtt_port=1, buffer_size=5)  # never connected
    bridge.handle(b"".join(f"n={i}\n".encode() for i in range(8)))
    assert bridge.stats.readings == 8 and bridge.stats.buffered_dropped == 3
    assert [json.loads(p)["n"] for _, p, _, _ in bridge._buffer] == [3.0, 4.0, 5.0, 6.0, 7.0]


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
