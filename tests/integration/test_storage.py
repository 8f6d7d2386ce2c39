"""The writer against the real influxd (1.x), and a hub on the 2.x backend (tests/fakes.py, its InfluxQL run by the
real influxd): health and reads. The writer against that endpoint alone is unit-tested (tests/unit/test_storage.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import urllib.request
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.adapters.influx import (
    InfluxV1,
    parse_conflict,
)
from hub.adapters.influx_admin import admin_query
from hub.adapters.influxql import create_database_query
from hub.config import InfluxConfig, LabConfig
from hub.ops.influxd import start_influxd
from hub.ops.services import free_port
from tests.conftest import unique
from tests.fakes import FakeV2, v2_config
from tests.integration.conftest import HubFactory, Services, lab_config
from tests.support import MqttPublisher, api_token, count_when_stable, http_json, influx_query, wait_until
from tests.unit.test_storage import make_writer, write_all


@pytest.fixture
async def v1(services: Services) -> AsyncIterator[InfluxV1]:
    backend = InfluxV1(InfluxConfig(url=services.influx_url, database=unique("db")))
    await backend.start()
    await backend.ensure_database()
    yield backend
    await backend.close()


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


def http_text(url: str, token: str) -> str:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return str(resp.read().decode())


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
    assert hub.durability.pauses >= 1 and not hub.mqtt.paused


async def test_an_influxdb_slower_than_intake_pauses_intake_instead_of_spilling(
    services: Services, start_hub: HubFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Overload, not an outage: InfluxDB takes every write, slowly. Past the memory queue the hub stops reading
    from the broker (which holds the readings) instead of spilling them to disk and reading them back; nothing
    is lost, and intake resumes once the writer has caught up."""
    real = InfluxV1.write

    async def slow_write(backend: InfluxV1, body: str) -> None:
        await asyncio.sleep(0.2)  # a slow database: each write takes a while, but every write succeeds
        await real(backend, body)

    monkeypatch.setattr(InfluxV1, "write", slow_write)
    hub = await start_hub(queue_max_points=20, batch_max_points=10)
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)

    try:
        for i in range(100):
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": i}))
        await wait_until(lambda: hub.spool.behind and hub.mqtt.paused, what="intake paused while InfluxDB is behind")
        assert "slower than the readings coming in" in " ".join(hub.health()["reasons"])
        db = hub.cfg.influx.database
        assert (
            await count_when_stable(services.influx_port, db, "/^generic\\./", "n", f"cohort = '{ref.cohort}'", 100)
            == 100
        )
    finally:
        pub.close()
    await wait_until(lambda: not hub.mqtt.paused and not hub.spool.behind, what="intake resumed")
    assert hub.spool.replayed == 0  # nothing went through the disk backlog
    assert hub.spool.behind_pauses >= 1 and hub.durability.pauses >= 1
    values = influx_query(services.influx_port, db, f"SELECT n FROM /^generic\\./ WHERE cohort = '{ref.cohort}'")
    assert sorted(row[1] for row in values[0]["values"]) == [float(i) for i in range(100)]


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


@pytest.fixture
async def v2_over_influxd(services: Services, fake_v2: tuple[FakeV2, str]) -> tuple[FakeV2, InfluxConfig]:
    """The 2.x endpoint with a bucket of its own, a database mapped to it (DBRP), and the points it accepts stored
    in the real influxd, where its InfluxQL runs (as 2.x runs InfluxQL with the 1.x engine)."""
    fake, url = fake_v2
    bucket = unique("bucket")
    answer = await asyncio.to_thread(admin_query, services.influx_url, create_database_query(bucket), None)
    assert "error" not in answer
    fake.buckets, fake.dbrp, fake.influxd = {bucket}, {f"{bucket}-db": bucket}, services.influx_url
    return fake, dataclasses.replace(v2_config(url, bucket=bucket), database=f"{bucket}-db")


async def test_v2_reads_answer_history_overview_and_grades(
    services: Services, start_hub: HubFactory, v2_over_influxd: tuple[FakeV2, InfluxConfig]
) -> None:
    """On the 2.x backend every read the hub makes goes over `/query` with the token and the mapped database:
    the device's last reading, its history, the cohort overview, a session's grade and a CSV export answer with
    the stored reading (no 501)."""
    fake, influx = v2_over_influxd
    hub = await start_hub(dataclasses.replace(lab_config(services), influx=influx))
    ref = DeviceRef(unique("c"), "ana", "box")
    hub.registry.ensure_learner(ref.cohort, ref.learner)
    session = hub.registry.start_session(ref.cohort, ref.learner, "test")
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), json.dumps({"n": 7}))
        await wait_until(lambda: hub.ingest.totals.stored == 1, what="the reading stored")
    finally:
        pub.close()
    token = api_token(hub)
    base = f"http://127.0.0.1:{hub.http_port}/api"
    device = f"{base}/devices/{ref.key}"
    status, latest = await http_json(f"{device}/latest", token)
    assert status == 200 and latest["fields"] == {"n": 7}
    status, history = await http_json(f"{device}/history?field=n", token)
    assert status == 200 and [row[1] for row in history["points"]] == [7]
    status, overview = await http_json(f"{base}/cohorts/{ref.cohort}/overview", token)
    assert status == 200 and [d["latest"]["fields"] for d in overview["devices"]] == [{"n": 7}]
    status, grade = await http_json(f"{base}/sessions/{session.id}/grade", token)
    assert status == 200, grade
    csv = await asyncio.to_thread(http_text, f"{device}/readings.csv?from={int(time.time()) - 3600}", token)
    assert csv.splitlines()[0].endswith(",n") and csv.splitlines()[1].endswith(",ana,box,7.0")
    assert fake.queries and {params["db"] for params, _ in fake.queries} == {influx.database}
    assert {headers["Authorization"] for _, headers in fake.queries} == {"Token secret-token"}


async def test_v1_with_auth_writes_as_its_own_user_and_a_wrong_password_is_named(tmp_path: Path) -> None:
    """influxd as `labhub up` runs it (auth on, the hub's own user): the hub's writes carry Basic auth (built by
    us; aiohttp 3.14 deprecates its BasicAuth, and the suite turns that warning into a failure)."""
    from hub.adapters.influx import StorageConfigError
    from hub.ops.influxd import INFLUX_HUB

    state = tmp_path / "state"
    port = free_port()
    influxd = await asyncio.to_thread(start_influxd, state, http_port=port, rpc_port=free_port(), auth=True)
    try:
        password = (state / "secrets" / "influx-hub").read_text().strip()
        cfg = InfluxConfig(url=f"http://127.0.0.1:{port}", username=INFLUX_HUB)
        for given, works in ((password, True), (password + "x", False)):
            backend = InfluxV1(cfg, given)
            await backend.start()
            try:
                if works:
                    await backend.write("auth_probe v=1 1")
                    series = influx_query(port, cfg.database, "SELECT v FROM auth_probe", (INFLUX_HUB, password))
                    assert series[0]["values"] == [[1, 1.0]]
                else:
                    with pytest.raises(StorageConfigError, match="HTTP 401"):
                        await backend.write("auth_probe v=2 2")
            finally:
                await backend.close()
    finally:
        await asyncio.to_thread(influxd.stop)
