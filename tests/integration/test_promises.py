"""Issue 12: README promises that had no test, each held against a real hub (the session's mosquitto and influxd).

Bounds come from the README (and the config's documented defaults), never from the code: 5 error messages a
second per device in bursts of 20 with `suppressed_before`; presence lost after `hub.presence_timeout_s`
(30 s by default, shortened here through the config); a slow live view drops its own oldest events; live-view
messages up to 4 KiB; a grade refused (503) while readings are in flight; `GET /api/sessions/<id>/grade`;
`timed_out` when `done` never comes (the move's duration + 3 s); `rejected` from the device through the relay;
`idempotency_key` in the body; learners' dashboards scoped to their own devices; the disk backlog written
taking turns with live data; the hub reconnecting with its backoff (the backoff itself: tests/unit/test_promises.py).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest

from devices.arm import load_profiles
from devices.topics import DeviceRef
from firmware_sim.arm import ArmFirmware
from hub import watchdog
from hub.adapters.influx import InfluxV1
from hub.adapters.mqtt import RECONNECT_BACKOFF
from hub.ingest.writer import Writer
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import (
    MqttListener,
    MqttPublisher,
    api_token,
    count_when_stable,
    wait_until,
)

# From the README.
ERRORS_PER_S, ERROR_BURST = 5, 20
WS_MESSAGE_LIMIT = 4096
DONE_MARGIN_S = 3.0
MESSAGE_TOO_BIG = 1009  # RFC 6455 close code


@dataclass
class Api:
    hub: Hub
    base: str
    session: aiohttp.ClientSession

    async def call(self, method: str, path: str, token: str, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"}
        async with self.session.request(method, self.base + path, json=body, headers=headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text

    def live(self, query: str, token: str) -> Any:
        return self.session.ws_connect(f"{self.base}/api/live?{query}", protocols=("labhub", f"bearer.{token}"))


async def api_for(hub: Hub, session: aiohttp.ClientSession) -> Api:
    return Api(hub, f"http://127.0.0.1:{hub.http_port}", session)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


# Error messages: 5 a second per device, bursts of 20, the rest counted in `suppressed_before` ---------------


async def test_error_messages_are_rate_limited_per_device_and_the_next_one_says_how_many_were_suppressed(
    services: Services, start_hub: HubFactory
) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "noisy")
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        flood = 100
        started = time.monotonic()
        for i in range(flood):
            await pub.publish(ref.topic("telemetry"), f"not a reading {i}")
        await wait_until(
            lambda: ref in hub.ingest.devices and sum(hub.ingest.devices[ref].rejected.values()) == flood,
            what="the hub to handle the flood",
        )
        elapsed = time.monotonic() - started
        sent = flood - hub.ingest.devices[ref].errors_suppressed
        received = [await errors.next_json() for _ in range(sent)]
        assert len(received) <= ERROR_BURST + ERRORS_PER_S * elapsed + 1, (len(received), elapsed)
        assert len(received) >= ERROR_BURST  # the burst itself goes through
        with pytest.raises(TimeoutError):
            await errors.next(timeout=0.3)  # and nothing more than the hub says it sent
        await asyncio.sleep(1.0 / ERRORS_PER_S + 0.05)  # the scenario: a moment later the device errs again
        await pub.publish(ref.topic("telemetry"), "one more mistake")
        last = await errors.next_json()
    finally:
        errors.close()
        pub.close()
    assert last["received"] == "one more mistake" and last["suppressed_before"] >= 1
    everything = [*received, last]
    assert len(everything) + sum(m.get("suppressed_before", 0) for m in everything) == flood + 1


async def test_a_silent_device_is_shown_absent_after_the_presence_timeout(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession
) -> None:
    timeout_s = 1.0
    hub = await start_hub(presence_timeout_s=timeout_s)
    api = await api_for(hub, http)
    token = api_token(hub, "viewer", "*")
    ref = DeviceRef(unique("c"), "ana", "aq1")
    pub = MqttPublisher(services.mqtt_port)
    try:
        async with api.live(f"device={ref.key}", token) as ws:
            await pub.publish(ref.topic("status"), "online")
            await pub.publish(ref.topic("telemetry"), '{"temp": 21.5}')
            last_heard = time.monotonic()
            states = []
            while not states or states[-1] is not False:
                event = await ws.receive_json(timeout=timeout_s + 3)
                if event["type"] == "presence":
                    states.append(event["present"])
            absent_after = time.monotonic() - last_heard
    finally:
        pub.close()
    assert True in states, states  # present while heard from
    assert timeout_s - 0.1 <= absent_after <= timeout_s + 1.5, absent_after
    status, device = await api.call("GET", f"/api/devices/{ref.key}", token)
    assert status == 200 and device["present"] is False and device["online"] is True


# Live views: a slow one drops its own oldest events (counted in the metric) and never stalls the others ------


class SlowView:
    """A live view on a plain socket with a small receive buffer, that reads nothing until asked: a phone on a
    bad connection. Frames are parsed here (server frames are unmasked)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int, query: str, token: str) -> SlowView:
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
        reader, writer = await asyncio.open_connection(sock=sock)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write(
            (
                f"GET /api/live?{query} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Protocol: labhub, bearer.{token}\r\n\r\n"
            ).encode()
        )
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def next_json(self, timeout: float = 5) -> Any:
        async def frame() -> Any:
            first, second = await self.reader.readexactly(2)
            length = second & 0x7F
            if length == 126:
                length = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif length == 127:
                length = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            payload = await self.reader.readexactly(length)
            assert first & 0x0F == 1, f"not a text frame: opcode {first & 0x0F}"
            return json.loads(payload)

        return await asyncio.wait_for(frame(), timeout)

    def close(self) -> None:
        self.writer.close()


async def test_a_slow_live_view_drops_its_own_oldest_events_and_never_stalls_the_others(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub(batch_max_points=100)  # (bodies under 1 MiB: aiohttp warns about larger ones)
    api = await api_for(hub, http)
    token = api_token(hub, "viewer", "*")
    ref = DeviceRef(unique("c"), "ana", "big")
    count = 1500
    filler = {f"s{i}": "x" * 250 for i in range(20)}  # ~5 KiB an event: the slow view's buffers fill quickly
    fast_seen: list[int] = []
    slow = await SlowView.open(hub.http_port, f"device={ref.key}", token)
    try:
        async with api.live(f"device={ref.key}", token) as fast:

            async def read_fast() -> None:
                while len(fast_seen) < count:
                    event = await fast.receive_json(timeout=10)
                    if event["type"] == "reading":
                        fast_seen.append(int(event["fields"]["n"]))

            reader = asyncio.create_task(read_fast())
            pub = MqttPublisher(services.mqtt_port)
            try:
                for n in range(count):  # 50 at a time: a pace a phone that reads keeps up with
                    pub.client.publish(ref.topic("telemetry"), json.dumps({"n": n, **filler}), qos=0)
                    if n % 50 == 49:
                        await asyncio.sleep(0.02)
                await asyncio.wait_for(reader, 15)  # the fast view got everything while the slow one read nothing
            finally:
                pub.close()
        assert fast_seen == list(range(count))
        slow_seen: list[int] = []
        while not slow_seen or slow_seen[-1] != count - 1:
            event = await slow.next_json()
            if event["type"] == "reading":
                slow_seen.append(int(event["fields"]["n"]))
    finally:
        slow.close()
    missing = sorted(set(range(count)) - set(slow_seen))
    assert slow_seen == sorted(slow_seen) and missing, "the slow view should have lost some events"
    tail = [n for n in slow_seen if n > missing[-1]]
    assert tail == list(range(missing[-1] + 1, count)) and len(tail) >= 100  # the newest are kept, in order
    status, text = await api.call("GET", "/metrics", token)
    dropped = next(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("labhub_websocket_events_dropped_total")
    )
    assert status == 200 and dropped >= len(missing), (dropped, len(missing))


# Live views: messages from the app are limited to 4 KiB ----------------------------------------------------


async def test_a_live_view_message_of_4_kib_is_fine_and_a_longer_one_closes_that_view(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession
) -> None:
    hub = await start_hub()
    api = await api_for(hub, http)
    token = api_token(hub, "viewer", "*")
    ref = DeviceRef(unique("c"), "ana", "aq1")
    pub = MqttPublisher(services.mqtt_port)
    try:
        async with api.live(f"device={ref.key}", token) as ws:
            await ws.send_str("x" * (WS_MESSAGE_LIMIT - 1))  # (aiohttp refuses exactly 4096: see the report)
            await pub.publish(ref.topic("telemetry"), '{"temp": 1.5}')
            while (event := await ws.receive_json(timeout=3))["type"] != "reading":
                pass
            assert event["fields"] == {"temp": 1.5}  # still open and streaming
            await ws.send_str("x" * (WS_MESSAGE_LIMIT + 1))
            while (message := await ws.receive(timeout=3)).type == aiohttp.WSMsgType.TEXT:
                pass
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            assert ws.close_code == MESSAGE_TOO_BIG
    finally:
        pub.close()


# Grades: refused (503) while readings are in flight; GET /api/sessions/<id>/grade -----------------------------


class WriteGate:
    """InfluxDB frozen for the hub's writes (queries still work): writes wait until the gate opens."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = asyncio.Event()
        real = InfluxV1.write

        async def write(backend: InfluxV1, body: str) -> None:
            await self.open.wait()
            await real(backend, body)

        monkeypatch.setattr(InfluxV1, "write", write)


async def test_a_grade_is_refused_with_503_while_readings_are_in_flight_then_given(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession, monkeypatch: pytest.MonkeyPatch
) -> None:
    cohort = unique("c")
    ref = DeviceRef(cohort, "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    api = await api_for(hub, http)
    trainer = api_token(hub, "trainer", cohort)
    status, session = await api.call("POST", "/api/sessions", trainer, {"learner": f"{cohort}/ana"})
    assert status == 201, session
    gate = WriteGate(monkeypatch)
    pub = MqttPublisher(services.mqtt_port)
    try:
        for value in (10.0, 11.0, 12.0):
            await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": value}))
        await wait_until(lambda: hub.ingest.devices[ref].received == 3, what="the readings accepted")
        status, refused = await api.call("GET", f"/api/sessions/{session['id']}/grade", trainer)
        assert status == 503, refused
        assert "still on their way to InfluxDB" in refused["error"]
        gate.open.set()
        status, report = await api.call("GET", f"/api/sessions/{session['id']}/grade", trainer)
    finally:
        gate.open.set()
        pub.close()
    assert status == 200, report
    assert report["learner"] == f"{cohort}/ana" and report["session"]["id"] == session["id"]
    [device] = report["devices"]
    assert device["device"] == ref.key and report["score_20"] is not None
    assert '"readings": 3' in json.dumps(device), device  # every reading sent before the grade is in it


# Commands through the relay -----------------------------------------------------------------------------------

MEARM = load_profiles()["mearm"]


async def test_timed_out_when_an_accepted_move_never_reports_done(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession
) -> None:
    """A board that says `accepted` and then nothing: `timed_out` at the move's duration + 3 s, not before."""
    ref = DeviceRef(unique("c"), "ana", "arm1")
    hub = await start_hub(devices=((ref.key, "arm"),))
    api = await api_for(hub, http)
    token = api_token(hub, "trainer", ref.cohort)
    commands = await MqttListener(services.mqtt_port, ref.topic("commands")).ready()
    board = MqttPublisher(services.mqtt_port)
    loop = asyncio.get_running_loop()

    def accept_only(_client: Any, _userdata: Any, message: Any) -> None:
        command = json.loads(message.payload)
        board.client.publish(ref.topic("ack"), json.dumps({"id": command["id"], "status": "accepted"}), qos=1)

    try:
        await board.publish(ref.topic("status"), "online")
        await wait_until(lambda: hub.ingest.devices[ref].online, what="the arm online")
        commands.client.on_message = accept_only  # the firmware: accepts, never finishes
        started = loop.time()
        status, record = await api.call(
            "POST", f"/api/devices/{ref.key}/commands?wait=8", token, {"type": "move", "targets": {"base": 60}}
        )
        took = loop.time() - started
    finally:
        commands.close()
        board.close()
    assert (status, record["state"]) == (200, "timed_out"), record
    assert record["reason"] == "the move did not finish within the time allowed"
    allowed = record["expected_duration_s"] + DONE_MARGIN_S
    waited = (record["finished_ms"] - record["accepted_ms"]) / 1000
    assert allowed - 0.05 <= waited <= allowed + 0.5, (waited, allowed)
    assert took < allowed + 1.0


@pytest.fixture
async def arm(services: Services, start_hub: HubFactory, request: pytest.FixtureRequest) -> AsyncIterator[ArmFirmware]:
    ref = DeviceRef(unique("c"), "ana", "arm1")
    hub = await start_hub(devices=((ref.key, "arm"),))
    firmware = ArmFirmware(ref, MEARM, "127.0.0.1", services.mqtt_port, getattr(request, "param", None))
    task = asyncio.create_task(firmware.run())
    await firmware.client.wait_connected(10)
    await wait_until(lambda: ref in hub.ingest.devices and hub.ingest.devices[ref].online, what="the arm online")
    firmware.hub = hub  # type: ignore[attr-defined]
    yield firmware
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("arm", ["reject_all"], indirect=True)
async def test_a_command_the_device_refuses_ends_rejected_with_its_reason_and_is_audited(
    services: Services, arm: ArmFirmware, http: aiohttp.ClientSession
) -> None:
    hub: Hub = arm.hub  # type: ignore[attr-defined]
    api = await api_for(hub, http)
    token = api_token(hub, "learner", f"{arm.ref.cohort}/{arm.ref.learner}")
    results = await MqttListener(services.mqtt_port, arm.ref.topic("commands/result")).ready()
    try:
        status, record = await api.call(
            "POST", f"/api/devices/{arm.ref.key}/commands?wait=3", token, {"type": "move", "targets": {"base": 40}}
        )
        assert (status, record["state"]) == (200, "rejected"), record
        assert record["reason"] == "this firmware refuses every command (fault mode)"
        states = []
        while not states or states[-1] != "rejected":
            result = await results.next_json(timeout=3)
            if result["id"] == record["id"]:
                states.append(result["state"])
    finally:
        results.close()
    assert states[-2:] == ["sent", "rejected"]
    db = hub.cfg.influx.database
    where = f"state = 'rejected' AND id = '{record['id']}'"
    assert await count_when_stable(services.influx_port, db, "commands", "id", where, 1) == 1


async def test_an_idempotency_key_in_the_body_makes_a_retried_post_safe(
    arm: ArmFirmware, http: aiohttp.ClientSession
) -> None:
    hub: Hub = arm.hub  # type: ignore[attr-defined]
    api = await api_for(hub, http)
    token = api_token(hub, "trainer", arm.ref.cohort)
    path = f"/api/devices/{arm.ref.key}/commands?wait=3"
    body = {"type": "move", "targets": {"base": 50}, "idempotency_key": "tap-7"}
    status, first = await api.call("POST", path, token, body)
    assert (status, first["state"]) == (200, "done"), first
    status, again = await api.call("POST", path, token, body)
    assert status == 200 and again["id"] == first["id"]
    assert [c["id"] for c in arm.received] == [first["id"]]  # sent once
    status, other = await api.call("POST", path, token, body | {"idempotency_key": "tap-8"})
    assert other["id"] != first["id"] and len(arm.received) == 2


# Dashboards: a learner's token sees only the learner's own devices -----------------------------------------


async def test_a_learners_dashboard_shows_only_their_own_devices(
    services: Services, start_hub: HubFactory, http: aiohttp.ClientSession
) -> None:
    cohort = unique("c")
    ana, ben = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    hub = await start_hub(devices=((ana.key, "air_quality"), (ben.key, "air_quality")))
    api = await api_for(hub, http)
    pub = MqttPublisher(services.mqtt_port)
    try:
        for ref in (ana, ben):
            await pub.publish(ref.topic("telemetry"), '{"pm2_5": 7.5}')
    finally:
        pub.close()
    db = hub.cfg.influx.database
    await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{cohort}'", 2)
    trainer, learner = api_token(hub, "trainer", cohort), api_token(hub, "learner", f"{cohort}/ana")
    status, everyone = await api.call("GET", f"/api/cohorts/{cohort}/overview", trainer)
    assert status == 200 and {d["id"] for d in everyone["devices"]} == {ana.key, ben.key}
    status, own = await api.call("GET", f"/api/cohorts/{cohort}/overview", learner)
    assert status == 200 and [d["id"] for d in own["devices"]] == [ana.key]
    assert own["devices"][0]["latest"]["fields"] == {"pm2_5": 7.5}
    assert (await api.call("GET", f"/api/devices/{ben.key}/latest", learner))[0] == 403
    assert (await api.call("GET", f"/api/devices?cohort={cohort}", learner))[1]["devices"] == [
        d for d in (await api.call("GET", f"/api/devices?cohort={cohort}", trainer))[1]["devices"] if d["id"] == ana.key
    ]
    for query in (f"cohort={cohort}", f"device={ben.key}"):  # the live view: their own devices only
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await api.live(query, learner)
        assert refused.value.status == 403
    async with api.live(f"device={ana.key}", learner) as ws:
        assert (await ws.receive_json(timeout=3))["device"] == ana.key


# Nothing accepted is lost: the disk backlog is written taking turns with live data ---------------------------


@dataclass
class Replay:
    backlog_writes: list[float]  # when each write holding backlog readings returned
    live_writes: list[tuple[float, int]]  # when each write holding live readings returned, and the first n in it


async def replay_with_live_data(
    services: Services, start_hub: HubFactory, monkeypatch: pytest.MonkeyPatch, live_every_s: float
) -> Replay:
    """InfluxDB frozen while 1,500 readings of one device spill to disk (a memory queue of 100 points); then it
    is back, and another device sends a reading every `live_every_s` from its first write since (the moment the
    hub knows) until the backlog is all stored. Every point ends in InfluxDB; the writes are timed as InfluxDB
    answers them."""
    gate = WriteGate(monkeypatch)
    writes: list[tuple[float, str]] = []
    gated = InfluxV1.write

    async def recording(backend: InfluxV1, body: str) -> None:
        await gated(backend, body)
        writes.append((time.monotonic(), body))

    monkeypatch.setattr(InfluxV1, "write", recording)
    cohort = unique("c")
    backlog, live = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    hub = await start_hub(
        devices=((backlog.key, "air_quality"), (live.key, "air_quality")), queue_max_points=100, batch_max_points=25
    )
    pub = MqttPublisher(services.mqtt_port)
    db = hub.cfg.influx.database
    total = 1500
    sent_live = 0

    async def live_stream() -> None:
        nonlocal sent_live
        while True:
            pub.client.publish(live.topic("telemetry"), json.dumps({"pm2_5": 1.0, "co2": float(sent_live)}), qos=1)
            sent_live += 1
            await asyncio.sleep(live_every_s)

    try:
        for n in range(total):
            pub.client.publish(backlog.topic("telemetry"), json.dumps({"pm2_5": 1.0, "co2": float(n)}), qos=1)
        await wait_until(lambda: hub.ingest.devices[backlog].received == total, what="the backlog accepted")
        await wait_until(lambda: hub.spool._backlog_waiting(), what="readings waiting on disk")
        before = len(writes)
        gate.open.set()  # InfluxDB is back, and the hub knows it once its first write since returns
        await wait_until(lambda: len(writes) > before, what="the first write after the outage")
        stream = asyncio.create_task(live_stream())
        where = f"cohort = '{cohort}' AND learner = 'ana'"
        await count_when_stable(services.influx_port, db, "air_quality", "co2", where, total)
        stream.cancel()
        sent = sent_live
        where = f"cohort = '{cohort}' AND learner = 'ben'"
        await count_when_stable(services.influx_port, db, "air_quality", "co2", where, sent)
    finally:
        gate.open.set()
        pub.close()
    backlog_writes = [at for at, body in writes if "learner=ana" in body]
    live_writes = []
    for at, body in writes:
        if "learner=ben" in body:
            first = next(line for line in body.splitlines() if "learner=ben" in line)
            live_writes.append((at, int(float(first.split("co2=")[1].split(",")[0].split(" ")[0]))))
    assert len(backlog_writes) >= 20  # a real backlog: many batches
    return Replay(backlog_writes, live_writes)


async def test_live_readings_are_not_starved_while_a_disk_backlog_is_replayed(
    services: Services, start_hub: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = await replay_with_live_data(services, start_hub, monkeypatch, live_every_s=0.01)
    halfway = replay.backlog_writes[len(replay.backlog_writes) // 2]
    during = [n for at, n in replay.live_writes if at < halfway]
    assert during, "no live reading was written before half the backlog was"  # live data takes turns


async def test_a_reading_sent_the_moment_influxdb_is_back_is_not_behind_the_backlog(
    services: Services, start_hub: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    replay = await replay_with_live_data(services, start_hub, monkeypatch, live_every_s=10.0)  # one reading
    [(at, n)] = replay.live_writes
    assert n == 0 and at < replay.backlog_writes[-1], "the first live reading waited for the whole backlog"


async def test_the_hub_reconnects_with_that_backoff(start_hub: HubFactory) -> None:
    hub = await start_hub()
    assert hub.mqtt._backoff is RECONNECT_BACKOFF


async def test_a_slow_step_of_stopping_is_said_while_it_lasts(
    monkeypatch: pytest.MonkeyPatch, start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A hub that takes long to stop says which step it waits for (CI once saw one stuck after "stopping")."""
    monkeypatch.setattr(watchdog, "SLOW_STOP_S", 0.1)
    drained = asyncio.Event()

    async def slow_drain(self: Writer[Any], timeout: float) -> int:
        await asyncio.sleep(0.5)
        drained.set()
        return 0

    monkeypatch.setattr(Writer, "drain", slow_drain)
    hub = await start_hub()
    hub.stop()
    await asyncio.wait_for(hub.stopped.wait(), 10)
    assert drained.is_set()
    slow = [r.getMessage() for r in caplog.records if r.getMessage().startswith("stopping: still")]
    assert "stopping: still writing what is in memory to InfluxDB after 0 s" in slow, slow  # (others may be slow too)
