"""The writer against the real influxd (1.x), and the 2.x backend against a local endpoint reproducing its contract."""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from devices.topics import DeviceRef
from hub.adapters.influx import (
    BatchTooLarge,
    InfluxV1,
    InfluxV2,
    StorageConfigError,
    StorageError,
    WriteRejected,
    parse_conflict,
    v2_error,
)
from hub.config import InfluxConfig, LabConfig
from hub.ingest import writer as writer_module
from hub.ingest.spool import Spool
from hub.ingest.writer import Writer
from hub.ops.services import free_port, start_influxd
from hub.pace import Backoff
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
        assert hub.health()["reasons"][-1].startswith("spool full")
        # Reading really stopped: new messages reach the hub's socket and stay there, none is handled.
        received, handled = hub.ingest.totals.received, hub.mqtt.handled
        for i in range(100, 120):
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": i}))
        await wait_until(lambda: hub.mqtt.waiting() > 0, what="bytes waiting in the hub's socket")
        assert (hub.ingest.totals.received, hub.mqtt.handled) == (received, handled)
        influxd = await asyncio.to_thread(start_influxd, state, http_port=port, rpc_port=free_port())
        assert await count_when_stable(port, "bp", "/^generic\\./", "n", "", 120) == 120
        values = sorted(row[1] for row in influx_query(port, "bp", "SELECT n FROM /^generic\\./")[0]["values"])
        assert values == [float(i) for i in range(120)]
    finally:
        pub.close()
        if influxd is not None:
            influxd.stop()
    assert hub.pauses >= 1 and not hub.mqtt.paused


# InfluxDB 2.x contract -----------------------------------------------------------------------------
#
# No 2.x server installs here, so a local endpoint answers as InfluxDB OSS 2.x documents and does
# ("Troubleshoot issues writing data", the API's response codes, and 2.7.x answers quoted in issue
# reports): every error is a JSON body {"code": ..., "message": ...} with the platform's error codes.

UNAUTHORIZED = {"code": "unauthorized", "message": "unauthorized access"}
FORBIDDEN = {"code": "forbidden", "message": "insufficient permissions for write"}
TOO_LARGE = {"code": "request too large", "message": "unable to read data: points batch is too large"}
LINE = re.compile(r"^[^ ]+ [^ =]+=[^ ]+ \d+$")  # what this endpoint parses: `measurement field=value time`


@dataclass
class FakeV2:
    """`/api/v2/write` as InfluxDB OSS 2.x answers it, checked in the order the server checks:

    401 without a known token; 413 over `max_body_bytes` (the whole batch, nothing written); 404 for an
    unknown bucket; 403 for a token without write permission on it; 400 for malformed line protocol (the
    first bad line named, the whole batch refused); 422 `partial write: field type conflict … dropped=N`
    for points writing a string into the float field `bad` (the other points are written); else 204.
    `script` answers the next requests instead (429, 500, 503 …) once authorised.
    """

    tokens: dict[str, bool] = field(default_factory=lambda: {"secret-token": True, "read-only": False})
    buckets: set[str] = field(default_factory=lambda: {"labhub"})
    max_body_bytes: int = 1 << 20
    script: list[Callable[[str], web.Response]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, str], str]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)

    async def write(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw).decode() if request.headers.get("Content-Encoding") == "gzip" else raw.decode()
        self.requests.append((dict(request.query), dict(request.headers), body))
        token = request.headers.get("Authorization", "").removeprefix("Token ")
        if token not in self.tokens:
            return web.json_response(UNAUTHORIZED, status=401)
        if len(raw) > self.max_body_bytes:
            return web.json_response(TOO_LARGE, status=413)
        bucket = request.query.get("bucket", "")
        if bucket not in self.buckets:
            return web.json_response({"code": "not found", "message": f'bucket "{bucket}" not found'}, status=404)
        if not self.tokens[token]:
            return web.json_response(FORBIDDEN, status=403)
        if self.script:
            return self.script.pop(0)(body)
        lines = body.splitlines()
        malformed = [line for line in lines if not LINE.match(line)]
        if malformed:
            message = f"unable to parse '{malformed[0]}': missing field value"
            return web.json_response({"code": "invalid", "message": message}, status=400)
        bad = [line for line in lines if 'bad="' in line]
        self.stored.extend(line for line in lines if line not in bad)
        if bad:
            message = (
                "failure writing points to database: partial write: field type conflict: "
                f'input field "bad" on measurement "m" is type string, already exists as type float dropped={len(bad)}'
            )
            return web.json_response({"code": "unprocessable entity", "message": message}, status=422)
        return web.Response(status=204)

    def bodies(self) -> list[str]:
        return [body for _, _, body in self.requests]


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


def v2_config(url: str, token: str = "secret-token", bucket: str = "labhub") -> InfluxConfig:
    return InfluxConfig(backend="v2", url=url, org="lab", bucket=bucket, token=token, timeout_s=5, launch=False)


async def run_v2(
    url: str, directory: Path, lines: dict[str, str], cfg: InfluxConfig | None = None
) -> tuple[Writer[str], Outcomes]:
    backend = InfluxV2(cfg or v2_config(url))
    await backend.start()
    spool, writer, outcomes = make_writer(backend, directory)
    try:
        await write_all(writer, spool, lines, outcomes)
    finally:
        await backend.close()
    return writer, outcomes


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [
        (400, WriteRejected, None),
        (422, WriteRejected, None),
        (413, BatchTooLarge, None),
        (401, StorageConfigError, None),
        (403, StorageConfigError, None),
        (404, StorageConfigError, None),
        (429, StorageError, 2.0),
        (500, StorageError, None),
        (503, StorageError, 3.0),
    ],
)
def test_v2_answers_map_to_what_the_writer_does(status: int, kind: type[Exception], retry_after: float | None) -> None:
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
    err = v2_error(status, "the message", headers)
    assert type(err) is kind
    if isinstance(err, StorageError):
        assert err.retry_after == retry_after


async def test_v2_write_sends_org_bucket_precision_and_token(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    fake, url = fake_v2
    _, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.5 1700000000000000000", "b": "m x=2.5 1700000000000000001"})
    assert sorted(outcomes.stored) == ["a", "b"]
    query, headers, body = fake.requests[0]
    assert query == {"org": "lab", "bucket": "labhub", "precision": "ns"}
    assert headers["Authorization"] == "Token secret-token"
    assert body.splitlines() == ["m x=1.5 1700000000000000000", "m x=2.5 1700000000000000001"]


@pytest.mark.parametrize(
    ("bad_line", "says"),
    [
        ("m x= 1700000000000000100", "unable to parse 'm x= 1700000000000000100'"),  # 400: whole batch refused
        ('m bad="s" 1700000000000000100', 'input field "bad" on measurement "m" is type string'),  # 422: partial
    ],
    ids=["400-malformed", "422-field-type-conflict"],
)
async def test_v2_refused_points_are_isolated_and_never_retried(
    fake_v2: tuple[FakeV2, str], tmp_path: Path, bad_line: str, says: str
) -> None:
    fake, url = fake_v2
    lines = {f"ok{i}": f"m x={i}.0 {1700000000000000000 + i}" for i in range(7)}
    lines["bad"] = bad_line
    writer, outcomes = await run_v2(url, tmp_path, lines)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "bad")
    [(owner, detail)] = outcomes.rejected
    assert owner == "bad" and says in detail
    assert sorted(set(fake.stored)) == sorted(line for o, line in lines.items() if o != "bad")
    assert writer.stats.retries == 0 and writer.stats.last_error == ""
    assert len(fake.bodies()) == len(set(fake.bodies())), "a refused body was sent again"
    assert [body for body in fake.bodies() if body == bad_line] == [bad_line]  # isolated once, then given up


async def test_v2_conflict_detail_names_the_field(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    """The 422 message of a 2.7.x server reads as a field conflict (the hub's `type_conflict` relies on it)."""
    _, url = fake_v2
    _, outcomes = await run_v2(url, tmp_path, {"bad": 'm bad="s" 1700000000000000000'})
    [(_, detail)] = outcomes.rejected
    conflict = parse_conflict(detail)
    assert conflict is not None and (conflict.measurement, conflict.field, conflict.got, conflict.existing) == (
        "m",
        "bad",
        "string",
        "float",
    )


async def test_v2_too_large_batch_is_split_and_a_too_large_point_rejected(
    fake_v2: tuple[FakeV2, str], tmp_path: Path
) -> None:
    fake, url = fake_v2
    fake.max_body_bytes = 300
    lines = {f"ok{i:02d}": f"m x={i}.0 {1700000000000000000 + i}" for i in range(40)}  # ~1,200 bytes in all
    lines["huge"] = f"m x={'1' * 400}.0 1700000000000000999"
    writer, outcomes = await run_v2(url, tmp_path, lines)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "huge")
    [(owner, detail)] = outcomes.rejected
    assert owner == "huge" and "HTTP 413" in detail and "points batch is too large" in detail
    assert sorted(set(fake.stored)) == sorted(line for o, line in lines.items() if o != "huge")
    assert writer.stats.splits >= 1 and writer.stats.retries == 0
    assert writer.max_body_bytes is not None and writer.max_body_bytes < 1300


@pytest.mark.parametrize(
    ("status", "cfg", "fix", "hint"),
    [
        (401, {"token": "wrong"}, lambda fake: fake.tokens.update(wrong=True), "check [influx] token"),
        (403, {"token": "read-only"}, lambda fake: fake.tokens.update({"read-only": True}), "write permission"),
        (404, {"bucket": "nope"}, lambda fake: fake.buckets.add("nope"), "check [influx] org and bucket"),
    ],
    ids=["401", "403", "404"],
)
async def test_v2_configuration_errors_are_loud_and_hold_the_points(
    fake_v2: tuple[FakeV2, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    cfg: dict[str, str],
    fix: Callable[[FakeV2], None],
    hint: str,
) -> None:
    """Refused credentials or names: logged at ERROR again and again, shown as the last error (→ /healthz),
    nothing dropped or rejected; stored as soon as the server accepts them."""
    fake, url = fake_v2
    monkeypatch.setattr(writer_module, "LOUD_EVERY_S", 0.0)  # every retry says it (30 s apart in service)
    backend = InfluxV2(v2_config(url, **cfg))
    await backend.start()
    spool, writer, outcomes = make_writer(backend, tmp_path)
    spool.append(time.time_ns(), 0, "c/l/d", "m x=1.0 1700000000000000000", "a")
    await spool.commit()
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: writer.stats.retries >= 3, what="three refused writes")
        loud = [r for r in caplog.records if r.name == writer_module.__name__ and r.levelno == logging.ERROR]
        assert len(loud) >= 3 and all(f"HTTP {status}" in r.getMessage() for r in loud)
        assert "NOTHING IS STORED" in loud[0].getMessage() and hint in loud[0].getMessage()
        assert writer.stats.last_error.startswith(f"HTTP {status}: ") and hint in writer.stats.last_error
        assert writer.stats.failing_since is not None
        assert outcomes.stored == [] and outcomes.rejected == [] and fake.stored == []
        fix(fake)
        await wait_until(lambda: outcomes.stored == ["a"], what="stored once the server accepts")
        assert writer.stats.last_error == "" and writer.stats.failing_since is None and outcomes.rejected == []
    finally:
        task.cancel()
        spool.close()
        await backend.close()


async def test_v2_refused_token_degrades_healthz(
    services: Services, start_hub: HubFactory, fake_v2: tuple[FakeV2, str]
) -> None:
    fake, url = fake_v2
    config = dataclasses.replace(lab_config(services), influx=v2_config(url, token="wrong"))
    hub = await start_hub(config)
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), json.dumps({"n": 1}))
        await wait_until(lambda: hub.writer.stats.retries >= 1, what="a refused write")
        status, health = await http_json(f"http://127.0.0.1:{hub.http_port}/healthz", api_token(hub))
        assert status == 503 and health["status"] == "degraded"
        [reason] = [r for r in health["reasons"] if r.startswith("InfluxDB writes failing")]
        assert "HTTP 401: unauthorized access" in reason and "check [influx] token" in reason
        fake.tokens["wrong"] = True
        await wait_until(lambda: hub.ingest.totals.stored == 1, what="stored once the token is accepted")
        await wait_until(lambda: hub.health()["status"] == "ok", what="health ok again")
    finally:
        pub.close()


async def test_v2_reads_are_answered_501_with_one_message(
    services: Services, start_hub: HubFactory, fake_v2: tuple[FakeV2, str]
) -> None:
    """History, overviews and grades cannot read a 2.x backend yet: each says so (501), the same way."""
    _, url = fake_v2
    hub = await start_hub(dataclasses.replace(lab_config(services), influx=v2_config(url)))
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), json.dumps({"n": 1}))
        await wait_until(lambda: hub.ingest.totals.stored == 1, what="the reading stored")
    finally:
        pub.close()
    hub.registry.ensure_learner(ref.cohort, ref.learner)
    session = hub.registry.start_session(ref.cohort, ref.learner, "test")
    token = api_token(hub)
    base = f"http://127.0.0.1:{hub.http_port}/api"
    device = f"{base}/devices/{ref.key}"
    for path in (
        f"{device}/latest",
        f"{device}/history?field=n",
        f"{base}/cohorts/{ref.cohort}/overview",
        f"{base}/sessions/{session.id}/grade",
    ):
        status, body = await http_json(path, token)
        assert (status, body["error"]) == (501, "history, overviews and grades need the InfluxDB 1.x backend for now")


@pytest.mark.parametrize(("status", "retry_after"), [(429, "1"), (503, "1"), (500, None)])
async def test_v2_transient_answers_are_retried(
    fake_v2: tuple[FakeV2, str], tmp_path: Path, status: int, retry_after: str | None
) -> None:
    fake, url = fake_v2
    code = {429: "too many requests", 500: "internal error", 503: "unavailable"}[status]
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake.script.append(
        lambda body: web.json_response({"code": code, "message": "try later"}, status=status, headers=headers)
    )
    started = time.monotonic()
    writer, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.0 1700000000000000000"})
    assert outcomes.stored == ["a"] and outcomes.rejected == [] and writer.stats.retries == 1
    if retry_after:
        assert time.monotonic() - started >= float(retry_after)
    assert len(fake.requests) == 2 and fake.stored == ["m x=1.0 1700000000000000000"]


async def test_v2_unauthorized_is_a_configuration_error(fake_v2: tuple[FakeV2, str]) -> None:
    fake, url = fake_v2
    backend = InfluxV2(v2_config(url, token="wrong"))
    await backend.start()
    try:
        with pytest.raises(StorageConfigError, match=r"HTTP 401: unauthorized access \(.*check \[influx\] token"):
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
    assert fake.stored == []


async def test_v2_unreachable_is_a_storage_error() -> None:
    backend = InfluxV2(v2_config(f"http://127.0.0.1:{free_port()}"))
    await backend.start()
    try:
        with pytest.raises(StorageError) as caught:
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
    assert not isinstance(caught.value, StorageConfigError)
