"""End to end through the real mosquitto and influxd: devices → broker → hub → InfluxDB, and answers on `errors`."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import random
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.topics import DeviceRef
from firmware_sim.air import AirSensor
from hub.ops.services import free_port
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services, lab_config
from tests.support import (
    MqttListener,
    MqttPublisher,
    api_token,
    count_when_stable,
    http_json,
    influx_count,
    influx_query,
    wait_until,
)


async def run_sensor(services: Services, ref: DeviceRef, readings: int, fault: str | None = None) -> AirSensor:
    sensor = AirSensor(ref, "127.0.0.1", services.mqtt_port, period_s=0.02, fault=fault, seed=1, readings=readings)
    task = asyncio.create_task(sensor.run())
    try:
        await asyncio.wait_for(sensor.done.wait(), 30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return sensor


async def test_simulated_sensors_are_stored_with_tags_fields_and_types(
    services: Services, start_hub: HubFactory
) -> None:
    cohort = unique("c")
    refs = [DeviceRef(cohort, f"learner{i}", "aq1") for i in range(3)]
    hub = await start_hub(devices=tuple((r.key, "air_quality") for r in refs))
    db = hub.cfg.influx.database
    await asyncio.gather(*(run_sensor(services, ref, 20) for ref in refs))
    assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{cohort}'", 60) == 60
    for ref in refs:
        assert influx_count(services.influx_port, db, "air_quality", "pm2_5", f"learner = '{ref.learner}'") == 20
    types = {
        row[0]: row[1]
        for row in influx_query(services.influx_port, db, "SHOW FIELD KEYS FROM air_quality")[0]["values"]
    }
    assert types == {
        f: "float" for f in ("co2", "eco2", "humidity", "pm1", "pm10", "pm2_5", "pressure", "temperature", "tvoc")
    }
    tags = influx_query(services.influx_port, db, 'SHOW TAG VALUES FROM air_quality WITH KEY = "device"')[0]["values"]
    assert [row[1] for row in tags] == ["aq1"]
    rows = influx_query(services.influx_port, db, "SELECT * FROM air_quality WHERE learner = 'learner0' LIMIT 1")
    point = dict(zip(rows[0]["columns"], rows[0]["values"][0], strict=True))
    assert point["cohort"] == cohort and point["device"] == "aq1"
    assert 0 <= point["pm2_5"] <= 1000 and 300 <= point["pressure"] <= 1100
    await wait_until(lambda: hub.stats()["stored"] == 60, what="the hub to count what it stored")
    assert hub.stats()["rejected"] == {}


FAULT_CODES = {
    "invalid_json": "invalid_json",
    "unquoted_keys": "json_unquoted_key",
    "wrong_names": "unknown_field_suggest",
    "strings": "number_as_string",
    "nan": "not_finite",
    "out_of_range": "out_of_range",
}


@pytest.mark.parametrize("fault", sorted(FAULT_CODES))
async def test_each_fault_mode_gets_its_error_and_nothing_is_stored(
    services: Services, start_hub: HubFactory, fault: str
) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    listener = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    try:
        await run_sensor(services, ref, 3, fault)
        errors = [await listener.next_json() for _ in range(3)]
    finally:
        listener.close()
    assert {e["code"] for e in errors} == {FAULT_CODES[fault]}
    for error in errors:
        assert error["device"] == ref.key and error["message"] and error["hint"]
        assert error["severity"] == "error"
    await wait_until(lambda: hub.ingest.totals.received == 3, what="3 readings received")
    assert influx_count(services.influx_port, hub.cfg.influx.database, "air_quality", "pm2_5") == 0
    assert hub.ingest.devices[ref].rejected[FAULT_CODES[fault]] == 3


async def test_int_float_flips_and_floods_are_all_stored(services: Services, start_hub: HubFactory) -> None:
    flip, flood = DeviceRef(unique("c"), "ana", "aq1"), DeviceRef(unique("c"), "ben", "aq1")
    hub = await start_hub(devices=((flip.key, "air_quality"), (flood.key, "air_quality")))
    db = hub.cfg.influx.database
    sensors = await asyncio.gather(
        run_sensor(services, flip, 10, "type_flip"), run_sensor(services, flood, 300, "flood")
    )
    assert [s.sent for s in sensors] == [10, 300]
    await wait_until(
        lambda: flood in hub.ingest.devices and hub.ingest.devices[flood].received == 300,
        what="the hub to receive the flood",
    )
    assert hub.ingest.devices[flood].rejected == {} and hub.ingest.devices[flip].rejected == {}
    assert (
        await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{flip.cohort}'", 10) == 10
    )
    assert (
        await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{flood.cohort}'", 300)
        == 300
    )
    assert hub.health()["status"] == "ok"


async def test_acceptance_examples_get_specific_errors_within_a_second(
    services: Services, start_hub: HubFactory
) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    listener = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        cases = [
            (b'{"pm25": "twelve"}', "unknown_field_suggest", "pm25"),
            (b'{"pm2_5": NaN}', "not_finite", "pm2_5"),
            (b"{pm2_5: 3}", "json_unquoted_key", None),
        ]
        errors = []
        for payload, code, field in cases:
            started = time.monotonic()
            await pub.publish(ref.topic("telemetry"), payload)
            error = await listener.next_json(timeout=1.0)
            assert time.monotonic() - started < 1.0
            assert (error["code"], error["field"]) == (code, field)
            errors.append(error)
        assert "did you mean 'pm2_5'?" in errors[0]["message"]
        assert "keys must be quoted" in errors[2]["hint"]
    finally:
        listener.close()
        pub.close()
    inspected = hub.ingest.devices[ref].inspector
    assert [e.verdict for e in inspected] == ["rejected"] * 3
    assert influx_count(services.influx_port, hub.cfg.influx.database, "air_quality", "pm2_5") == 0


async def test_error_messages_name_the_field_suggest_the_fix_and_speak_french(
    services: Services, start_hub: HubFactory
) -> None:
    en, fr = DeviceRef(unique("c"), "ana", "aq1"), DeviceRef(unique("c"), "lucas", "aq1")
    config = lab_config(services, devices=((en.key, "air_quality"), (fr.key, "air_quality")))
    config = dataclasses.replace(config, languages={fr.cohort: "fr"})
    await start_hub(config)
    listener = await MqttListener(services.mqtt_port, "lab/+/+/aq1/errors").ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(en.topic("telemetry"), b'{"pm25": "twelve"}')
        english = await listener.next_json()
        await pub.publish(fr.topic("telemetry"), b'{"pm25": "twelve"}')
        french = await listener.next_json()
    finally:
        listener.close()
        pub.close()
    assert english["message"] == "unknown field 'pm25' for a device of kind air_quality — did you mean 'pm2_5'?"
    assert english["value"] == "twelve"
    assert "rename 'pm25' to 'pm2_5'" in english["hint"]
    assert (
        french["message"] == "champ inconnu 'pm25' pour un appareil de type air_quality — vouliez-vous dire 'pm2_5' ?"
    )
    assert french["received"] == '{"pm25": "twelve"}'


async def test_inspector_shows_the_last_messages_with_verdicts(services: Services, start_hub: HubFactory) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),), inspector_size=5)
    pub = MqttPublisher(services.mqtt_port)
    try:
        for i in range(6):
            await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": float(i)}))
        await pub.publish(ref.topic("telemetry"), b'{"pm2_5": -4}')
    finally:
        pub.close()
    await wait_until(lambda: hub.ingest.devices[ref].stored == 6, what="6 stored")
    status, body = await http_json(f"http://127.0.0.1:{hub.http_port}/api/devices/{ref.key}/inspector", api_token(hub))
    assert status == 200
    messages = body["messages"]
    assert len(messages) == 5
    assert messages[0]["payload"] == '{"pm2_5": -4}' and messages[0]["verdict"] == "rejected"
    assert messages[0]["errors"][0]["code"] == "out_of_range"
    assert [m["verdict"] for m in messages[1:]] == ["stored"] * 4
    assert [json.loads(m["payload"])["pm2_5"] for m in messages[1:]] == [5.0, 4.0, 3.0, 2.0]
    status, _ = await http_json(
        f"http://127.0.0.1:{hub.http_port}/api/devices/{ref.cohort}/nobody/aq1/inspector", api_token(hub)
    )
    assert status == 404


async def test_receipt_timestamps_are_unique_and_device_collisions_are_warned(
    services: Services, start_hub: HubFactory
) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    db = hub.cfg.influx.database
    listener = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        for i in range(200):  # faster than the clock's resolution matters: none may overwrite another
            pub.client.publish(ref.topic("telemetry"), json.dumps({"pm2_5": float(i)}), qos=1)
        assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", "", 200) == 200
        now_s = int(time.time())
        await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": 1.0, "ts": now_s}))
        await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": 2.0, "ts": now_s}))
        warning = await listener.next_json()
        while "diagnosis" in warning:  # the lab doctor's word on the burst above (too_fast) may come first
            warning = await listener.next_json()
    finally:
        listener.close()
        pub.close()
    assert (warning["code"], warning["severity"]) == ("timestamp_collision", "warning")
    await wait_until(lambda: hub.ingest.devices[ref].stored == 202, what="both readings written")
    rows = influx_query(services.influx_port, db, f"SELECT pm2_5 FROM air_quality WHERE time = {now_s * 10**9}")
    assert rows[0]["values"] == [[now_s * 10**9, 2.0]]


async def test_garbage_never_stops_the_hub(services: Services, start_hub: HubFactory) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    rng = random.Random(42)
    pub = MqttPublisher(services.mqtt_port)
    try:
        payloads = [rng.randbytes(rng.randint(0, 300)) for _ in range(200)]
        payloads += [b"[" * 5000, b"{" * 5000, b'{"pm2_5": 1' + b"0" * 5000 + b"}", os.urandom(1024 * 1024 - 100)]
        payloads += ['{"pm2_5": "\u00e9\u0000"}'.encode(), b"\xff\xfe{}", b'{"pm2_5": 1e999}']
        for payload in payloads:
            pub.client.publish(ref.topic("telemetry"), payload, qos=1)
        pub.client.publish("lab/not/a/valid topic/telemetry", b"{}", qos=1)
        pub.client.publish("lab/x", b"{}", qos=1)
        await pub.publish(ref.topic("telemetry"), b'{"pm2_5": 7.5}')
        await wait_until(lambda: hub.ingest.devices[ref].stored == 1, what="the good reading stored")
    finally:
        pub.close()
    device = hub.ingest.devices[ref]
    assert device.received == len(payloads) + 1
    assert sum(device.rejected.values()) == len(payloads)
    assert device.rejected["payload_too_large"] >= 1
    assert influx_count(services.influx_port, hub.cfg.influx.database, "air_quality", "pm2_5") == 1
    assert hub.health()["status"] == "ok"


async def test_closed_lab_refuses_unknown_devices_and_open_lab_registers_them_generic(
    services: Services, start_hub: HubFactory
) -> None:
    cohort = unique("c")
    closed = await start_hub(open_mode=False)
    stranger = DeviceRef(cohort, "eve", "box")
    ghost = DeviceRef(cohort, "gus", "box")  # only a (retained) status left behind: not a device of this lab
    listener = await MqttListener(services.mqtt_port, stranger.topic("errors")).ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ghost.topic("status"), b"offline")
        await pub.publish(stranger.topic("telemetry"), b'{"t": 1}')
        error = await listener.next_json()
    finally:
        listener.close()
        pub.close()
    assert error["code"] == "unknown_device" and error["value"] == stranger.key
    assert influx_count(services.influx_port, closed.cfg.influx.database, "/^generic\\./", "t") == 0
    assert stranger in closed.ingest.devices and ghost not in closed.ingest.devices  # its status came first


async def test_generic_devices_pin_types_and_one_learner_cannot_shape_anothers_types(
    services: Services, start_hub: HubFactory
) -> None:
    cohort = unique("c")
    ana, ana2, ben = (
        DeviceRef(cohort, "ana", "robot"),
        DeviceRef(cohort, "ana", "robot2"),
        DeviceRef(cohort, "ben", "robot"),
    )
    hub = await start_hub()
    db = hub.cfg.influx.database
    listener = await MqttListener(services.mqtt_port, f"lab/{cohort}/+/+/errors").ready()
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ana.topic("telemetry"), b'{"speed": 1.5, "mode": "auto", "armed": true}')
        await count_when_stable(services.influx_port, db, f"generic.{cohort}.ana", "speed", "", 1)
        await pub.publish(ana.topic("telemetry"), b'{"speed": "fast"}')  # flips its own pinned type
        own = await listener.next_json()
        # Ana's other device never sent `speed`, so only InfluxDB knows it is a float in Ana's measurement:
        # the write is refused and isolated.
        await pub.publish(ana2.topic("telemetry"), b'{"speed": "slow"}')
        await pub.publish(ana2.topic("telemetry/temperature"), b"21.5")
        conflict = await listener.next_json(timeout=5)
        await count_when_stable(services.influx_port, db, f"generic.{cohort}.ana", "temperature", "", 1)
        await pub.publish(ana2.topic("telemetry"), b'{"speed": "slower"}')  # now known before writing
        again = await listener.next_json()
        # Ben is another learner: Ana's types never apply to him, his text is stored, he gets no error.
        await pub.publish(ben.topic("telemetry"), b'{"speed": "slow"}')
        await count_when_stable(services.influx_port, db, f"generic.{cohort}.ben", "speed", "", 1)
        await pub.publish(ana.topic("telemetry"), b'{"speed": 2.5}')  # a marker after Ben's reading
        await count_when_stable(services.influx_port, db, f"generic.{cohort}.ana", "speed", "", 2)
        assert listener.pending() == 0, "Ben was told off for Ana's types"
    finally:
        listener.close()
        pub.close()
    assert (own["code"], own["field"], own["device"]) == ("type_changed", "speed", ana.key)
    assert (conflict["code"], conflict["field"], conflict["device"]) == ("type_conflict", "speed", ana2.key)
    assert (again["code"], again["device"]) == ("type_changed", ana2.key)
    speeds = influx_query(services.influx_port, db, f'SELECT speed, mode, armed FROM "generic.{cohort}.ana"')[0]
    assert [row[1:] for row in speeds["values"]] == [[1.5, "auto", True], [2.5, None, None]]
    bens = influx_query(services.influx_port, db, f'SELECT speed FROM "generic.{cohort}.ben"')[0]["values"]
    assert [row[1] for row in bens] == ["slow"]
    assert hub.ingest.devices[ben].rejected == {}


async def test_a_classrooms_slow_stream_shares_influxdb_writes(services: Services, start_hub: HubFactory) -> None:
    """A board at 50 readings a second (under the 100 a second of a fast stream): its readings share writes,
    written at most every slow_write_linger_ms (200 ms by default), and every one is stored."""
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    before = hub.stats()["writer"]
    started = time.monotonic()
    await run_sensor(services, ref, 20)  # 20 readings, one every 20 ms
    took = time.monotonic() - started
    db = hub.cfg.influx.database
    assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", "", 20) == 20
    writer = hub.stats()["writer"]
    writes = writer["batches"] - before["batches"]
    assert writer["lingers"] > before["lingers"]
    # One write at once, then at most one per 200 ms while the board sends, and one for what came last.
    assert writes <= 2 + took / 0.2, f"{writes} InfluxDB writes for 20 readings sent in {took:.2f} s"


async def test_line_protocol_and_bare_values_are_accepted(services: Services, start_hub: HubFactory) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    db = hub.cfg.influx.database
    pub = MqttPublisher(services.mqtt_port)
    now_ns = time.time_ns()
    try:
        await pub.publish(ref.topic("telemetry"), f"air pm2_5=12.5,pm10=20 {now_ns}\nair pm2_5=13 {now_ns + 1}")
        await pub.publish(ref.topic("telemetry/co2"), b"612")
    finally:
        pub.close()
    assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", "", 2) == 2
    assert await count_when_stable(services.influx_port, db, "air_quality", "co2", "", 1) == 1
    rows = influx_query(services.influx_port, db, f"SELECT pm2_5, pm10 FROM air_quality WHERE time = {now_ns}")
    assert rows[0]["values"] == [[now_ns, 12.5, 20.0]]
    await wait_until(lambda: hub.stats()["stored"] == 3, what="3 readings counted as stored")


async def test_presence_follows_status_and_the_last_will_the_broker_sends(
    services: Services, start_hub: HubFactory
) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    watcher = await MqttListener(services.mqtt_port, ref.topic("status")).ready()
    board = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("board-"))
    board.will_set(ref.topic("status"), b"offline", qos=1)
    board.connect("127.0.0.1", services.mqtt_port)
    board.loop_start()
    try:
        await asyncio.to_thread(board.publish(ref.topic("status"), b"online", qos=1).wait_for_publish, 5)
        await wait_until(lambda: hub.ingest.devices[ref].online is True, what="device online")
        # The board dies (its Wi-Fi goes): no DISCONNECT, no `offline` of its own; the socket just closes.
        board.loop_stop()
        board.socket().close()  # type: ignore[union-attr]
        await wait_until(lambda: hub.ingest.devices[ref].online is False, what="device offline")
        assert [await watcher.next() for _ in range(2)] == [
            (ref.topic("status"), b"online"),
            (ref.topic("status"), b"offline"),  # published by the broker: the board's last will
        ]
    finally:
        watcher.close()
    status, body = await http_json(f"http://127.0.0.1:{hub.http_port}/api/devices", api_token(hub))
    assert status == 200
    assert next(d for d in body["devices"] if d["id"] == ref.key)["online"] is False


async def test_metrics_endpoint_exposes_counters_for_prometheus(services: Services, start_hub: HubFactory) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    pub = MqttPublisher(services.mqtt_port)
    try:
        await pub.publish(ref.topic("telemetry"), b'{"pm2_5": 3.5}')
        await pub.publish(ref.topic("telemetry"), b'{"pm2_5": 5000}')
    finally:
        pub.close()
    await wait_until(lambda: hub.ingest.totals.stored == 1 and hub.ingest.totals.received == 2, what="outcomes")

    token = api_token(hub, "viewer", "*")

    def scrape() -> tuple[str, str]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{hub.http_port}/metrics", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.headers["Content-Type"], resp.read().decode()

    content_type, text = await asyncio.to_thread(scrape)
    assert content_type.startswith("text/plain; version=0.0.4")
    lines = set(text.splitlines())
    assert "labhub_readings_received_total 2.0" in lines
    assert "labhub_readings_stored_total 1.0" in lines
    assert 'labhub_readings_rejected_total{reason="out_of_range"} 1.0' in lines
    assert "labhub_mqtt_connected 1.0" in lines and "labhub_healthy 1.0" in lines
    assert "labhub_websocket_clients 0.0" in lines and 'labhub_commands_active{state="queued"} 0.0' in lines


async def test_two_workers_share_the_load_without_colliding(services: Services, start_hub: HubFactory) -> None:
    config = lab_config(services)
    first = await start_hub(config, worker=0, workers=2)
    second = await start_hub(config, worker=1, workers=2)
    ref = DeviceRef(unique("c"), "ana", "box")
    pub = MqttPublisher(services.mqtt_port)
    try:
        for i in range(200):
            pub.client.publish(ref.topic("telemetry"), json.dumps({"n": i}), qos=1)
        await pub.publish(ref.topic("telemetry"), json.dumps({"n": 200}))
        db = config.influx.database
        assert (
            await count_when_stable(services.influx_port, db, "/^generic\\./", "n", f"learner = '{ref.learner}'", 201)
            == 201
        )
    finally:
        pub.close()

    def shares() -> list[int]:
        return [first.ingest.devices[ref].stored, second.ingest.devices[ref].stored]

    # A point is queryable a moment before the writer that stored it has counted it.
    await wait_until(lambda: sum(shares()) == 201, what="both workers to count what they stored")
    assert min(shares()) > 0  # both took part
    times = [row[0] for row in influx_query(services.influx_port, db, "SELECT n FROM /^generic\\./")[0]["values"]]
    assert len(set(times)) == 201
    assert {t % 2 for t in times} == {0, 1}  # each worker stamps its own residue class


MOSQUITTO_DROPPING = """listener {port} 127.0.0.1
allow_anonymous true
persistence false
sys_interval 1
max_queued_messages 5
log_dest stderr
"""


async def test_the_broker_dropping_messages_raises_an_alarm(
    services: Services, start_hub: HubFactory, scratch: Callable[[str], Path]
) -> None:
    """A broker of its own that really drops messages (a queue of 5 for a client that is away) and publishes
    its $SYS counters every second: the alarm comes through the hub's real subscription."""
    state = scratch("labhub-drops-")
    port = free_port()
    (state / "mosquitto.conf").write_text(MOSQUITTO_DROPPING.format(port=port))
    broker = await asyncio.create_subprocess_exec(
        "mosquitto", "-c", str(state / "mosquitto.conf"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_until(lambda: _listening(port), what="the test broker to listen")
        config = lab_config(services)
        mqtt = dataclasses.replace(config.mqtt, port=port, internal_port=port)  # one listener: the hub uses it
        hub = await start_hub(config=dataclasses.replace(config, mqtt=mqtt))
        await wait_until(lambda: hub.watchdog.broker_dropped is not None, what="the broker's first $SYS figure")
        assert hub.health()["status"] == "ok"  # the first figure is a baseline, not an alarm
        away = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("away-"), clean_session=False)
        away.connect("127.0.0.1", port)
        away.loop_start()
        subscribed = threading.Event()
        away.on_subscribe = lambda *a: subscribed.set()
        away.subscribe("drops/here", qos=1)
        assert await asyncio.to_thread(subscribed.wait, 5)
        away.disconnect()
        away.loop_stop()
        pub = MqttPublisher(port)
        try:
            for i in range(20):  # 5 are queued for the client that is away, 15 dropped
                await pub.publish("drops/here", str(i))
        finally:
            pub.close()
        await wait_until(lambda: hub.health()["status"] == "degraded", what="the alarm")
        dropped = hub.watchdog.broker_dropped
        assert dropped is not None and dropped >= 15
        assert f"the broker dropped messages in the last minute ({dropped} in all)" in hub.health()["reasons"]
    finally:
        broker.terminate()
        await asyncio.wait_for(broker.wait(), 10)


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0
