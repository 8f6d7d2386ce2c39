"""The phone control page in a real headless Chromium (Debian's)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

from playwright.async_api import async_playwright

from devices.arm import load_profiles
from devices.topics import DeviceRef
from firmware_sim.arm import ArmFirmware
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import api_token, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


async def test_a_slider_on_the_phone_page_moves_the_simulated_arm(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"
    ref = DeviceRef(unique("c"), "ana", "arm1")
    hub = await start_hub(devices=((ref.key, "arm"),))
    arm = ArmFirmware(ref, load_profiles()["mearm"], "127.0.0.1", services.mqtt_port)
    task = asyncio.create_task(arm.run())
    try:
        await arm.client.wait_connected(10)
        await wait_until(lambda: hub.ingest.devices[ref].online, what="the arm online")
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 390, "height": 844})  # a phone
            token = api_token(hub, "learner", f"{ref.cohort}/{ref.learner}")
            await page.goto(f"http://127.0.0.1:{hub.http_port}/phone?device={ref.key}#token={token}")
            slider = page.locator('input[data-joint="base"]')
            await slider.wait_for(timeout=20_000)
            assert await slider.get_attribute("min") == "0" and await slider.get_attribute("max") == "180"
            await slider.fill("40")
            await page.locator("#log td.done").first.wait_for(timeout=20_000)
            await page.wait_for_function(
                "document.querySelector('[data-pose=\"base\"]').textContent === '40°'", timeout=20_000
            )
            await page.screenshot(path=str(tmp_path / "phone.png"), full_page=True)
            moves = await page.locator("#log tr").count()
            await page.click("#stop")
            # The STOP's own row (a new row on top, named "stop"), done: not the earlier move's row.
            await page.wait_for_function(
                """(moves) => {
                    const rows = document.querySelectorAll('#log tr');
                    const top = rows[0];
                    return rows.length === moves + 1 && top.children[0].textContent === 'stop'
                        && top.children[1].className === 'done';
                }""",
                arg=moves,
                timeout=20_000,
            )
            await browser.close()
        assert [c["type"] for c in arm.received][-1] == "stop"
        assert arm.pose["base"] == 40
        assert (tmp_path / "phone.png").stat().st_size > 10_000
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
