"""Home Assistant discovery and the read-only cohort account, against a real mosquitto with its security plugin
(the session's closed broker).

A cohort with `home_assistant = true` gets retained sensor configs whose state topic carries the device's readings
and whose availability follows its status; another cohort gets none, and turning discovery off clears them. A
reader account receives its cohort's telemetry, status and configs, and the broker refuses everything else.
"""

from __future__ import annotations

import dataclasses
import json
import time

from tests.conftest import unique
from tests.integration.conftest import ClosedLab, HubFactory, Services
from tests.integration.test_security import NOT_AUTHORIZED, password_of
from tests.support import MqttV5, wait_until


def configs_of(client: MqttV5, node: str) -> dict[str, bytes]:
    """The retained discovery configs of one node a subscriber holds now (an empty payload clears one)."""
    held: dict[str, bytes] = {}
    for topic, payload in list(client.got):
        if topic.startswith(f"homeassistant/sensor/{node}/"):
            held[topic] = payload
    return {t: p for t, p in held.items() if p}


def retained_now(closed: ClosedLab, node: str) -> dict[str, bytes]:
    """What the broker retains under a node, read by a fresh subscriber (the hub's account) with a sync marker:
    mosquitto sends a subscription's retained messages before anything published after its SUBACK."""
    hub = MqttV5(closed.port, *closed.hub_auth)
    try:
        assert hub.wait_connect()
        assert hub.subscribe("homeassistant/#") == 1
        marker = f"homeassistant/test/{unique()}"
        assert hub.publish(marker, b"x") == 0
        deadline = time.monotonic() + 5
        while not any(t == marker for t, _ in list(hub.got)):
            assert time.monotonic() < deadline, "the sync marker never came back"
            time.sleep(0.01)
        return configs_of(hub, node)
    finally:
        hub.close()


async def test_discovery_configs_readings_availability_and_a_read_only_account(
    closed: ClosedLab, services: Services, start_hub: HubFactory
) -> None:
    on, off = unique("ha"), unique("no")
    ana = f"{on}/ana/aq1"
    ana_password = password_of(closed.cli("device", "add", ana, "--kind", "air_quality").stdout)
    password_of(closed.cli("device", "add", f"{off}/bo/aq1", "--kind", "air_quality").stdout)
    reader_password = password_of(closed.cli("cohort", "reader", "add", on, "home-assistant").stdout)
    assert f"reader.{on}.home-assistant" in closed.cli("cohort", "reader", "list", on).stdout

    cfg = dataclasses.replace(closed.config(services), home_assistant=frozenset({on}))
    hub = await start_hub(config=cfg)

    reader = MqttV5(closed.port, f"reader.{on}.home-assistant", reader_password)
    device = MqttV5(closed.port, ana, ana_password)
    try:
        assert reader.wait_connect() and device.wait_connect()
        assert reader.subscribe("homeassistant/#") == 1  # as Home Assistant does: accepted, filtered on delivery
        node = f"labhub_{on}"
        configs = await wait_until(
            lambda: len(configs_of(reader, node)) == 9 and configs_of(reader, node), 10, "configs"
        )
        assert not configs_of(reader, f"labhub_{off}")
        assert not retained_now(closed, f"labhub_{off}")  # the cohort without discovery: nothing at all
        pm = json.loads(configs[f"homeassistant/sensor/{node}/ana-aq1-pm2_5/config"])
        assert (pm["device_class"], pm["unit_of_measurement"]) == ("pm25", "µg/m³")

        # The state topic carries the device's readings; availability follows its status.
        assert reader.subscribe(f"lab/{on}/+/+/telemetry") == 1 and reader.subscribe(f"lab/{on}/+/+/status") == 1
        assert device.publish(pm["state_topic"], b'{"pm2_5": 12.5, "co2": 600}') == 0
        reading = await wait_until(lambda: [p for t, p in reader.got if t == pm["state_topic"]], 5, "reading")
        assert json.loads(reading[0])["pm2_5"] == 12.5  # what `{{ value_json.pm2_5 }}` renders
        availability = pm["availability"][0]
        for state in (b"online", b"offline"):
            device.client.publish(availability["topic"], state, qos=1, retain=True)
            await wait_until(lambda s=state: (availability["topic"], s) in reader.got, 5, f"status {state!r}")
        assert {availability["payload_available"], availability["payload_not_available"]} == {"online", "offline"}

        # Read-only: every publish refused; another cohort and the hub's commands unreadable.
        for topic in (pm["state_topic"], availability["topic"], f"homeassistant/sensor/{node}/x/config", "x"):
            assert reader.publish(topic, b"{}") == NOT_AUTHORIZED, topic
        assert reader.subscribe(f"lab/{off}/+/+/telemetry") == NOT_AUTHORIZED
        assert reader.subscribe(f"lab/{on}/ana/aq1/commands") == 1  # inside its cohort: accepted, never delivered
        as_hub = MqttV5(closed.port, *closed.hub_auth)
        try:
            assert as_hub.wait_connect()
            assert as_hub.publish(f"lab/{on}/ana/aq1/commands", b'{"id": "c1"}') == 0
            assert as_hub.publish(f"lab/{off}/bo/aq1/telemetry", b'{"pm1": 1}') == 0
        finally:
            as_hub.close()
        assert device.publish(pm["state_topic"], b'{"pm1": 3}') == 0  # after them: once it arrives, they would have
        await wait_until(lambda: (pm["state_topic"], b'{"pm1": 3}') in reader.got, 5, "the later reading")
        assert not [t for t, _ in reader.got if t.endswith("/commands") or t.startswith(f"lab/{off}/")]

        # A field sent alone on telemetry/<field>: its sensor's state topic moves there.
        co2 = f"homeassistant/sensor/{node}/ana-aq1-co2/config"
        assert device.publish(f"lab/{on}/ana/aq1/telemetry/co2", b"612") == 0
        moved = await wait_until(
            lambda: json.loads(configs_of(reader, node)[co2])["state_topic"].endswith("/telemetry/co2"), 5, "moved"
        )
        assert moved and "value_template" not in json.loads(configs_of(reader, node)[co2])

        # A removed device's configs are cleared; a removed reader is cut off at once.
        closed.cli("device", "remove", ana)
        await wait_until(lambda: not configs_of(reader, node), 5, "configs cleared")
        closed.cli("cohort", "reader", "remove", on, "home-assistant")
        await wait_until(reader.lost.is_set, 5, "the reader disconnected")
    finally:
        reader.close()
        device.close()
    assert hub.mqtt.connected.is_set()


async def test_turning_discovery_off_clears_the_cohorts_configs_at_the_next_start(
    closed: ClosedLab, services: Services, start_hub: HubFactory
) -> None:
    cohort = unique("ha")
    password_of(closed.cli("device", "add", f"{cohort}/ana/arm1", "--kind", "arm").stdout)
    cfg = dataclasses.replace(closed.config(services), home_assistant=frozenset({cohort}))
    first = await start_hub(config=cfg)
    node = f"labhub_{cohort}"
    joints = await wait_until(lambda: retained_now(closed, node), 10, "the arm's joint sensors")
    assert all(json.loads(p)["unit_of_measurement"] == "°" for p in joints.values())
    first.stop()
    await wait_until(first.stopped.is_set, 30, "the first hub stopped")
    await start_hub(config=dataclasses.replace(cfg, home_assistant=frozenset()))
    await wait_until(lambda: not retained_now(closed, node), 10, "stale configs cleared")
