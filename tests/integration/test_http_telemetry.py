"""HTTP telemetry against the real broker, influxd and a hub in a closed lab: the device's own broker account
(made by `labhub device add`, checked from the broker's own file), and what is stored, refused and published.

The closed broker is the session's `closed` fixture (anonymous refused, accounts through the CLI, as
`labhub up` runs it).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest

from devices.topics import DeviceRef
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import ClosedLab, HubFactory, Services
from tests.integration.test_security import device, password_of
from tests.support import MqttV5, influx_count, wait_until


@dataclass
class Board:
    """One device of a fresh cohort, with its password, posting to the hub's HTTP API."""

    hub: Hub
    ref: DeviceRef
    password: str
    session: aiohttp.ClientSession
    services: Services

    def url(self, ref: DeviceRef | None = None, field: str = "") -> str:
        path = f"/api/devices/{(ref or self.ref).key}/telemetry" + (f"/{field}" if field else "")
        return f"http://127.0.0.1:{self.hub.http_port}{path}"

    async def post(
        self, body: bytes | str, *, password: str | None = None, ref: DeviceRef | None = None, field: str = ""
    ) -> tuple[int, dict[str, str], str]:
        auth = aiohttp.encode_basic_auth(self.ref.key, self.password if password is None else password)
        async with self.session.post(self.url(ref, field), data=body, headers={"Authorization": auth}) as resp:
            return resp.status, dict(resp.headers), await resp.text()

    def stored(self, field: str, where: str = "") -> int:
        clause = f"learner = '{self.ref.learner}' AND cohort = '{self.ref.cohort}'" + (f" AND {where}" if where else "")
        return influx_count(self.services.influx_port, self.hub.cfg.influx.database, "air_quality", field, clause)


@pytest.fixture
async def board(closed: ClosedLab, services: Services, start_hub: HubFactory) -> AsyncIterator[Board]:
    hub = await start_hub(config=closed.config(services, telemetry_posts_per_second=2.0))
    ref = DeviceRef(unique("h"), "ana", "aq1")
    password = device(closed, ref.key)
    await wait_until(lambda: ref in hub.ingest.devices and hub.ingest.devices[ref].declared, what="the hub to learn it")
    async with aiohttp.ClientSession() as session:
        yield Board(hub, ref, password, session, services)


async def test_curl_posts_a_reading_that_is_stored(board: Board) -> None:
    """The issue's own command line: real curl, the device's account, 204, and the point in InfluxDB."""
    account = f"{board.ref.key}:{board.password}"
    done = await asyncio.to_thread(
        subprocess.run,
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-u", account, "-d", '{"pm2_5": 12}', board.url()],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.stdout == "204", done.stderr
    await wait_until(lambda: board.stored("pm2_5", "pm2_5 = 12") == 1, what="the posted point in InfluxDB")
    entry = board.hub.ingest.devices[board.ref].inspector[-1]
    assert entry.topic == board.ref.topic("telemetry") and entry.verdict in ("spooled", "stored")


async def test_bare_values_and_line_protocol_are_stored(board: Board) -> None:
    assert (await board.post("21.5", field="temperature"))[0] == 204
    assert (await board.post("air pm2_5=7,temperature=19.5\nair pm2_5=8"))[0] == 204
    await wait_until(lambda: board.stored("temperature") == 2, what="both temperatures")
    await wait_until(lambda: board.stored("pm2_5") == 2, what="both line-protocol pm2_5 values")


async def test_a_mistake_is_answered_422_and_on_the_errors_topic(closed: ClosedLab, board: Board) -> None:
    listener = MqttV5(closed.port, board.ref.key, board.password)
    try:
        assert listener.wait_connect() and listener.subscribe(board.ref.topic("errors")) == 1
        status, _, text = await board.post('{"pm25": 12}')
        answer = json.loads(text)
        assert status == 422 and answer["code"] == "unknown_field_suggest" and "pm2_5" in answer["hint"]
        assert answer["device"] == board.ref.key and answer["field"] == "pm25"
        await wait_until(lambda: bool(listener.got), what="the error on the device's errors topic")
        topic, payload = listener.got[0]
        published = json.loads(payload)
        assert topic == board.ref.topic("errors") and published.pop("time_ns") and published == answer
    finally:
        listener.close()
    assert board.stored("pm2_5") == 0 and board.hub.ingest.devices[board.ref].rejected["unknown_field_suggest"] == 1


async def test_wrong_password_and_another_devices_path(closed: ClosedLab, board: Board) -> None:
    status, headers, _ = await board.post('{"pm2_5": 1}', password="not-it")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ")
    other = DeviceRef(board.ref.cohort, "ben", "aq1")
    device(closed, other.key)
    await wait_until(lambda: other in board.hub.ingest.devices, what="the hub to learn ben's device")
    status, _, text = await board.post('{"pm2_5": 1}', ref=other)  # ana's valid account, ben's path
    assert status == 403 and other.key in text
    assert board.hub.ingest.devices[other].received == 0


async def test_a_rotated_password_is_refused_at_once(closed: ClosedLab, board: Board) -> None:
    """`device rotate` returns once the broker has the new password, and with it its file: no hub-side cache."""
    assert (await board.post('{"pm2_5": 1}'))[0] == 204
    new = password_of(closed.cli("device", "rotate", board.ref.key).stdout)
    assert (await board.post('{"pm2_5": 1}'))[0] == 401
    assert (await board.post('{"pm2_5": 1}', password=new))[0] == 204


async def test_oversize_and_too_fast_are_bounded(board: Board) -> None:
    limit = board.hub.cfg.hub.max_payload_bytes
    status, _, _ = await board.post(b'{"pm2_5": 1, "note": "' + b"x" * limit + b'"}')
    assert status == 413
    statuses = [(await board.post('{"pm2_5": 2}'))[0] for _ in range(6)]  # 2/s, bursts of 4 (the 413 took one)
    assert statuses[:3] == [204, 204, 204] and 429 in statuses[3:], statuses
    status, headers, _ = await board.post('{"pm2_5": 2}')
    assert status == 429 and int(headers["Retry-After"]) >= 1
