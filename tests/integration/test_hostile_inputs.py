"""Regression tests for what one device or one learner sent that once broke the whole lab (issue 11).

Each test drives the real lab (mosquitto, influxd, a hub) the way a broken firmware or a curious learner
would, then checks the lab still works for everyone else: the canary's reading is stored, the answer is
on the topic, InfluxDB holds no point outside the sender's own series.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import pytest

from devices.kinds import MAX_DISTINCT_FIELDS
from devices.topics import DeviceRef
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import (
    MqttListener,
    MqttPublisher,
    api_token,
    count_when_stable,
    influx_query,
    wait_until,
)

SURROGATE_JSON = b'{"x": "\\udc80"}'  # a JSON escape for a lone surrogate: valid JSON, not valid Unicode


async def canary_stored(services: Services, hub: Hub, pub: MqttPublisher, n: int = 1) -> None:
    """A bystander's reading is stored within 5 s: the lab still works for everyone else."""
    canary = DeviceRef(hub.cfg.mqtt.client_id[-10:], "canary", "aq1")
    await pub.publish(canary.topic("telemetry"), json.dumps({"n": n}))
    await count_when_stable(
        services.influx_port, hub.cfg.influx.database, f"generic.{canary.cohort}.canary", "n", "", n
    )


async def arm_lab(start_hub: HubFactory) -> tuple[Hub, DeviceRef]:
    ref = DeviceRef(unique("c"), "ana", "arm1")
    return await start_hub(devices=((ref.key, "arm"),)), ref


def measurements(services: Services, hub: Hub) -> set[str]:
    series = influx_query(services.influx_port, hub.cfg.influx.database, "SHOW MEASUREMENTS")
    return {row[0] for s in series for row in s.get("values", [])}


async def post_command(hub: Hub, ref: DeviceRef, token: str, body: bytes) -> tuple[int, Any]:
    url = f"http://127.0.0.1:{hub.http_port}/api/devices/{ref.key}/commands"
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)


# 1. One message stopped the whole lab ------------------------------------------------------------------


async def test_a_lone_surrogate_is_refused_with_a_clear_error_and_the_lab_goes_on(
    services: Services, start_hub: HubFactory
) -> None:
    hub, arm = await arm_lab(start_hub)
    errors = await MqttListener(services.mqtt_port, arm.topic("errors")).ready()
    results = await MqttListener(services.mqtt_port, arm.topic("commands/result")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(arm.topic("telemetry"), SURROGATE_JSON)
        error = await errors.next_json(timeout=5)
        await pub.publish(arm.topic("commands/request"), b'{"type": "\\ud800"}')
        _, refused = await results.next(timeout=5)
        status, body = await post_command(
            hub, arm, api_token(hub, "learner", arm.cohort + "/ana"), b'{"type": "\\ud800"}'
        )
        await canary_stored(services, hub, pub)
    finally:
        errors.close()
        results.close()
        pub.close()
    assert (error["code"], error["field"]) == ("invalid_unicode", "x")
    assert json.loads(refused)["state"] == "refused"
    assert 400 <= status < 500, body
    assert not hub.stopped.is_set()


async def test_an_ack_whose_reason_is_not_unicode_still_finishes_its_command(
    services: Services, start_hub: HubFactory
) -> None:
    hub, arm = await arm_lab(start_hub)
    commands = await MqttListener(services.mqtt_port, arm.topic("commands")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        record = hub.relay.submit(arm, {"type": "move", "targets": {"base": 30}}, "test")
        _, sent = await commands.next(timeout=5)
        ack = b'{"id": "%s", "status": "rejected", "reason": "jammed \\udc80"}' % json.loads(sent)["id"].encode()
        await pub.publish(arm.topic("ack"), ack)
        await wait_until(lambda: record.state.value == "rejected", what="the command to finish")
        db = hub.cfg.influx.database
        await count_when_stable(services.influx_port, db, "commands", "id", "state = 'rejected'", 1)
        await canary_stored(services, hub, pub)
    finally:
        commands.close()
        pub.close()
    assert record.reason == "jammed \ufffd"


# 2. One message froze intake for every device ------------------------------------------------------------


async def test_huge_integers_in_an_ack_or_a_target_do_not_freeze_intake(
    services: Services, start_hub: HubFactory
) -> None:
    hub, arm = await arm_lab(start_hub)
    commands = await MqttListener(services.mqtt_port, arm.topic("commands")).ready()
    results = await MqttListener(services.mqtt_port, arm.topic("commands/result")).ready()
    pub = MqttPublisher(services.mqtt_port)
    huge = "9" * 400
    try:
        record = hub.relay.submit(arm, {"type": "move", "targets": {"base": 40}}, "test")
        _, sent = await commands.next(timeout=5)
        command_id = json.loads(sent)["id"]
        ack = f'{{"id": "{command_id}", "status": "done", "pose": {{"base": {huge}, "bogus": 5, "shoulder": 91}}}}'
        await pub.publish(arm.topic("ack"), ack)
        await pub.publish(arm.topic("commands/request"), f'{{"type": "move", "targets": {{"base": {huge}}}}}')
        refused = await results.next_json(timeout=5)
        while refused["state"] != "refused":  # the move's own transitions come on this topic too
            refused = await results.next_json(timeout=5)
        await canary_stored(services, hub, pub)
        await canary_stored(services, hub, pub, 2)  # intake keeps moving, not just one message
    finally:
        commands.close()
        results.close()
        pub.close()
    assert refused["error"]["code"] == "not_a_number"
    assert record.state.value == "done"
    pose = hub.relay.arms[arm].pose
    assert "bogus" not in pose and pose["shoulder"] == 91  # only the arm's own joints, only numbers a float holds
    assert hub.boundaries.total == 0  # handled as bad input, not as a failure inside the hub


async def test_escaped_quotes_do_not_make_the_loop_lag(services: Services, start_hub: HubFactory) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await wait_until(lambda: hub.watchdog.lag_s < 0.1, what="a calm loop to start from")
        for _ in range(5):
            await pub.publish(ref.topic("telemetry"), '"' + '\\"' * 8000)
        for _ in range(5):
            assert (await errors.next_json(timeout=5))["code"] == "invalid_json"
    finally:
        errors.close()
        pub.close()
    assert hub.watchdog.lag_s < 0.25  # five payloads cost ~2.5 s of loop time before the fix


# 4. A learner token wrote into measurements it named ------------------------------------------------------


async def test_command_types_never_become_series_or_measurements(services: Services, start_hub: HubFactory) -> None:
    hub, arm = await arm_lab(start_hub)
    token = api_token(hub, "learner", arm.cohort + "/ana")
    forged = "x\nforged,cohort=victim value=1"
    pub = MqttPublisher(services.mqtt_port)
    try:
        for i in range(20):
            status, _ = await post_command(hub, arm, token, json.dumps({"type": f"t{i} {forged}"}).encode())
            assert status == 422
        await pub.publish(arm.topic("commands/request"), json.dumps({"type": forged}))
        db = hub.cfg.influx.database
        await count_when_stable(services.influx_port, db, "commands", "request", "state = 'refused'", 21)
    finally:
        pub.close()
    assert measurements(services, hub) <= {"commands", "rejections", "presence", f"arm.{arm.cohort}.ana"}
    types = influx_query(services.influx_port, db, 'SHOW TAG VALUES FROM "commands" WITH KEY = "type"')
    assert [row[1] for row in types[0]["values"]] == ["other"]
    sent = influx_query(services.influx_port, db, 'SELECT type_sent FROM "commands" WHERE time > 0')[0]["values"]
    visible = forged.replace("\n", "\\n")  # kept as text, the line break written visibly
    assert {row[1] for row in sent} >= {visible, f"t0 {visible}"}  # the raw text is kept, as a field


# 5. One learner shaped another's data and grade (types: see test_ingest_e2e) --------------------------------


async def test_a_device_has_at_most_its_cap_of_distinct_field_names(services: Services, start_hub: HubFactory) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        for start in range(0, MAX_DISTINCT_FIELDS, 16):
            await pub.publish(ref.topic("telemetry"), json.dumps({f"f{i}": i for i in range(start, start + 16)}))
        await pub.publish(ref.topic("telemetry"), json.dumps({"f0": 1, f"f{MAX_DISTINCT_FIELDS}": 1}))
        error = await errors.next_json(timeout=5)
        await pub.publish(ref.topic("telemetry"), json.dumps({"f0": 2, "f1": 2}))  # known names still work
        db = hub.cfg.influx.database
        await count_when_stable(services.influx_port, db, f"generic.{ref.cohort}.ana", "f0", "", 2)
    finally:
        errors.close()
        pub.close()
    assert (error["code"], error["field"]) == ("too_many_distinct_fields", f"f{MAX_DISTINCT_FIELDS}")
    assert str(MAX_DISTINCT_FIELDS) in str(error["message"])


# 6. Retained telemetry was re-ingested at every hub reconnect ----------------------------------------------


async def test_retained_telemetry_is_stored_once_and_not_kept(services: Services, start_hub: HubFactory) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    db = hub.cfg.influx.database
    measurement = f"generic.{ref.cohort}.ana"
    pub = MqttPublisher(services.mqtt_port)
    try:
        info = pub.client.publish(ref.topic("telemetry"), json.dumps({"n": 1}), qos=1, retain=True)
        await asyncio.to_thread(info.wait_for_publish, 5)
        await count_when_stable(services.influx_port, db, measurement, "n", "", 1)
        hub.mqtt.drop()  # the hub reconnects: the broker sends its retained copies again
        await wait_until(lambda: hub.ingest.totals.retained_ignored >= 1, what="the retained copy to come back")
        await canary_stored(services, hub, pub)
        late = await MqttListener(services.mqtt_port, ref.topic("telemetry")).ready()
        try:  # a marker published after the subscription: anything retained would have come before it
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": 2}))
            _, first = await late.next(timeout=5)
        finally:
            late.close()
        await count_when_stable(services.influx_port, db, measurement, "n", "", 2)
    finally:
        pub.close()
    assert json.loads(first) == {"n": 2}  # the broker no longer keeps the retained reading
    rows = influx_query(services.influx_port, db, f'SELECT n FROM "{measurement}"')[0]["values"]
    assert [row[1] for row in rows] == [1.0, 2.0]  # stored once, not again at the reconnect


# 7. The hub's client id (its only protection from takeover) was printed in its log -------------------------


async def test_the_hubs_client_id_is_never_logged(
    services: Services, start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = await start_hub()
    hub.mqtt.drop()
    await wait_until(lambda: hub.mqtt.connects >= 2 and hub.mqtt.subscribed.is_set(), what="a reconnect")
    assert hub.mqtt.client_id not in caplog.text


# 10. Device-controlled memory ---------------------------------------------------------------------------


async def test_the_inspector_keeps_two_kib_of_each_payload(services: Services, start_hub: HubFactory) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), b"{" + b" " * 200_000 + b"}")
        assert (await errors.next_json(timeout=5))["code"] == "payload_too_large"
    finally:
        errors.close()
        pub.close()
    entry = hub.ingest.devices[ref].inspector[-1]
    assert len(entry.payload) <= 2048 and entry.as_json()["payload_bytes"] == 200_002


# 12. Smaller ones -----------------------------------------------------------------------------------------


async def test_field_names_cannot_forge_log_lines(
    services: Services, start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), json.dumps({"t\nERROR hub.runtime: forged": 1, "u\r": 2}))
        assert (await errors.next_json(timeout=5))["code"] == "bad_field_name"
        await pub.publish(ref.topic("ack"), '{"id": "a\\nERROR forged", "status": "done"}')
        for _ in range(3):  # unreadable acks: each counted, one (escaped) log line
            await pub.publish(ref.topic("ack"), b"not json\nERROR forged")
        await wait_until(lambda: hub.commands.unreadable_acks == 3, what="three unreadable acks counted")
        await canary_stored(services, hub, pub)
    finally:
        errors.close()
        pub.close()
    for record in caplog.records:
        message = record.getMessage()
        assert "\n" not in message and "\r" not in message, message


# A watchdog that tells the truth ----------------------------------------------------------------------------


async def test_the_watchdog_reports_a_stalled_intake_and_a_lagging_loop(
    services: Services, start_hub: HubFactory
) -> None:
    hub = await start_hub()
    ref = DeviceRef(unique("c"), "ana", "dev")
    pub = MqttPublisher(services.mqtt_port)
    try:
        assert hub.health()["status"] == "ok"
        loop, sock = asyncio.get_running_loop(), hub.mqtt.reads.sock
        loop.remove_reader(sock)  # a stuck reader: bytes wait, none is handled
        hub.mqtt.reads._end_linger()  # (nor read at the end of a linger)
        for i in range(5):
            await pub.publish(ref.topic("telemetry"), json.dumps({"n": i}), qos=0)
        await wait_until(lambda: hub.watchdog.stalled_s >= 2, timeout=10, what="the stall to be seen")
        reasons = hub.health()["reasons"]
        assert hub.health()["status"] == "degraded" and any("intake stalled" in str(r) for r in reasons), reasons
        assert "DEGRADED: intake stalled" in hub.status.progress_line()
        loop.add_reader(sock, hub.mqtt.reads.on_readable)  # the reader again
        await wait_until(lambda: hub.watchdog.stalled_s == 0, what="intake to move again")
        await wait_until(lambda: hub.watchdog.lag_s < 0.1, what="a calm loop")
        time.sleep(0.7)  # noqa: ASYNC251 (the point: the event loop is blocked)
        await wait_until(lambda: hub.watchdog.lag_s > 0.5, what="the lag to be seen")
        assert any("event loop lagging" in str(r) for r in hub.health()["reasons"])
    finally:
        pub.close()


async def test_a_request_aiohttp_cannot_parse_is_counted_not_logged_with_a_traceback(
    start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    hub = await start_hub()
    caplog.set_level(logging.INFO)
    url = f"http://127.0.0.1:{hub.http_port}/api/devices/{'a' * 9000}/l/d/commands"
    async with aiohttp.ClientSession() as session:
        for _ in range(20):
            async with session.get(url) as resp:
                assert resp.status == 400
    assert sum(n for (surface, _), n in hub.boundaries.failures.items() if surface == "http") == 20
    assert not [r for r in caplog.records if r.name == "aiohttp.server"]  # nothing from aiohttp itself
    assert len([r for r in caplog.records if r.name == "hub.boundary"]) == 1  # one line a minute
