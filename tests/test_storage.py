"""The writer against the real influxd (1.x), and the 2.x backend against a local endpoint reproducing its contract."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.config import InfluxConfig, LabConfig
from hub.mqtt import Backoff
from hub.services import free_port, start_influxd
from hub.spool import Spool
from hub.storage import InfluxV1, InfluxV2, StorageError, Writer, parse_conflict
from hub.topics import DeviceRef
from tests.conftest import HubFactory, Services, lab_config, unique
from tests.support import MqttPublisher, api_token, count_when_stable, http_json, influx_query, wait_until

FAST = Backoff(first_s=0.01, cap_s=0.05)


@dataclass
class Outcomes:
    stored: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def make_writer(
    backend: InfluxV1 | InfluxV2, directory: Path, batch_max: int = 5000
) -> tuple[Spool[str], Writer[str], Outcomes]:
    outcomes = Outcomes()
    spool: Spool[str] = Spool(directory, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
    spool.open()
    writer = Writer(
        backend,
        spool,
        batch_max,
        on_stored=lambda records: outcomes.stored.extend(str(r.owner) for r in records),
        on_rejected=lambda record, detail: outcomes.rejected.append((str(record.owner), detail)),
        backoff=FAST,
    )
    return spool, writer, outcomes


@pytest.fixture
async def v1(services: Services) -> AsyncIterator[InfluxV1]:
    backend = InfluxV1(InfluxConfig(url=services.influx_url, database=unique("db")))
    await backend.start()
    await backend.ensure_database()
    yield backend
    await backend.close()


async def write_all(writer: Writer[str], spool: Spool[str], lines: dict[str, str], outcomes: Outcomes) -> None:
    """Spool `lines` (owner → line) as one batch and run the writer until every owner has an outcome."""
    for owner, line in lines.items():
        spool.append(time.time_ns(), 0, "c/l/d", line, owner)
    await spool.commit()
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: len(outcomes.stored) + len(outcomes.rejected) == len(lines), what="all outcomes")
    finally:
        task.cancel()
        spool.close()


async def test_partial_write_keeps_the_rest_and_names_the_conflicting_point(
    services: Services, v1: InfluxV1, tmp_path: Path
) -> None:
    now = time.time_ns()
    await v1.write(f"m,device=a x=1.0 {now}")  # x is a float in this shard from now on
    spool, writer, outcomes = make_writer(v1, tmp_path)
    lines = {f"p{i}": f"m,device=b x={i}.5 {now + 1 + i}" for i in range(10)}
    lines["bad"] = f'm,device=c x="text" {now + 100}'
    await write_all(writer, spool, lines, outcomes)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "bad")
    [(owner, detail)] = outcomes.rejected
    assert owner == "bad"
    assert parse_conflict(detail) is not None
    conflict = parse_conflict(detail)
    assert conflict is not None and (conflict.field, conflict.got, conflict.existing) == ("x", "string", "float")
    rows = (await v1.query("SELECT count(x) FROM m WHERE device = 'b'"))[0]["values"]
    assert rows[0][1] == 10


async def test_conflict_inside_a_new_shard_is_isolated_by_splitting(
    services: Services, v1: InfluxV1, tmp_path: Path
) -> None:
    """influxd answers a bare `field type conflict` and stores nothing when a batch conflicts with itself."""
    now = time.time_ns()
    spool, writer, outcomes = make_writer(v1, tmp_path)
    lines = {"first": f"m x=1.0 {now}", "flip": f'm x="s" {now + 1}', "other": f"m y=2.0 {now + 2}"}
    lines.update({f"more{i}": f"m x={i}.0 {now + 10 + i}" for i in range(5)})
    await write_all(writer, spool, lines, outcomes)
    assert [owner for owner, _ in outcomes.rejected] == ["flip"]
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "flip")
    assert (await v1.query("SELECT count(x) FROM m"))[0]["values"][0][1] == 6
    assert (await v1.query("SELECT count(y) FROM m"))[0]["values"][0][1] == 1


def test_parse_conflict_reads_influxdb_messages() -> None:
    message = (
        'partial write: field type conflict: input field "speed" on measurement "generic" is type string, '
        "already exists as type float dropped=1"
    )
    conflict = parse_conflict(message)
    assert conflict is not None
    assert (conflict.measurement, conflict.field, conflict.got, conflict.existing) == (
        "generic",
        "speed",
        "string",
        "float",
    )
    assert parse_conflict("field type conflict") is None


def without_influxdb(services: Services, port: int, database: str, **hub_options: Any) -> LabConfig:
    """A hub config whose InfluxDB is not running yet: the test starts it on `port` later."""
    influx = InfluxConfig(url=f"http://127.0.0.1:{port}", database=database, launch=False)
    return dataclasses.replace(lab_config(services, **hub_options), influx=influx)


async def test_readings_wait_for_influxdb_and_none_is_lost(
    services: Services, start_hub: HubFactory, scratch: Callable[[str], Path]
) -> None:
    """The hub starts while InfluxDB is down: readings queue, health says why, and all are stored once it is up."""
    port = free_port()
    hub = await start_hub(without_influxdb(services, port, "late"))
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)
    state = scratch("labhub-late-")
    influxd = None
    try:
        for i in range(50):
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": i}))
        await wait_until(lambda: hub.writer.stats.retries >= 2, what="write retries")
        status, health = await http_json(f"http://127.0.0.1:{hub.http_port}/healthz", api_token(hub))
        assert status == 503 and health["status"] == "degraded"
        assert "InfluxDB writes failing" in health["reasons"][0]
        influxd = await asyncio.to_thread(start_influxd, state, http_port=port, rpc_port=free_port())
        assert await count_when_stable(port, "late", "/^generic\\./", "n", "", 50) == 50
        await wait_until(lambda: hub.health()["status"] == "ok", what="health ok again")
    finally:
        pub.close()
        if influxd is not None:
            influxd.stop()
    await wait_until(lambda: hub.ingest.totals.stored == 50, what="the hub to count 50 stored")


async def test_queue_full_pauses_intake_and_resumes(
    services: Services, start_hub: HubFactory, scratch: Callable[[str], Path]
) -> None:
    """Backpressure: past the spool's limit the hub stops reading from the broker (which holds the messages); nothing is lost."""
    port = free_port()
    hub = await start_hub(without_influxdb(services, port, "bp", spool_max_bytes=3000, queue_max_points=20))
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)
    state = scratch("labhub-bp-")
    influxd = None
    try:
        for i in range(100):
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": i}))
        await wait_until(lambda: hub.spool.full, what="spool full")
        assert hub.mqtt.paused and hub.health()["reasons"][-1].startswith("spool full")
        influxd = await asyncio.to_thread(start_influxd, state, http_port=port, rpc_port=free_port())
        assert await count_when_stable(port, "bp", "/^generic\\./", "n", "", 100) == 100
        values = sorted(row[1] for row in influx_query(port, "bp", "SELECT n FROM /^generic\\./")[0]["values"])
        assert values == [float(i) for i in range(100)]
    finally:
        pub.close()
        if influxd is not None:
            influxd.stop()
    assert hub.pauses >= 1 and not hub.mqtt.paused


# InfluxDB 2.x contract -----------------------------------------------------------------------------


@dataclass
class FakeV2:
    """A local endpoint with InfluxDB 2.x's documented `/api/v2/write` behaviour (no 2.x server installs here)."""

    script: list[Callable[[str], web.Response]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, str], str]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)

    async def write(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw).decode() if request.headers.get("Content-Encoding") == "gzip" else raw.decode()
        self.requests.append((dict(request.query), dict(request.headers), body))
        if request.headers.get("Authorization") != "Token secret-token":
            return web.json_response({"code": "unauthorized", "message": "unauthorized access"}, status=401)
        if self.script:
            return self.script.pop(0)(body)
        bad = [line for line in body.splitlines() if "bad=" in line]
        if bad:
            return web.json_response(
                {
                    "code": "invalid",
                    "message": f'partial write: field type conflict: input field "bad" on measurement "m" is type string, already exists as type float dropped={len(bad)}',
                },
                status=400,
            )
        self.stored.extend(body.splitlines())
        return web.Response(status=204)


@pytest.fixture
async def fake_v2() -> AsyncIterator[tuple[FakeV2, str]]:
    fake = FakeV2()
    app = web.Application()
    app.router.add_post("/api/v2/write", fake.write)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def v2_config(url: str, token: str = "secret-token") -> InfluxConfig:
    return InfluxConfig(backend="v2", url=url, org="lab", bucket="labhub", token=token, timeout_s=5)


async def run_v2(url: str, directory: Path, lines: dict[str, str]) -> tuple[Writer[str], Outcomes]:
    backend = InfluxV2(v2_config(url))
    await backend.start()
    spool, writer, outcomes = make_writer(backend, directory)
    try:
        await write_all(writer, spool, lines, outcomes)
    finally:
        await backend.close()
    return writer, outcomes


async def test_v2_write_sends_org_bucket_precision_and_token(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    fake, url = fake_v2
    _, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.5 1700000000000000000", "b": "m x=2.5 1700000000000000001"})
    assert sorted(outcomes.stored) == ["a", "b"]
    query, headers, body = fake.requests[0]
    assert query == {"org": "lab", "bucket": "labhub", "precision": "ns"}
    assert headers["Authorization"] == "Token secret-token"
    assert body.splitlines() == ["m x=1.5 1700000000000000000", "m x=2.5 1700000000000000001"]


async def test_v2_400_isolates_the_bad_point(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    fake, url = fake_v2
    lines = {f"ok{i}": f"m x={i}.0 {1700000000000000000 + i}" for i in range(7)}
    lines["bad"] = 'm bad="s" 1700000000000000100'
    _, outcomes = await run_v2(url, tmp_path, lines)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "bad")
    [(owner, detail)] = outcomes.rejected
    assert owner == "bad" and "field type conflict" in detail
    assert sorted(fake.stored) == sorted(line for o, line in lines.items() if o != "bad")


@pytest.mark.parametrize("status", [429, 503])
async def test_v2_retries_after_the_delay_it_is_told(fake_v2: tuple[FakeV2, str], status: int, tmp_path: Path) -> None:
    fake, url = fake_v2
    fake.script.append(
        lambda body: web.json_response(
            {"code": "too many requests", "message": "slow down"}, status=status, headers={"Retry-After": "1"}
        )
    )
    started = time.monotonic()
    writer, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.0 1700000000000000000"})
    assert outcomes.stored == ["a"] and writer.stats.retries == 1
    assert time.monotonic() - started >= 1.0
    assert len(fake.requests) == 2


async def test_v2_unauthorized_is_retried_and_reported(fake_v2: tuple[FakeV2, str]) -> None:
    fake, url = fake_v2
    backend = InfluxV2(v2_config(url, token="wrong"))
    await backend.start()
    try:
        with pytest.raises(StorageError, match="HTTP 401: unauthorized access"):
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
    assert fake.stored == []


async def test_v2_unreachable_is_a_storage_error() -> None:
    backend = InfluxV2(v2_config(f"http://127.0.0.1:{free_port()}"))
    await backend.start()
    try:
        with pytest.raises(StorageError):
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
