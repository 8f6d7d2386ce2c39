"""A showcase in a real headless Chromium: a learner's recorded demo (the simulated air sensor, a demo session
started and stopped through the API), published by the learner and approved by the trainer over the API, opens at
its share link without any login and shows the description, the plot and the demo's replay (framed from this
origin only); it carries no token and a CSP without unsafe-inline; printed, it is one A4 page. With its key nothing
else opens (route matrix); the replay and the data pack hold only the devices the project chose, not the demo's
other one; revoked it answers 404, expired 410."""

from __future__ import annotations

import asyncio
import io
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import aiohttp
from playwright.async_api import async_playwright

from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS
from tests.support import api_token, wait_until

DEMO_S = 6.0
DESCRIPTION = "An **air-quality sensor** built in four months.\n\n<script>alert('x')</script>"


async def call(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.request(method, url, **kw) as r:
        text = await r.text()
        return r.status, (await r.json() if r.content_type == "application/json" else text)


async def record(services: Services, hub: Any, refs: tuple[DeviceRef, ...], base: str, trainer: str) -> str:
    """A demo of `refs` (the simulated air sensor on each), started and stopped by the trainer."""
    sensors = [AirSensor(ref, "127.0.0.1", services.mqtt_port, 0.5, seed=3) for ref in refs]
    tasks = [asyncio.create_task(sensor.run()) for sensor in sensors]
    ref = refs[0]
    try:
        await wait_until(
            lambda: all(r in hub.ingest.devices and hub.ingest.devices[r].stored > 0 for r in refs), 20, "storing"
        )
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {trainer}"}) as http:
            status, session = await call(http, "POST", f"{base}/api/sessions", json={"learner": f"{ref.cohort}/ana"})
            assert status == 201, session
            started = time.monotonic()
            await wait_until(lambda: time.monotonic() - started >= DEMO_S, DEMO_S + 5, "the demo's length")
            status, session = await call(http, "POST", f"{base}/api/sessions/{session['id']}/stop")
            assert status == 200, session
        assert await hub.flush_evidence(timeout=10.0)
        return str(session["id"])
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def pdf_pages(pdf: bytes) -> int:
    return len(re.findall(rb"/Type\s*/Page(?!s)", pdf))


async def test_a_showcase_opens_without_login_prints_on_one_page_and_exposes_nothing_else(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"
    cohort = unique("s")
    ana, ben = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    unshown = DeviceRef(cohort, "ana", "aq2")  # in ana's demo, but not chosen for the showcase
    hub = await start_hub(devices=((ana.key, "air_quality"), (ben.key, "air_quality"), (unshown.key, "air_quality")))
    base = f"http://127.0.0.1:{hub.http_port}"
    trainer, learner = api_token(hub, "trainer", cohort), api_token(hub, "learner", f"{cohort}/ana")
    session = await record(services, hub, (ana, unshown), base, trainer)
    as_trainer = {"Authorization": f"Bearer {trainer}"}
    async with aiohttp.ClientSession() as http:
        body = {
            "learner": f"{cohort}/ana",
            "title": "Breathing easier",
            "description": DESCRIPTION,
            "session": session,
            "devices": [ana.key],
            "plots": [f"{ana.key}:pm2_5", f"{ana.key}:temperature"],
            "show_grade": True,
        }
        status, made = await call(
            http, "POST", f"{base}/api/showcases", json=body, headers={"Authorization": f"Bearer {learner}"}
        )
        assert status == 201, made
        link, key, slug = base + made["link"], made["key"], made["slug"]
        assert (await call(http, "GET", link))[0] == 404  # awaiting the trainer's approval
        status, _ = await call(http, "POST", f"{base}/api/showcases/{slug}/approve", json={}, headers=as_trainer)
        assert status == 200
        # ben's project, published by the trainer: ana's key must not open it
        status, other = await call(
            http,
            "POST",
            f"{base}/api/showcases",
            headers=as_trainer,
            json={"learner": f"{cohort}/ben", "title": "Ben's"},
        )
        assert status == 201, other

        # The same demo as a two-device project, graded: twice the grade's rows, still one printed page.
        status, both = await call(
            http,
            "POST",
            f"{base}/api/showcases",
            headers=as_trainer,
            json={**body, "title": "Both sensors", "devices": [ana.key, unshown.key], "plots": [f"{ana.key}:pm2_5"]},
        )
        assert status == 201, both

        async with http.get(link) as r:
            assert r.status == 200
            html = await r.text()
            csp = r.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in csp and "script-src 'self'" in csp and "frame-src 'self'" in csp
        assert trainer not in html and learner not in html and "lh_" not in html and "<script" not in html
        assert "&lt;script&gt;" in html and 'content="noindex' in html
        assert f">{ana.key}</td>" in html and unshown.key not in html  # graded: the project's device only
        assert "over all of the demo's devices:" in html  # and the whole demo's score beside it

        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            errors: list[str] = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(link)
            assert await page.inner_text("h1") == "Breathing easier"
            assert await page.inner_text(".description strong") == "air-quality sensor"
            assert await page.locator("figure.plots svg g.panel polyline.series").count() == 2
            frame = page.frame_locator("iframe.replay")
            await frame.locator("body[data-ready]").wait_for(timeout=20_000)
            assert await frame.locator(f'section[data-device="{ana.key}"]').count() == 1
            assert await frame.locator(f'section[data-device="{ben.key}"]').count() == 0
            assert await frame.locator(f'section[data-device="{unshown.key}"]').count() == 0
            assert await page.locator("a[download]").count() == 1  # the data pack: the learner opted in
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, f"the page is {width} px wide on a 390 px phone"
            await page.screenshot(path=str(tmp_path / "showcase-phone.png"), full_page=True)
            pdf = await page.pdf(format="A4", print_background=True)
            (tmp_path / "showcase.pdf").write_bytes(pdf)
            print(f"showcase: printed as {pdf_pages(pdf)} A4 page(s), {len(pdf)} bytes")
            assert pdf_pages(pdf) == 1
            await page.goto(base + both["link"])
            assert await page.locator("table.grade td[rowspan]").count() == 2  # each device's criteria
            assert pdf_pages(await page.pdf(format="A4", print_background=True)) == 1
            assert not errors, errors
            await browser.close()

        # With the key: this showcase's own sub-resources, nothing else.
        q = f"?k={key}"
        assert (await call(http, "GET", f"{base}/showcase/{slug}/replay{q}"))[0] == 200
        async with http.get(f"{base}/showcase/{slug}/pack.zip{q}") as r:
            assert r.status == 200
            pack = zipfile.ZipFile(io.BytesIO(await r.read()))
        names = pack.namelist()
        readings = sorted(n.split("/", 1)[1] for n in names if "/readings/" in n)
        assert readings == ["readings/aq1.csv"], names  # the chosen device's, not the demo's other one
        grades = [n for n in names if "/grades/" in n]
        assert grades and all(unshown.key not in pack.read(n).decode() for n in grades)
        assert all(ana.key in pack.read(n).decode() for n in grades)
        matrix = {
            f"/showcase/{other['slug']}{q}": 404,
            f"/showcase/{other['slug']}/replay{q}": 404,
            f"/showcase/{other['slug']}/pack.zip{q}": 404,
            f"/api/devices/{ben.key}{q}": 401,
            f"/api/devices/{ana.key}{q}": 401,
            f"/api/devices/{ana.key}/history{q}": 401,
            f"/api/sessions{q}": 401,
            f"/api/sessions/{session}/grade{q}": 401,
            f"/api/sessions/{session}/replay{q}": 401,
            f"/api/learners/{cohort}/ben/pack.zip{q}": 401,
            f"/api/showcases{q}": 401,
            f"/api/cohorts/{cohort}/overview{q}": 401,
        }
        for path, want in matrix.items():
            status, answer = await call(http, "GET", base + path)
            assert status == want, (path, status, str(answer)[:200])
        status, replay = await call(http, "GET", f"{base}/showcase/{slug}/replay{q}")
        assert {d["device"] for d in replay["devices"]} == {ana.key}

        # Revoked: 404. Expired: 410 (a second showcase, expiring two seconds from now).
        assert (await call(http, "DELETE", f"{base}/api/showcases/{slug}", headers=as_trainer))[0] == 200
        assert (await call(http, "GET", link))[0] == 404
        assert (await call(http, "GET", f"{base}/showcase/{slug}/replay{q}"))[0] == 404
        status, soon = await call(
            http,
            "POST",
            f"{base}/api/showcases",
            headers=as_trainer,
            json={"learner": f"{cohort}/ana", "title": "Soon gone", "expires_ns": time.time_ns() + 2 * 10**9},
        )
        assert status == 201, soon
        soon_link = base + soon["link"]
        assert (await call(http, "GET", soon_link))[0] == 200
        await wait_until(lambda: _status(soon_link), timeout=10, what="410 after expiry")


async def _status(url: str) -> bool:
    async with aiohttp.ClientSession() as http, http.get(url) as r:
        return r.status == 410


async def test_a_learner_publishes_from_the_showcases_page_and_the_trainer_approves_there(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    """The page a learner publishes from (no curl): their finished demo offered, its devices and fields to choose;
    the link shown once, and a new one for a lost one; their trainer approves it, makes it public and revokes it on
    the same page, and publishes one for a learner; a viewer can change nothing."""
    cohort = unique("u")
    ana, extra = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ana", "aq2")
    hub = await start_hub(devices=((ana.key, "air_quality"), (extra.key, "air_quality")))
    base = f"http://127.0.0.1:{hub.http_port}"
    trainer, learner = api_token(hub, "trainer", cohort), api_token(hub, "learner", f"{cohort}/ana")
    session = await record(services, hub, (ana, extra), base, trainer)
    async with async_playwright() as pw, aiohttp.ClientSession() as http:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        errors: list[str] = []

        async def open_page(token: str) -> Any:
            page = await (await browser.new_context(viewport={"width": 390, "height": 844})).new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("response", lambda r: errors.append(f"{r.status} {r.url}") if r.status >= 400 else None)
            page.on("dialog", lambda d: asyncio.ensure_future(d.accept()))  # "revoke?", "a new link?": yes
            await page.goto(f"{base}/board/showcases#token={token}")
            return page

        page = await open_page(learner)
        await page.locator(f'#demo option[value="{session}"]').wait_for(state="attached", timeout=10_000)
        assert await page.locator("#who-row").is_hidden()  # a learner publishes their own
        assert await page.input_value("#demo") == session  # the latest finished demo, chosen
        await page.fill("#title", "Clean air at home")
        await page.fill("#description", "A **sensor** on an ESP32.")
        await page.uncheck(f'#devices input[value="{extra.key}"]')  # in the demo, not in the project
        assert await page.locator(f'#plots input[value="{extra.key}:pm2_5"]').count() == 0
        await page.check(f'#plots input[value="{ana.key}:pm2_5"]')
        await page.check("#grade")
        await page.click("#publish button[type=submit]")
        link = await page.locator("#made-link").get_attribute("href", timeout=10_000)
        assert link and link.startswith(f"{base}/showcase/") and "?k=" in link
        assert "approval" in await page.inner_text("#made")
        await page.screenshot(path=str(tmp_path / "showcases-learner.png"), full_page=True)
        slug = link.split("/showcase/", 1)[1].split("?", 1)[0]
        row = page.locator(f'tr[data-slug="{slug}"]')
        assert await row.locator(".state").inner_text() == "awaiting approval"
        assert await row.locator("button", has_text="approve").count() == 0  # a learner cannot approve
        async with http.get(link) as r:
            assert r.status == 404  # not before the trainer approves
        status, listed = await call(
            http, "GET", f"{base}/api/showcases", headers={"Authorization": f"Bearer {trainer}"}
        )
        assert status == 200, listed
        made = next(s for s in listed["showcases"] if s["slug"] == slug)
        assert (made["devices"], made["plots"], made["session"], made["show_grade"]) == (
            [ana.key],
            [f"{ana.key}:pm2_5"],
            session,
            True,
        )

        desk = await open_page(trainer)
        trow = desk.locator(f'tr[data-slug="{slug}"]')
        await trow.locator("button", has_text="approve").click()
        await desk.wait_for_function(
            "(s) => document.querySelector(`tr[data-slug='${s}'] .state`).textContent === 'published'", arg=slug
        )
        async with http.get(link) as r:
            assert r.status == 200 and "Clean air at home" in await r.text()
        await page.reload()  # the learner lost the link: a new one, and the old one stops opening it
        await page.locator(f'tr[data-slug="{slug}"] button', has_text="new link").click()
        await page.wait_for_function(
            "(old) => { const a = document.getElementById('made-link'); return a && a.href !== old; }", arg=link
        )
        renewed = await page.locator("#made-link").get_attribute("href")
        assert renewed and renewed.startswith(f"{base}/showcase/{slug}?k=") and renewed != link
        async with http.get(link) as old, http.get(renewed) as new:
            assert (old.status, new.status) == (404, 200)
        await desk.reload()
        await trow.locator("button", has_text="make public").click()
        await trow.locator("td a", has_text="Clean air at home").wait_for(timeout=10_000)
        async with http.get(f"{base}/showcase/{slug}") as r:
            assert r.status == 200  # public: no key needed
        await trow.locator("button", has_text="revoke").click()
        await trow.wait_for(state="detached", timeout=10_000)
        async with http.get(renewed) as r:
            assert r.status == 404

        # The trainer publishes for a learner (approved at once); without a demo, no plots nor grade are offered.
        await desk.fill("#who", f"{cohort}/ana")
        await desk.locator("#who").dispatch_event("change")
        await desk.locator(f'#demo option[value="{session}"]').wait_for(state="attached", timeout=10_000)
        await desk.select_option("#demo", "")
        assert await desk.is_disabled("#grade") and await desk.locator("#plots input").count() == 0
        await desk.fill("#title", "Picked by the trainer")
        await desk.click("#publish button[type=submit]")
        picked = await desk.locator("#made-link").get_attribute("href", timeout=10_000)
        assert picked and "Published." in await desk.inner_text("#made")
        async with http.get(picked) as r:
            assert r.status == 200  # approved at once
        # A viewer (a classroom screen) sees the list, and can neither publish nor change anything.
        screen = await open_page(api_token(hub, "viewer", cohort))
        await screen.locator("#list tr").first.wait_for(timeout=10_000)
        assert await screen.locator("#publish").is_hidden() and await screen.locator("#list button").count() == 0
        assert not errors, errors
        await browser.close()
