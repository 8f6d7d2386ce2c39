"""The trainer's dashboard in a real headless Chromium: a card appears for a new device and its values update
live; a device page draws its history from InfluxDB (the screenshot is checked for the drawn series)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from PIL import Image
from playwright.async_api import async_playwright

from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS
from tests.support import api_token, influx_query, wait_until

SERIES_RGB = (21, 101, 192)  # the mean line's colour (#1565c0) on the device page


def series_pixels(path: Path) -> int:
    """How many pixels of the screenshot have the series' colour: a drawn line has hundreds."""
    image = Image.open(path).convert("RGB")
    width, height = image.size
    pixels = image.load()
    assert pixels is not None
    return sum(
        1
        for x in range(width)
        for y in range(height)
        if sum(abs(a - b) for a, b in zip(pixels[x, y], SERIES_RGB, strict=True)) < 60  # type: ignore[arg-type]
    )


async def test_the_dashboard_shows_new_devices_live_and_plots_history(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"
    hub = await start_hub()
    cohort = unique("d")
    ana, bob = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "bob", "aq1")
    hub.registry.add_device(ana, "air_quality", None)
    hub.apply_registry()
    token = api_token(hub, "viewer", cohort)  # a classroom screen
    base = f"http://127.0.0.1:{hub.http_port}"
    sensors: list[asyncio.Task[Any]] = []
    started = time.monotonic()
    sensors.append(asyncio.create_task(AirSensor(ana, "127.0.0.1", services.mqtt_port, 0.2, seed=1).run()))
    await wait_until(lambda: hub.ingest.devices[ana].stored > 0, what="ana's first reading stored")
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            await page.goto(f"{base}/dashboard?cohort={cohort}#token={token}")
            ana_card = page.locator(f'article[data-device="{ana.key}"]')
            await ana_card.locator('[data-field="pm2_5"] b').wait_for(timeout=20_000)
            assert "µg/m³" in await ana_card.locator('[data-field="pm2_5"] .u').inner_text()
            # A trainer registers a new device and it starts sending: its card appears, its value follows.
            bob_card = page.locator(f'article[data-device="{bob.key}"]')
            assert await bob_card.count() == 0
            hub.registry.add_device(bob, "air_quality", None)
            sensors.append(asyncio.create_task(AirSensor(bob, "127.0.0.1", services.mqtt_port, 0.2, seed=2).run()))
            await bob_card.locator('[data-field="pm2_5"] b').wait_for(timeout=20_000)
            first = await bob_card.locator('[data-field="co2"] b').inner_text()
            await page.wait_for_function(
                """([key, first]) => {
                    const cell = document.querySelector(`article[data-device="${key}"] [data-field="co2"] b`);
                    return cell && cell.textContent !== first;
                }""",
                arg=[bob.key, first],
                timeout=20_000,
            )
            await bob_card.locator(".dot.on").wait_for(timeout=20_000)
            assert await ana_card.locator(".spark canvas").count() >= 1
            await page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

            # The device page: history from InfluxDB, downsampled (3 s buckets over 15 min), with data in them.
            def buckets() -> bool:
                q = (
                    f"SELECT mean(pm2_5) FROM air_quality WHERE device = 'aq1' AND learner = 'ana' AND cohort = "
                    f"'{cohort}' AND time > now() - 15m GROUP BY time(3s) fill(none)"
                )
                rows = influx_query(services.influx_port, hub.cfg.influx.database, q)
                return bool(rows) and len(rows[0]["values"]) >= 4

            await wait_until(buckets, timeout=20, what="4 history buckets of 3 s")
            await page.goto(f"{base}/dashboard/device?device={ana.key}")
            chart = page.locator('.chart[data-field="pm2_5"]')
            await chart.locator("canvas").wait_for(timeout=20_000)
            assert "µg/m³" in await chart.locator("h3").inner_text()
            drawn = 0
            deadline = time.monotonic() + 20
            while drawn <= 100 and time.monotonic() < deadline:  # uPlot paints on the next animation frame
                await chart.screenshot(path=str(tmp_path / "chart.png"))
                drawn = series_pixels(tmp_path / "chart.png")
            print(f"device page: {drawn} pixels of the pm2_5 series drawn, {time.monotonic() - started:.1f} s in")
            assert drawn > 100, "the chart has no series drawn"
            await browser.close()
    finally:
        for task in sensors:
            task.cancel()
        await asyncio.gather(*sensors, return_exceptions=True)
