"""Exports against the real influxd: a device's CSV has exactly as many rows as InfluxDB counts for it over the
window (paged past several pages, other devices and outside points left out), pandas reads it back with the right
dtypes, JSON Lines and downsampling agree; over HTTP a learner exports their own device and gets 403 on another's."""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pandas as pd
import pytest

from devices.kinds import AIR_QUALITY
from devices.topics import DeviceRef
from hub.adapters.influx import InfluxV1
from hub.config import InfluxConfig
from hub.exports import Aggregate, Selection, Target, write_csv, write_jsonl
from hub.exports.queries import PAGE_ROWS
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services, lab_config
from tests.support import api_token, cli_config, http_get, influx_query, influx_write, labhub_process, wait_until

POINTS = 2 * PAGE_ROWS + 345  # three pages, the last one short
DB = unique("db")
T0 = 1_764_000_000_000_000_000  # 2025-11-24, whole seconds


@pytest.fixture
async def v1(services: Services) -> AsyncIterator[InfluxV1]:
    backend = InfluxV1(InfluxConfig(url=services.influx_url, database=DB))
    await backend.start()
    await backend.ensure_database()
    yield backend
    await backend.close()


def lines(ref: DeviceRef, start_ns: int, count: int, step_ns: int = 1_000_000_000) -> list[str]:
    """1 Hz air-quality readings; every 7th lacks its temperature, pm2_5 is whole (JSON gives it back as an int)."""
    tags = ",".join(f"{k}={v}" for k, v in ref.tags.items())
    out = []
    for i in range(count):
        temperature = "" if i % 7 == 0 else f",temperature={20 + i % 5}.25"
        out.append(f"air_quality,{tags} pm2_5={i % 50}{temperature} {start_ns + i * step_ns}")
    return out


async def write(db: InfluxV1, body: list[str]) -> None:
    for i in range(0, len(body), 5000):
        await db.write("\n".join(body[i : i + 5000]))


async def test_csv_rows_match_influx_count_and_pandas_reads_the_types(services: Services, v1: InfluxV1) -> None:
    ana, ben = DeviceRef("c1", "ana", "aq"), DeviceRef("c1", "ben", "aq")
    await write(v1, lines(ana, T0 - 10 * 10**9, POINTS + 20))  # 10 before the window, 10 after it
    await write(v1, lines(ben, T0, 500))
    start, end = T0, T0 + POINTS * 10**9
    selection = Selection((Target(ana, AIR_QUALITY),), start, end, label="c1-ana-aq")
    out = io.BytesIO()
    written = await write_csv(v1, selection, out)

    where = f"cohort = 'c1' AND learner = 'ana' AND device = 'aq' AND time >= {start} AND time < {end}"
    [series] = influx_query(services.influx_port, DB, f"SELECT count(*) FROM air_quality WHERE {where}")
    counts = dict(zip(series["columns"], series["values"][0], strict=True))
    assert counts["count_pm2_5"] == POINTS
    assert written == counts["count_pm2_5"]

    data = out.getvalue()
    assert data.count(b"\r\n") == POINTS + 1  # RFC 4180: CRLF, one header line
    frame = pd.read_csv(io.BytesIO(data))
    assert len(frame) == counts["count_pm2_5"]
    assert frame["temperature [°C]"].count() == counts["count_temperature"]
    assert list(frame.columns[:5]) == ["time_utc", "time_ns", "cohort", "learner", "device"]
    assert frame["time_ns"].dtype == "int64"
    assert frame["pm2_5 [µg/m³]"].dtype == "float64"  # whole values in InfluxDB's JSON, floats in the schema
    assert frame["temperature [°C]"].dtype == "float64"
    assert pd.api.types.is_string_dtype(frame["device"]) and set(frame["learner"]) == {"ana"}
    assert frame["time_ns"].is_monotonic_increasing and frame["time_ns"].iloc[0] == start
    assert (pd.to_datetime(frame["time_utc"]).astype("int64") == frame["time_ns"]).all()

    jsonl = io.BytesIO()
    assert await write_jsonl(v1, selection, jsonl) == POINTS
    first = json.loads(jsonl.getvalue().splitlines()[0])
    assert first == {"time_utc": "2025-11-24T16:00:00.000000000Z", "time_ns": start, "cohort": "c1"} | {
        "learner": "ana",
        "device": "aq",
        "pm2_5": 10.0,
        "temperature": 20.25,
    }

    minute = Selection((Target(ana, AIR_QUALITY),), start, end, 60, Aggregate.MAX, "m")
    buckets = influx_query(
        services.influx_port,
        DB,
        f"SELECT max(pm2_5) FROM air_quality WHERE {where} GROUP BY time(60s) fill(none)",
    )[0]["values"]
    out = io.BytesIO()
    assert await write_csv(v1, minute, out) == len(buckets)
    frame = pd.read_csv(io.BytesIO(out.getvalue()))
    assert frame["pm2_5 [µg/m³]"].tolist() == [float(v[1]) for v in buckets]


async def test_http_export_for_the_owner_and_403_for_another_learner_and_the_cli_writes_the_same(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    cohort = unique("c")
    ana, ben = DeviceRef(cohort, "ana", "aq"), DeviceRef(cohort, "ben", "aq")
    hub = await start_hub(lab_config(services, devices=((ana.key, "air_quality"), (ben.key, "air_quality"))))
    start = time.time_ns() + 10**9  # after the devices were registered
    points = lines(ana, start, 1234, 1_000_000) + lines(ben, start, 10, 1_000_000)
    await asyncio.to_thread(influx_write, services.influx_port, hub.cfg.influx.database, points)
    base = f"http://127.0.0.1:{hub.http_port}/api/devices/{ana.key}/readings"
    window = f"?from={start / 1e9 - 1}&to={start / 1e9 + 10}"
    status, body = await asyncio.to_thread(http_get, base + ".csv" + window, api_token(hub, "learner", f"{cohort}/ana"))
    assert status == 200, body[:200]
    assert len(pd.read_csv(io.BytesIO(body))) == 1234
    body_ana = body
    status, body = await asyncio.to_thread(http_get, base + ".csv" + window, api_token(hub, "learner", f"{cohort}/ben"))
    assert status == 403 and b"may not" in body
    status, body = await asyncio.to_thread(http_get, base + ".jsonl" + window, api_token(hub, "viewer", cohort))
    assert status == 200 and len(body.splitlines()) == 1234

    config = str(cli_config(services, hub, tmp_path / "lab.toml"))
    out = tmp_path / "ana.csv"
    args = ("export", "learner", f"{cohort}/ana", "--from", str(start / 1e9 - 1), "--to", str(start / 1e9 + 10))
    _, err = await labhub_process(*args, "-o", str(out), "--config", config)
    assert f"1234 rows of {cohort}-ana" in err
    assert out.read_bytes() == body_ana


async def test_the_device_page_button_downloads_the_shown_range_as_csv(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    """In headless Chromium, the device page's CSV button saves the readings of the range shown (token in a header,
    file named by the hub), and the demo row's button the demo's."""
    from playwright.async_api import async_playwright

    from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS

    cohort = unique("c")
    ana = DeviceRef(cohort, "ana", "aq")
    hub = await start_hub(lab_config(services, devices=((ana.key, "air_quality"),)))
    session = hub.registry.start_session(cohort, "ana", "test")
    start = time.time_ns()  # after the registration and the demo's start; 300 µs of readings
    await asyncio.to_thread(influx_write, services.influx_port, hub.cfg.influx.database, lines(ana, start, 300, 1_000))
    await wait_until(lambda: time.time_ns() > start + 10**6, what="the readings in the past (the page asks up to now)")
    hub.registry.stop_session(session.id)
    token = api_token(hub, "trainer", cohort)
    base = f"http://127.0.0.1:{hub.http_port}"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(accept_downloads=True)
            await page.goto(f"{base}/dashboard/device?device={ana.key}#token={token}")
            async with page.expect_download(timeout=20_000) as info:
                await page.get_by_role("button", name="⬇ CSV").click()
            download = await info.value
            assert download.suggested_filename == f"readings-{cohort}-ana-aq.csv"
            await download.save_as(tmp_path / "device.csv")
            assert len(pd.read_csv(tmp_path / "device.csv")) == 300
            await page.goto(f"{base}/dashboard?cohort={cohort}")
            async with page.expect_download(timeout=20_000) as info:
                await page.locator("#sessions").get_by_role("button", name="⬇ CSV").click()
            download = await info.value
            assert download.suggested_filename == f"readings-demo-{session.id}.csv"
            await download.save_as(tmp_path / "demo.csv")
            assert len(pd.read_csv(tmp_path / "demo.csv")) == 300
        finally:
            await browser.close()
