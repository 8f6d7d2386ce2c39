"""The "my board" page, the dashboard's findings badge and the device page's Diagnosis section in a real headless
Chromium (Debian's), against a real hub on a closed broker (device accounts, where the doctor sees each
connection's account): one healthy simulated station and one that publishes its readings retained."""

from __future__ import annotations

import asyncio
import dataclasses
import re
from pathlib import Path
from typing import Any

from playwright.async_api import Page, async_playwright

from devices import diagnoses as dx
from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from tests.conftest import unique
from tests.integration.test_doctor import Lab, broker, lab  # noqa: F401 (a hub on a closed broker)
from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS
from tests.support import MqttPublisher, api_token, http_json, wait_until

FINDING = dx.RETAINED_TELEMETRY  # a board that publishes its readings with the retain flag
QUIET = dataclasses.replace(dx.DEFAULT_THRESHOLDS, quiet_s=3.0)  # resolved 3 s after the symptom stops, not 60
SEEN_MS = 20_000  # the doctor sees a symptom within 10 s (the bound); the pages refresh every 4 and 10 s


async def diagnosis_of(base: str, token: str, ref: DeviceRef) -> dict[str, Any]:
    status, body = await http_json(f"{base}/api/devices/{ref.key}/diagnosis", token)
    assert status == 200, body
    return dict(body)


async def checklist_shown(page: Page, ref: DeviceRef) -> list[tuple[str, str]]:
    items = page.locator(f'section[data-device="{ref.key}"] .checklist li')
    return [
        (str(await li.get_attribute("data-item")), str(await li.get_attribute("class"))) for li in await items.all()
    ]


async def test_my_board_shows_the_checklist_and_the_finding_with_its_fix_and_the_dashboard_its_badge(
    lab: Lab,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"
    hub = lab.hub
    hub.doctor.engine.thresholds = QUIET
    cohort = unique("b")
    healthy, faulty = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ana", "aq2")
    boards, passwords = [], []
    for ref, fault in ((healthy, None), (faulty, "retained_telemetry")):
        passwords.append((await hub.accounts.add_device(ref.key, "air_quality")).password)
        boards.append(AirSensor(ref, "127.0.0.1", lab.broker.port, 1.0, fault, seed=3, password=passwords[-1]))
    hub.apply_registry()
    base = f"http://127.0.0.1:{hub.http_port}"
    learner = api_token(hub, "learner", f"{cohort}/ana")
    tasks = [asyncio.create_task(board.run()) for board in boards]
    try:

        async def open_finding() -> dict[str, Any] | None:
            body = await diagnosis_of(base, learner, faulty)
            return next((f for f in body["findings"] if f["code"] == FINDING and not f["resolved"]), None)

        finding = await wait_until(open_finding, timeout=20, what=f"the doctor's {FINDING} finding")
        # A second finding, an error: a retained message on its own commands topic (the broker refuses it).
        sender = MqttPublisher(lab.broker.port, client_id=f"{faulty.key}-tool", auth=(faulty.key, passwords[1]))
        sender.client.publish(faulty.topic("commands"), b'{"type": "stop"}', qos=0, retain=True).wait_for_publish(5)
        sender.close()

        async def two_open() -> dict[str, Any] | None:
            body = await diagnosis_of(base, learner, faulty)
            return body if body["open"] == 2 else None

        expected = await wait_until(two_open, timeout=20, what=f"{dx.RETAINED_COMMAND} as well")
        assert {f["code"] for f in expected["findings"]} == {FINDING, dx.RETAINED_COMMAND}
        await wait_until(lambda: hub.ingest.devices[healthy].stored > 0, what="a healthy reading stored")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            context = await browser.new_context(viewport={"width": 390, "height": 844})  # a phone
            await context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
            page = await context.new_page()
            sent: list[str] = []
            page.on("request", lambda request: sent.append(request.url))
            await page.goto(f"{base}/board#token={learner}")

            # The faulty board: its checklist in the contract's order (the catalogue's), its finding with both fixes.
            shown = page.locator(f'section[data-device="{faulty.key}"] .finding[data-code="{FINDING}"]')
            await shown.wait_for(timeout=SEEN_MS)
            assert [name for name, _ in await checklist_shown(page, faulty)] == list(dx.CHECKLIST)
            assert finding["message"] in await shown.locator(".message").inner_text()
            for lang in ("arduino", "micropython"):
                assert finding["fix"][lang].strip(), f"no {lang} fix"
                assert await shown.locator(f'.fix[data-lang="{lang}"] pre').inner_text() == finding["fix"][lang]
            seen = re.match(r"seen (\d+)× · first .+ · last ", await shown.locator(".seen").inner_text())
            assert seen and int(seen[1]) >= finding["evidence"]["count"]  # the board keeps publishing retained
            copy = shown.locator('.fix[data-lang="micropython"] button.copy')
            await copy.click()
            await page.wait_for_function("(b) => b.textContent === 'copied'", arg=await copy.element_handle())
            assert await page.evaluate("navigator.clipboard.readText()") == finding["fix"]["micropython"]
            open_count = 2
            heading = f'section[data-device="{faulty.key}"] .diagnosis > h3'
            assert f"Open findings ({open_count})" in await page.locator(heading).all_inner_texts()

            # The healthy station: its first reading ticked, no finding.
            healthy_box = page.locator(f'section[data-device="{healthy.key}"]')
            await healthy_box.locator('li[data-item="first_valid_reading"].ok').wait_for(timeout=SEEN_MS)
            assert "No open findings" in await healthy_box.locator(".diagnosis > h3").all_inner_texts()
            assert await healthy_box.locator(".finding").count() == 0
            await page.screenshot(path=str(tmp_path / "board.png"), full_page=True)

            # The dashboard: a badge with the open count on the faulty card only, its title naming the code.
            await page.set_viewport_size({"width": 1280, "height": 900})
            await page.goto(f"{base}/dashboard?cohort={cohort}")
            badge = page.locator(f'article[data-device="{faulty.key}"] .badge')
            await badge.wait_for(timeout=SEEN_MS)
            assert await badge.inner_text() == str(open_count)
            assert (await badge.get_attribute("class") or "").split() == ["badge", "error"]  # the worst of the two
            await page.wait_for_function(
                "(badge) => badge.title === 'error: retained_command\\nwarning: retained_telemetry'",
                arg=await badge.element_handle(),
                timeout=SEEN_MS,
            )
            assert await page.locator(f'article[data-device="{healthy.key}"] .badge').is_hidden()

            # The device page's Diagnosis section, reached from the badge.
            await badge.click()
            await page.locator(f'#diagnosis .finding[data-code="{FINDING}"]').wait_for(timeout=SEEN_MS)

            # The board is fixed (here: stopped): the open dashboard's badge goes, my board folds the finding away.
            await page.goto(f"{base}/dashboard?cohort={cohort}")
            await badge.wait_for(timeout=SEEN_MS)
            tasks[1].cancel()
            await badge.wait_for(state="hidden", timeout=SEEN_MS)
            await page.goto(f"{base}/board")
            box = page.locator(f'section[data-device="{faulty.key}"]')
            await box.locator(f'details.resolved-list .finding.resolved[data-code="{FINDING}"]').wait_for(
                state="attached", timeout=SEEN_MS
            )
            assert "No open findings" in await box.locator(".diagnosis > h3").all_inner_texts()
            await browser.close()
        assert not [url for url in sent if learner in url], "the token left the browser in a URL"
        assert any(url.endswith(f"/api/devices/{faulty.key}/diagnosis") for url in sent)
        assert (tmp_path / "board.png").stat().st_size > 10_000
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
