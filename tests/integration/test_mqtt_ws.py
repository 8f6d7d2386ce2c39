"""MQTT over WebSockets (/mqtt) against a real closed broker (the session's): the broker, not the hub, decides who may do what.

paho over WebSockets gets exactly what the same client gets over TCP (its reading stored, a foreign topic refused,
a wrong password refused); the per-address cap answers 429 before the upgrade; either side's close closes the
other; a refused login through the bridge is put on no device by the lab doctor; MQTT.js in headless Chromium
receives a learner's telemetry through /mqtt.
"""

from __future__ import annotations

import asyncio
import json
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from playwright.async_api import async_playwright

from devices import diagnoses as dx
from devices.topics import DeviceRef
from hub.ops.services import free_port
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import ClosedLab, HubFactory, Services
from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS
from tests.support import MqttV5, api_token, count_when_stable, wait_until

MQTTJS = Path(__file__).resolve().parents[1] / "vendor" / "mqttjs" / "mqtt.min.js"


@pytest.fixture
async def hub(closed: ClosedLab, services: Services, start_hub: HubFactory) -> AsyncIterator[Hub]:
    yield await start_hub(config=closed.config(services, mqtt_ws_per_address=3))


def session(port: int, user: str, password: str, websockets: bool, own: DeviceRef, other: DeviceRef) -> list[int]:
    """What the broker answers one device's session: connect, its own reading, another's topics."""
    client = MqttV5(port, user, password, websockets=websockets)
    try:
        answers = [client.wait_connack()]
        answers.append(client.publish(own.topic("telemetry"), b'{"pm2_5": 12}'))
        answers.append(client.publish(other.topic("telemetry"), b'{"pm2_5": 666}'))
        answers.append(client.subscribe(other.topic("telemetry")))
        return answers
    finally:
        client.close()


def refused_login(port: int, user: str, websockets: bool) -> int:
    client = MqttV5(port, user, "not-the-password", websockets=websockets)
    try:
        return client.wait_connack()
    finally:
        client.close()


async def test_a_device_over_mqtt_ws_gets_exactly_what_it_gets_over_tcp(
    closed: ClosedLab, services: Services, hub: Hub
) -> None:
    cohort = unique("w")
    a, b = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    pw_a = (await hub.accounts.add_device(a.key, "air_quality")).password
    await hub.accounts.add_device(b.key, "air_quality")
    hub.apply_registry()
    # Over TCP first: the doctor learns that ana's device logs in from 127.0.0.1 (the bridge's address too).
    tcp = await asyncio.to_thread(session, closed.port, a.key, pw_a, False, a, b)
    assert tcp[:2] == [0, 0] and tcp[2] >= 0x80 and tcp[3] >= 0x80, tcp  # accepted, stored; foreign refused
    await wait_until(lambda: hub.doctor.engine.addresses.get("127.0.0.1") == a, what="the doctor to place ana")
    ws = await asyncio.to_thread(session, hub.http_port, a.key, pw_a, True, a, b)
    assert ws == tcp
    # Both own readings are stored, nothing of ben's.
    db = hub.cfg.influx.database
    assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"learner = '{a.learner}'", 2) == 2
    assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", "", 2) == 2
    # A wrong password: the same refusal, and the doctor puts the bridged one on no device.
    refused_ws = await asyncio.to_thread(refused_login, hub.http_port, a.key, True)
    assert refused_ws == await asyncio.to_thread(refused_login, closed.port, a.key, False)
    assert refused_ws in (0x86, 0x87), refused_ws  # bad user name or password / not authorized
    await wait_until(lambda: len(hub.doctor.engine.refused_addresses) >= 2, what="the doctor to see both refusals")
    doc = hub.doctor.engine.devices.get(a)
    assert doc is None or dx.WRONG_PASSWORD not in doc.findings
    metrics = await bridge_metrics(hub)
    await wait_until(lambda: metrics_now(hub, metrics), what="every bridge closed")
    assert metrics["opened"] == 2 and metrics["to_broker"] > 0 and metrics["to_clients"] > 0, metrics


async def bridge_metrics(hub: Hub) -> dict[str, float]:
    """The bridges' figures as /metrics shows them to a lab-wide trainer."""
    token = api_token(hub, "trainer", "*")
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{hub.http_port}/metrics", headers=headers) as r,
    ):
        assert r.status == 200
        text = await r.text()
    names = {
        "labhub_mqtt_ws_open": "open",
        "labhub_mqtt_ws_opened_total": "opened",
        'labhub_mqtt_ws_bytes_total{direction="to_broker"}': "to_broker",
        'labhub_mqtt_ws_bytes_total{direction="to_clients"}': "to_clients",
        'labhub_mqtt_ws_refused_total{reason="per_address"}': "per_address",
    }
    found = {}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name in names:
            found[names[name]] = float(value)
    assert set(found) == set(names.values()), text
    return found


async def metrics_now(hub: Hub, into: dict[str, float]) -> bool:
    """Refresh `into`; True once no bridge is open."""
    into.update(await bridge_metrics(hub))
    return into["open"] == 0


PAGE = """<!doctype html><meta charset="utf-8"><script src="mqtt.min.js"></script><pre id="got"></pre>
<script>
const [port, user, password, topic] = JSON.parse(decodeURIComponent(location.hash.slice(1)));
const options = {username: user, password, clientId: user, reconnectPeriod: 0};
const client = mqtt.connect(`ws://127.0.0.1:${port}/mqtt`, options);
window.events = [];
client.on("connect", () => client.subscribe(topic, {qos: 1}, (err, granted) => {
  window.events.push(err ? "suback-error" : "subscribed:" + granted[0].qos);
}));
client.on("message", (t, payload) => { window.events.push("message:" + t + ":" + payload.toString()); });
client.on("error", (err) => window.events.push("error:" + err.message));
</script>"""


async def test_mqttjs_in_chromium_receives_a_learners_telemetry_through_mqtt_ws(
    closed: ClosedLab, services: Services, start_hub: HubFactory
) -> None:
    """A learner's web app on its own origin (a local server here), allowed by hub.allowed_origins as any page
    calling the hub from elsewhere must be, subscribes through /mqtt with the learner's MQTT account."""
    assert Path(CHROMIUM).exists(), "Debian's chromium is needed (./lab installs it)"

    async def index(request: web.Request) -> web.Response:
        return web.Response(text=PAGE, content_type="text/html")

    async def script(request: web.Request) -> web.FileResponse:
        return web.FileResponse(MQTTJS)

    app = web.Application()
    app.router.add_get("/index.html", index)
    app.router.add_get("/mqtt.min.js", script)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", site_port).start()
        origin = f"http://127.0.0.1:{site_port}"
        hub = await start_hub(config=closed.config(services, allowed_origins=(origin,)))
        ref = DeviceRef(unique("w"), "ana", "aq1")
        device_pw = (await hub.accounts.add_device(ref.key, "air_quality")).password
        learner = await hub.accounts.add_learner(f"{ref.cohort}/{ref.learner}")
        hub.apply_registry()
        secret = json.dumps([hub.http_port, learner.username, learner.password, ref.topic("telemetry")])
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = await browser.new_page()
                await page.goto(f"{origin}/index.html#{urllib.parse.quote(secret)}")
                await page.wait_for_function("window.events.some(e => e.startsWith('subscribed:'))", timeout=10_000)
                assert "subscribed:1" in await page.evaluate("window.events")
                device = MqttV5(closed.port, ref.key, device_pw)
                try:
                    assert await asyncio.to_thread(device.wait_connack) == 0
                    assert await asyncio.to_thread(device.publish, ref.topic("telemetry"), b'{"pm2_5": 7.5}') == 0
                finally:
                    device.close()
                await page.wait_for_function("window.events.some(e => e.startsWith('message:'))", timeout=10_000)
                events = await page.evaluate("window.events")
            finally:
                await browser.close()
    finally:
        await runner.cleanup()
    assert f'message:{ref.topic("telemetry")}:{{"pm2_5": 7.5}}' in events, events
