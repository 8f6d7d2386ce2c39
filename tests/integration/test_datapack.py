"""A learner's data pack from a real influxd: the zip holds their readings (as many rows as InfluxDB counts, none of
another learner's), schema.json, the demo's grade and a notebook that runs top to bottom with nbclient and draws
one figure per device."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import time
import zipfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from devices.topics import DeviceRef
from hub.access.registry import Registry
from hub.adapters.influx import InfluxV1
from hub.config import InfluxConfig
from hub.datapack.pack import PackTarget, write_pack
from hub.grading.rubrics import load_rubrics
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services, lab_config
from tests.support import api_token, cli_config, http_get, influx_query, influx_write, labhub

S = 1_000_000_000


def count(services: Services, db: str, measurement: str, ref: DeviceRef, start: int, end: int) -> int:
    where = f"learner = '{ref.learner}' AND device = '{ref.device}' AND time >= {start} AND time < {end}"
    rows = influx_query(services.influx_port, db, f'SELECT count(*) FROM "{measurement}" WHERE {where}')
    return max(rows[0]["values"][0][1:]) if rows else 0


async def test_a_learners_pack_holds_their_readings_and_its_notebook_runs(services: Services, tmp_path: Path) -> None:
    cohort, database = unique("p"), unique("db")
    registry = Registry(tmp_path / "registry.sqlite3")
    aq, proj, other = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ana", "proj"), DeviceRef(cohort, "bob", "aq1")
    for ref, kind in ((aq, "air_quality"), (proj, "generic"), (other, "air_quality")):
        registry.add_device(ref, kind, None)
    base = registry.device(aq).created_ns + S  # type: ignore[union-attr]
    session = registry.start_session(cohort, "ana", "trainer", now_ns=base)
    session = registry.stop_session(session.id, now_ns=base + 90 * S)
    lines = []
    for i in range(90):
        t = base + i * S
        ana = f"cohort={cohort},learner=ana"
        lines.append(f"air_quality,{ana},device=aq1 temperature={20 + i % 7 / 10},humidity=45,co2={600 + i}.5 {t}")
        if i % 3 == 0:
            button = "true" if i % 2 else "false"
            lines.append(f'generic.{cohort}.ana,{ana},device=proj light={i * 1.5},button={button},note="x {i}" {t}')
        lines.append(f"air_quality,cohort={cohort},learner=bob,device=aq1 temperature=99 {t}")
    db = InfluxV1(InfluxConfig(url=services.influx_url, database=database, launch=False))
    await db.start()
    try:
        assert await db.ensure_database()
        await db.write("\n".join(lines))
        out = tmp_path / "pack.zip"
        summary = await write_pack(db, registry, PackTarget(cohort, "ana"), out, load_rubrics(), now_ns=base + 100 * S)
    finally:
        await db.close()
        registry.close()

    root = f"pack-{cohort}-ana"
    with zipfile.ZipFile(out) as zf:
        names = set(zf.namelist())
        assert names == set(summary.files)
        expected = {"readings/aq1.csv", "readings/proj.csv", "schema.json", "analysis.ipynb"}
        expected |= {f"grades/{session.id}.json", f"grades/{session.id}.html"}
        assert names == {f"{root}/{name}" for name in expected}
        aq_rows = list(csv.DictReader(io.StringIO(zf.read(f"{root}/readings/aq1.csv").decode())))
        schema = json.loads(zf.read(f"{root}/schema.json"))
        grade = json.loads(zf.read(f"{root}/grades/{session.id}.json"))
        zf.extractall(tmp_path / "unzipped")
    assert len(aq_rows) == count(services, database, "air_quality", aq, 0, base + 100 * S) == 90
    assert {r["learner"] for r in aq_rows} == {"ana"}  # bob's aq1 shares the measurement, not the pack
    assert [d["key"] for d in schema["devices"]] == [aq.key, proj.key]
    assert schema["devices"][0]["fields"]["co2"] == {
        "type": "float",
        "unit": "ppm",
        "minimum": 0,
        "maximum": 40000,
        "sensor": "SCD4x: 0–40000 ppm, MH-Z19B: 0–5000 ppm",
    }
    assert set(schema["devices"][1]["fields"]) == {"light", "button", "note"}  # an open kind: what it sent
    assert grade["session"]["id"] == session.id and grade["devices"]

    folder = tmp_path / "unzipped" / root
    notebook = nbformat.read(folder / "analysis.ipynb", as_version=4)
    nbformat.validate(notebook)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) == 2  # one figure per device with numeric readings
    text = "".join(o.get("text", "") for o in outputs)
    assert f"{aq.key} (air_quality): 90 readings" in text and f"{proj.key} (generic): 30 readings" in text
    tables = [o for o in outputs if "text/html" in o.get("data", {})]
    assert len(tables) == 2  # the summary per field and the grades' criteria
    assert "temperature" in tables[0]["data"]["text/html"] and "light" in tables[0]["data"]["text/html"]


async def test_a_pack_without_readings_or_demos_still_runs(services: Services, tmp_path: Path) -> None:
    """A learner who never sent anything (the day before the course): the notebook says so instead of failing."""
    cohort = unique("p")
    registry = Registry(tmp_path / "registry.sqlite3")
    registry.add_device(DeviceRef(cohort, "cy", "aq1"), "air_quality", None)
    db = InfluxV1(InfluxConfig(url=services.influx_url, database=unique("db"), launch=False))
    await db.start()
    try:
        assert await db.ensure_database()
        summary = await write_pack(db, registry, PackTarget(cohort, "cy"), tmp_path / "pack.zip", load_rubrics())
    finally:
        await db.close()
        registry.close()
    assert (summary.devices, summary.grades) == (1, 0)
    with zipfile.ZipFile(tmp_path / "pack.zip") as zf:
        zf.extractall(tmp_path)
    folder = tmp_path / f"pack-{cohort}-cy"
    notebook = nbformat.read(folder / "analysis.ipynb", as_version=4)
    NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(folder)}}
    ).execute()
    text = "".join(o.get("text", "") for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs)
    assert f"{cohort}/cy/aq1 (air_quality): 0 readings" in text and "no numeric readings" in text


def csv_rows(pack: bytes, name: str) -> list[dict[str, str]]:
    with zipfile.ZipFile(io.BytesIO(pack)) as zf:
        (path,) = [n for n in zf.namelist() if n.endswith(name)]
        return list(csv.DictReader(io.StringIO(zf.read(path).decode())))


async def test_a_learner_downloads_their_pack_not_anothers_and_the_cli_writes_the_same(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    cohort = unique("c")
    ana, ben = DeviceRef(cohort, "ana", "aq"), DeviceRef(cohort, "ben", "aq")
    hub = await start_hub(lab_config(services, devices=((ana.key, "air_quality"), (ben.key, "air_quality"))))
    registered = hub.registry.device(ana).created_ns  # type: ignore[union-attr]
    step = (time.time_ns() - registered) // 301  # every point after the registration and before now
    tags = f"cohort={cohort},learner=ana,device=aq"
    points = [f"air_quality,{tags} pm2_5={i % 40}.5 {registered + i * step}" for i in range(1, 301)]
    await asyncio.to_thread(influx_write, services.influx_port, hub.cfg.influx.database, points)
    url = f"http://127.0.0.1:{hub.http_port}/api/learners/{cohort}/ana/pack.zip"
    status, body = await asyncio.to_thread(http_get, url, api_token(hub, "learner", f"{cohort}/ana"))
    assert status == 200, body[:300]
    assert len(csv_rows(body, "readings/aq.csv")) == 300
    status, refused = await asyncio.to_thread(http_get, url, api_token(hub, "learner", f"{cohort}/ben"))
    assert status == 403 and b"may not" in refused

    out = tmp_path / "ana.zip"
    config = str(cli_config(services, hub, tmp_path / "lab.toml"))
    printed = await labhub("export", "pack", f"{cohort}/ana", "--out", str(out), "--config", config)
    assert f"{out}: 1 device(s), 0 graded demo(s)" in printed
    assert csv_rows(out.read_bytes(), "readings/aq.csv") == csv_rows(body, "readings/aq.csv")


async def test_the_demo_rows_pack_button_downloads_the_demos_pack(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    """In headless Chromium, a demo row's pack button saves the demo's zip under the name the hub gives it."""
    from playwright.async_api import async_playwright

    from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS

    cohort = unique("c")
    ana = DeviceRef(cohort, "ana", "aq")
    hub = await start_hub(lab_config(services, devices=((ana.key, "air_quality"),)))
    session = hub.registry.start_session(cohort, "ana", "test")
    start = max(session.started_ns, hub.registry.device(ana).created_ns) + 1  # type: ignore[union-attr]
    tags = f"cohort={cohort},learner=ana,device=aq"
    points = [f"air_quality,{tags} pm2_5={i}.5 {start + i * 1_000_000}" for i in range(120)]
    await asyncio.to_thread(influx_write, services.influx_port, hub.cfg.influx.database, points)
    hub.registry.stop_session(session.id, start + S)
    token = api_token(hub, "trainer", cohort)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page(accept_downloads=True)
            await page.goto(f"http://127.0.0.1:{hub.http_port}/dashboard?cohort={cohort}#token={token}")
            async with page.expect_download(timeout=20_000) as info:
                await page.locator("#sessions").get_by_role("button", name="⬇ pack").click()
            download = await info.value
            assert download.suggested_filename == f"pack-{cohort}-ana-{session.id}.zip"
            await download.save_as(tmp_path / "demo.zip")
        finally:
            await browser.close()
    assert len(csv_rows((tmp_path / "demo.zip").read_bytes(), "readings/aq.csv")) == 120
