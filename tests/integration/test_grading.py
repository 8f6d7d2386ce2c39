"""Grading a real demo window — a good sensor, a faulty one and an arm through
the real broker, hub and InfluxDB — graded from InfluxDB, with every evidence number checked by a direct query,
and the same grade after a hub restart."""

from __future__ import annotations

import asyncio
import collections
import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from devices.arm import load_profiles
from devices.topics import DeviceRef
from firmware_sim.air import AirModel, AirSensor
from firmware_sim.arm import ArmFirmware
from hub.commands.relay import FINAL
from hub.grading.reports import grade_session, write_reports
from hub.grading.rubrics import (
    load_rubrics,
)
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import MqttPublisher, influx_query, wait_until

S = 1_000_000_000


# A real demo window ------------------------------------------------------------------------------------------


def presence_from_influxdb(
    services: Services, db: str, ref: DeviceRef, start: int, end: int
) -> tuple[float, list[int]]:
    """Seconds online in [start, end) and the times the device came online, worked out here from the stored
    statuses (the last one before the window, and those inside it) rather than by the code under test."""
    clause = f"cohort = '{ref.cohort}' AND learner = '{ref.learner}' AND device = '{ref.device}'"
    before = influx_query(
        services.influx_port, db, f"SELECT last(online) FROM presence WHERE {clause} AND time < {start}"
    )
    events = [(row[0], row[1]) for row in before[0]["values"]] if before else []
    inside = influx_query(
        services.influx_port, db, f"SELECT online FROM presence WHERE {clause} AND time >= {start} AND time < {end}"
    )
    events += [(row[0], row[1]) for row in inside[0]["values"]] if inside else []
    online_ns, state, since, starts = 0, None, start, []
    for t, online in events:
        if online and state is not True:
            starts.append(t)
        if state:
            online_ns += max(t, start) - since
        state, since = online, max(t, start)
    if state:
        online_ns += end - since
    return online_ns / 1e9, starts


def count(services: Services, db: str, q: str) -> int:
    rows = influx_query(services.influx_port, db, q)
    return int(rows[0]["values"][0][1]) if rows else 0


async def test_a_demo_window_is_graded_from_influxdb_and_survives_a_restart(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = await start_hub()
    cohort = unique("g")
    good, faulty, armer = (
        DeviceRef(cohort, name, dev) for name, dev in (("good", "aq1"), ("faulty", "aq1"), ("armer", "arm1"))
    )
    for ref, kind, profile in ((good, "air_quality", None), (faulty, "air_quality", None), (armer, "arm", "mearm")):
        hub.registry.add_device(ref, kind, profile)
    hub.apply_registry()
    rubrics = load_rubrics()

    sensor = AirSensor(good, "127.0.0.1", services.mqtt_port, period_s=0.1)
    sensor.model = AirModel(seed=3, boot_s=time.time() - 60)  # a board powered a minute ago: sensor warmed up
    arm = ArmFirmware(armer, load_profiles()["mearm"], "127.0.0.1", services.mqtt_port)
    tasks = [asyncio.create_task(sensor.run()), asyncio.create_task(arm.run())]
    await wait_until(lambda: hub.ingest.devices[armer].online and hub.ingest.devices[good].online, what="online")
    pub = MqttPublisher(services.mqtt_port)
    await pub.publish(faulty.topic("status"), b"online")  # the faulty board comes online before the demo
    await wait_until(lambda: hub.ingest.devices[faulty].online, what="the faulty board online")
    await asyncio.sleep(1.0)  # past the sensor's first readings: the demo starts on a running system
    start = time.time_ns()
    sessions = [hub.registry.start_session(r.cohort, r.learner, "test trainer", start) for r in (good, faulty, armer)]

    try:
        # The faulty sensor: two implausible values, then a stuck one; every third message with a wrong field
        # name; a gap in which it drops off (offline, then back: a reconnect), and right after it the SGP30's
        # warm-up values (eCO2 400 ppm, TVOC 0 ppb) that firmware should hold back.
        for i in range(30):
            body: dict[str, float] = {"pm2_5": 500.0 if i < 2 else 12.0, "pm10": 20.0}
            if i in (16, 18):
                body |= {"eco2": 400.0, "tvoc": 0.0}
            await pub.publish(faulty.topic("telemetry"), json.dumps({"pm25": 12} if i % 3 == 2 else body))
            if i == 15:
                await pub.publish(faulty.topic("status"), b"offline")
                await asyncio.sleep(2.5)
                await pub.publish(faulty.topic("status"), b"online")
            await asyncio.sleep(0.05)
        # The arm: two moves, an unsafe one (refused before anything is sent), a stop.
        for request in ({"type": "move", "targets": {"base": 40}}, {"type": "move", "targets": {"base": 70}}):
            record = await hub.relay.wait(hub.relay.submit(armer, request, "test"), 10)
            assert record.state in FINAL
        with pytest.raises(ValueError):
            hub.relay.submit(armer, {"type": "move", "targets": {"base": 400}}, "test")
        record = await hub.relay.wait(hub.relay.submit(armer, {"type": "stop"}, "test"), 10)
        assert record.state.value == "done"
    finally:
        pub.close()
    end = time.time_ns()
    stopped = [hub.registry.stop_session(s.id, end) for s in sessions]
    assert await hub.flush_evidence(timeout=10.0), "the window's data did not reach InfluxDB"
    reports = [await grade_session(hub.backend, hub.registry, s, rubrics) for s in stopped]  # type: ignore[arg-type]
    by_learner = {r.session.learner: r for r in reports}
    scores = {name: r.score for name, r in by_learner.items()}
    print("scores:", {k: round(v or 0, 3) for k, v in scores.items()})
    assert scores["good"] is not None and scores["faulty"] is not None and scores["armer"] is not None
    assert scores["good"] > 0.95 and scores["armer"] > 0.9 and scores["faulty"] < 0.75
    assert scores["good"] > scores["faulty"]

    # Every evidence number, checked against a direct query over the same window.
    db = hub.cfg.influx.database

    def where(ref: DeviceRef) -> str:
        return (
            f"cohort = '{ref.cohort}' AND learner = '{ref.learner}' AND device = '{ref.device}' "
            f"AND time >= {start} AND time < {end}"
        )

    def evidence(learner: str, criterion: str) -> dict[str, Any]:
        result = next(r for r in by_learner[learner].grades[0].results if r.criterion.id == criterion)
        return dict(result.evidence)

    assert evidence("good", "rate")["readings"] == count(
        services, db, f"SELECT count(pm2_5) FROM air_quality WHERE {where(good)}"
    )
    assert (
        evidence("faulty", "rate")["readings"]
        == count(services, db, f"SELECT count(pm2_5) FROM air_quality WHERE {where(faulty)}")
        == 20
    )
    assert (
        evidence("faulty", "valid")["rejections"]
        == count(services, db, f"SELECT count(message) FROM rejections WHERE {where(faulty)}")
        == 10
    )
    assert evidence("faulty", "errors")["by_code"] == {"unknown_field_suggest": 10}
    rows = influx_query(services.influx_port, db, f"SELECT pm2_5 FROM air_quality WHERE {where(faulty)}")[0]["values"]
    values, times = [row[1] for row in rows], [row[0] for row in rows]
    runs = [len(list(group)) for _, group in itertools.groupby(values)]
    assert evidence("faulty", "not_stuck") == {
        "field": "pm2_5",
        "longest_identical_run": max(runs),
        "readings_with_field": 20,
    }
    assert max(runs) == 18  # 500, 500, then 12 × 18
    gaps = [b - a for a, b in zip([start, *times], [*times, end], strict=True)]
    assert evidence("faulty", "coverage")["longest_gap_s"] == round(max(gaps) / 1e9, 3) >= 2.5
    # Plausible values: the rubric's range (0–300 µg/m³), counted by InfluxDB.
    for learner, ref in (("good", good), ("faulty", faulty)):
        inside = count(
            services, db, f"SELECT count(pm2_5) FROM air_quality WHERE {where(ref)} AND pm2_5 >= 0 AND pm2_5 <= 300"
        )
        total = count(services, db, f"SELECT count(pm2_5) FROM air_quality WHERE {where(ref)}")
        assert evidence(learner, "plausible") == {
            "field": "pm2_5",
            "plausible": inside,
            "readings_with_field": total,
            "range": [0.0, 300.0],
        }, learner
    assert evidence("faulty", "plausible")["plausible"] == 18
    # Presence: time online and reconnects, from the stored statuses (the last one before the window too).
    for learner, ref in (("good", good), ("faulty", faulty), ("armer", armer)):
        online_s, starts = presence_from_influxdb(services, db, ref, start, end)
        back = [t for t in starts if start < t]
        assert evidence(learner, "online") == {
            "online_s": round(online_s, 3),
            "window_s": round((end - start) / 1e9, 3),
            "from": "presence",
        }, learner
        assert evidence(learner, "reconnects") == {"reconnects": len(back)}, learner
        # Warm-up artefacts: 400/0 readings in the 15 s after each start, counted by InfluxDB.
        if learner != "armer":
            zeroed = influx_query(
                services.influx_port,
                db,
                f"SELECT eco2, tvoc FROM air_quality WHERE {where(ref)} AND eco2 = 400 AND tvoc = 0",
            )
            artefacts = sum(
                1 for row in (zeroed[0]["values"] if zeroed else []) if any(s <= row[0] < s + 15 * S for s in starts)
            )
            assert evidence(learner, "warmup") == {
                "warmup_readings": artefacts,
                "starts_seen": len(starts),
                "warmup_s": 15.0,
            }, learner
    assert (
        evidence("faulty", "reconnects") == {"reconnects": 1} and evidence("faulty", "warmup")["warmup_readings"] == 2
    )
    done_rows = influx_query(services.influx_port, db, f"SELECT * FROM commands WHERE {where(armer)}")[0]
    states = [dict(zip(done_rows["columns"], v, strict=True))["state"] for v in done_rows["values"]]
    assert evidence("armer", "done") == {
        "done": count(services, db, f"SELECT count(id) FROM commands WHERE {where(armer)} AND state = 'done'"),
        "sent": count(services, db, f"SELECT count(id) FROM commands WHERE {where(armer)} AND state != 'refused'"),
        "by_state": dict(collections.Counter(states)),
    }
    assert evidence("armer", "done")["by_state"] == {"done": 3, "refused": 1}
    assert (
        evidence("armer", "unsafe")["refused"]
        == count(services, db, f"SELECT count(reason) FROM commands WHERE {where(armer)} AND state = 'refused'")
        == 1
    )
    stop_where = f"{where(armer)} AND type = 'stop'"
    assert evidence("armer", "stop") == {
        "honoured": count(
            services,
            db,
            f"SELECT count(id) FROM commands WHERE {stop_where} AND state = 'done' AND finished_ms <= 1000",
        ),
        "stops": count(services, db, f"SELECT count(id) FROM commands WHERE {stop_where} AND state != 'refused'"),
        "within_ms": 1000.0,  # the rubric's "within 1 s"
    }
    assert evidence("armer", "stop")["honoured"] == 1
    pose_errors = [
        row[1]
        for row in influx_query(services.influx_port, db, f"SELECT pose_error_deg FROM commands WHERE {where(armer)}")[
            0
        ]["values"]
        if row[1] is not None
    ]
    assert evidence("armer", "pose") == {
        "reached": sum(1 for e in pose_errors if e <= 1.0),  # the rubric's tolerance: 1°
        "finished_moves": len(pose_errors),
        "tolerance_deg": 1.0,
        "worst_error_deg": round(max(pose_errors), 3),
    }
    assert len(pose_errors) == 2
    latencies = sorted(
        row[1]
        for row in influx_query(services.influx_port, db, f"SELECT accepted_ms FROM commands WHERE {where(armer)}")[0][
            "values"
        ]
        if row[1] is not None
    )
    assert evidence("armer", "latency")["p95_ms"] == latencies[-1]  # 3 values: the nearest-rank p95 is the largest

    # Reports: HTML with plots, CSV, JSON.
    written = write_reports(tmp_path / "reports", cohort, reports, rubrics)
    assert {p.name for p in written} >= {"good.html", "cohort.html", "grades.csv", "grades.json"}
    page = (tmp_path / "reports" / "good.html").read_text()
    assert "<svg" in page and "pm2_5" in page and "Reading rate" in page
    assert json.loads((tmp_path / "reports" / "grades.json").read_text())["learners"][0]["learner"].startswith(cohort)

    # A restart of the hub changes nothing: the grade comes from InfluxDB, not from memory.
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    before = [r.as_json() for r in reports]
    hub.stop()
    await asyncio.wait_for(hub.stopped.wait(), 30)
    again = await start_hub(config=hub.cfg)
    after = [(await grade_session(again.backend, again.registry, s, rubrics)).as_json() for s in stopped]  # type: ignore[arg-type]
    assert after == before
