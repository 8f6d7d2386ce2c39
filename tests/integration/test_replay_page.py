"""The replay page in a real headless Chromium: a recorded 60 s demo of the simulated arm and air sensor (a demo
session started and stopped through the API, commands from the simulated phone app) plays back at 5×, and what the
page shows at sampled instants is what InfluxDB holds for the matching recorded times: the arm drawing's joint
angles, the card values, the plot cursor, the command log."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import Page, async_playwright

from devices.arm import load_profiles
from devices.kinds import KINDS
from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from firmware_sim.app import PhoneApp
from firmware_sim.arm import ArmFirmware
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS
from tests.support import api_token, influx_query, wait_until

DEMO_S = float(os.environ.get("LABHUB_REPLAY_DEMO_S", "60"))  # the 60 s demo; shorter by hand only
JOINTS = ("base", "shoulder", "elbow", "gripper")
FIELD = "pm2_5"

SNAPSHOT = """() => {
    const s = window.replay.state();
    const svg = document.querySelector('section[data-device="ARM"] svg.arm');
    const joints = {};
    for (const a of svg.getAttributeNames()) if (a.startsWith('data-joint-')) joints[a.slice(11)] = Number(svg.getAttribute(a));
    const air = document.querySelector('section[data-device="AIR"]');
    const chart = air.querySelector('.chart[data-field="FIELD"]');
    return {
        at: s.at, wall: performance.now(), playing: s.playing, joints,
        card: air.querySelector('.card[data-field="FIELD"] b').textContent,
        cursorAt: Number(chart.dataset.at), cursorValue: chart.dataset.value,
        commandRows: document.querySelectorAll('#log tr.command').length,
    };
}"""


def stored(port: int, db: str, measurement: str, fields: str, ref: DeviceRef, start: int, end: int) -> list[list[Any]]:
    q = (
        f"SELECT {fields} FROM \"{measurement}\" WHERE cohort = '{ref.cohort}' AND learner = '{ref.learner}' "
        f"AND device = '{ref.device}' AND time >= {start} AND time < {end}"
    )
    series = influx_query(port, db, q)
    return series[0]["values"] if series else []


def around(rows: list[list[Any]], at_ns: float) -> list[list[Any]]:
    """The stored reading at or before `at_ns` and its neighbours (± one reading)."""
    last = max((i for i, row in enumerate(rows) if row[0] <= at_ns), default=0)
    return rows[max(0, last - 1) : last + 2]


async def record_demo(services: Services, hub: Any, arm_ref: DeviceRef, air_ref: DeviceRef) -> dict[str, Any]:
    """A demo through the API: the trainer starts it, the phone app drives the arm for DEMO_S, the trainer stops it."""
    trainer = api_token(hub, "trainer", arm_ref.cohort)
    learner = api_token(hub, "learner", f"{arm_ref.cohort}/{arm_ref.learner}")
    base = f"http://127.0.0.1:{hub.http_port}"
    arm = ArmFirmware(arm_ref, load_profiles()["mearm"], "127.0.0.1", services.mqtt_port)
    sensor = AirSensor(air_ref, "127.0.0.1", services.mqtt_port, 1.0, seed=4)
    tasks = [asyncio.create_task(arm.run()), asyncio.create_task(sensor.run())]
    try:
        await wait_until(
            lambda: all(r in hub.ingest.devices and hub.ingest.devices[r].stored > 0 for r in (arm_ref, air_ref)),
            timeout=20,
            what="both devices storing",
        )
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {trainer}"}) as http:
            async with http.post(f"{base}/api/sessions", json={"learner": f"{arm_ref.cohort}/{arm_ref.learner}"}) as r:
                assert r.status == 201, await r.text()
                session = await r.json()
            async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {learner}"}) as phone:
                app = PhoneApp(base, arm_ref.key, rate_per_s=1.0, seed=7, unsafe_share=0.1)
                await app.run(phone, duration_s=DEMO_S - 4)  # and 2 s for the last commands
            async with http.post(f"{base}/api/sessions/{session['id']}/stop") as r:
                assert r.status == 200, await r.text()
                session = await r.json()
        assert await hub.flush_evidence(timeout=10.0), "the demo's data did not reach InfluxDB"
        print(f"demo: {app.stats.sent} commands sent, {app.stats.refused} refused")
        assert app.stats.sent >= DEMO_S / 3
        return dict(session)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def test_a_recorded_demo_replays_at_5x_as_influxdb_holds_it(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"
    cohort = unique("r")
    arm_ref, air_ref = DeviceRef(cohort, "ana", "arm1"), DeviceRef(cohort, "ana", "aq1")
    hub = await start_hub(devices=((arm_ref.key, "arm"), (air_ref.key, "air_quality")))
    session = await record_demo(services, hub, arm_ref, air_ref)
    start, end = session["started_ns"], session["stopped_ns"]
    db, port = hub.cfg.influx.database, services.influx_port
    arm_rows = stored(port, db, KINDS["arm"].measurement_for(cohort, "ana"), ",".join(JOINTS), arm_ref, start, end)
    air_rows = stored(port, db, "air_quality", FIELD, air_ref, start, end)
    commands = influx_query(
        port,
        db,
        f"SELECT request, state FROM commands WHERE device = 'arm1' AND cohort = '{cohort}' AND time >= {start} "
        f"AND time < {end}",
    )
    command_times = [row[0] for row in commands[0]["values"]] if commands else []
    print(f"recorded: {len(arm_rows)} arm poses, {len(air_rows)} air readings, {len(command_times)} commands")
    assert len(arm_rows) > 60 and len(air_rows) > DEMO_S / 2 and command_times

    snapshot = SNAPSHOT.replace("ARM", arm_ref.key).replace("AIR", air_ref.key).replace("FIELD", FIELD)
    token = api_token(hub, "viewer", cohort)
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if "Content Security Policy" in m.text else None)
        await page.goto(f"http://127.0.0.1:{hub.http_port}/dashboard/replay?session={session['id']}#token={token}")
        await page.wait_for_selector("body[data-ready]", timeout=20_000)
        await page.click('button[data-speed="5"]')
        await page.click("#play")
        samples = [await sample_when(page, snapshot, start + f * (end - start)) for f in (0.25, 0.5, 0.75)]
        await page.screenshot(path=str(tmp_path / "replay.png"), full_page=True)
        rate = (samples[-1]["at"] - samples[0]["at"]) / (samples[-1]["wall"] - samples[0]["wall"])
        print(f"replay speed: {rate:.2f}× recorded time per wall second (asked 5×)")
        assert 4.0 < rate < 6.0
        for s in samples:
            check_instant(s, arm_rows, air_rows, command_times)
        # Seeking (paused): the views follow at once.
        await page.click("#play")  # pause
        for fraction in (0.1, 0.9):
            at_ms = (start + fraction * (end - start)) / 1e6
            await page.evaluate("(t) => window.replay.seek(t)", at_ms)
            s = await page.evaluate(snapshot)
            assert not s["playing"] and abs(s["at"] - at_ms) < 1e-3
            check_instant(s, arm_rows, air_rows, command_times)
        assert not errors, errors
        # The ways in: a demo's row on the dashboard, and the device page's range.
        trainer = api_token(hub, "trainer", cohort)
        base = f"http://127.0.0.1:{hub.http_port}"
        await page.goto(f"{base}/dashboard?cohort={cohort}#token={trainer}")
        await page.locator(f'a.replay[href="/dashboard/replay?session={session["id"]}"]').wait_for(timeout=20_000)
        await page.goto(f"{base}/dashboard/device?device={arm_ref.key}")
        await page.click("button.replay")
        await page.wait_for_selector("body[data-ready]", timeout=20_000)
        assert f"device={arm_ref.key}&from=" in page.url
        assert await page.locator(f'section[data-device="{arm_ref.key}"] svg.arm').count() == 1
        assert not errors, errors
        await browser.close()


async def sample_when(page: Page, snapshot: str, at_ns: float) -> dict[str, Any]:
    await page.wait_for_function("(t) => window.replay.state().at >= t", arg=at_ns / 1e6, timeout=30_000)
    s: dict[str, Any] = await page.evaluate(snapshot)
    assert s["playing"]
    return s


def check_instant(s: dict[str, Any], arm_rows: list[list[Any]], air_rows: list[list[Any]], commands: list[int]) -> None:
    """The page at recorded instant s["at"] (ms) against InfluxDB: ± one reading for poses and values."""
    at_ns = s["at"] * 1e6
    poses = [dict(zip(JOINTS, row[1:], strict=True)) for row in around(arm_rows, at_ns)]
    assert any(all(abs(s["joints"][j] - p[j]) < 1e-6 for j in JOINTS) for p in poses), (s, poses)
    values = [row[1] for row in around(air_rows, at_ns)]
    assert any(abs(float(s["card"]) - v) < 1e-9 for v in values), (s["card"], values)
    assert s["cursorAt"] == s["at"] and float(s["cursorValue"]) == float(s["card"])
    assert s["commandRows"] == sum(1 for t in commands if t <= at_ns)
