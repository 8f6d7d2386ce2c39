"""Grading: measures and rubrics (pure), then a real demo window — a good sensor, a faulty one and an arm through
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
from hub.grading.evidence import Command, Window
from hub.grading.reports import grade_session, write_reports
from hub.grading.rubrics import (
    Criterion,
    RubricError,
    grade,
    load_rubrics,
    parse_rubric,
)
from tests.conftest import HubFactory, Services, unique
from tests.support import MqttPublisher, influx_query, wait_until

REF = DeviceRef("c", "ana", "aq1")
S = 1_000_000_000


def window(**kw: Any) -> Window:
    return Window(REF, kw.pop("kind", "air_quality"), 0, kw.pop("end", 10 * S), **kw)


def measure(name: str, w: Window, **params: Any) -> tuple[float | None, dict[str, Any]]:
    from hub.grading.measures import MEASURES

    return MEASURES[name](w, params)


def test_scores_go_linearly_from_bad_to_good_either_way() -> None:
    higher = Criterion("x", "x", "reading_rate", good=1.0, bad=0.5)
    lower = Criterion("y", "y", "longest_gap", good=5, bad=60)
    assert [higher.score(v) for v in (0.2, 0.5, 0.75, 1.0, 3.0)] == [0.0, 0.0, 0.5, 1.0, 1.0]
    assert [lower.score(v) for v in (1, 5, 32.5, 60, 100)] == [1.0, 1.0, 0.5, 0.0, 0.0]


def test_reading_measures() -> None:
    readings = [(t * S, {"pm2_5": v}) for t, v in [(1, 5.0), (2, 5.0), (3, 5.0), (7, 6.0), (8, 6.0)]]
    w = window(readings=readings, rejections=[(4 * S, "not_finite"), (5 * S, "unknown_field")])
    assert measure("reading_rate", w, period_s=1.0) == (
        0.5,
        {"readings": 5, "window_s": 10.0, "period_s": 1.0, "expected": 10.0},
    )
    assert measure("longest_gap", w)[0] == 4.0  # from 3 s to 7 s
    assert measure("valid_share", w)[0] == pytest.approx(5 / 7)
    assert measure("rejections", w) == (2.0, {"rejections": 2, "by_code": {"not_finite": 1, "unknown_field": 1}})
    assert measure("stuck_run", w, field="pm2_5")[0] == 3.0
    assert measure("plausible_share", w, field="pm2_5", min=0, max=5.5)[0] == pytest.approx(3 / 5)
    assert measure("stuck_run", w, field="co2") == (None, {"field": "co2", "readings_with_field": 0})
    warm = window(
        readings=[
            (S, {"eco2": 400, "tvoc": 0}),
            (2 * S, {"eco2": 612.0, "tvoc": 40.0}),
            (30 * S, {"eco2": 400, "tvoc": 0}),
        ],
        presence=[(0, True)],
        end=40 * S,
    )
    assert measure("warmup_artefacts", warm)[0] == 1.0  # the clean-air 400/0 at 30 s is not a warm-up artefact
    assert measure("warmup_artefacts", w)[0] is None  # no such sensor: not applicable
    assert measure("valid_share", window())[0] is None


def test_presence_measures() -> None:
    # Online before the window (the last status before it counts), off from 4 s to 6 s, back on.
    w = window(presence=[(0, True), (4 * S, False), (6 * S, True)])
    assert measure("online_share", w)[0] == pytest.approx(0.8)
    assert measure("reconnects", w)[0] == 1.0
    # Switched on during the demo (nothing known before): online from then, and that is no reconnect.
    late = window(presence=[(5 * S, True)])
    assert measure("online_share", late)[0] == pytest.approx(0.5)
    assert measure("reconnects", late)[0] == 0.0
    # Online since long before the window: no warm-up in the window.
    early = window(presence=[(-60 * S, True)], readings=[(2 * S, {"eco2": 400, "tvoc": 0})])
    assert measure("warmup_artefacts", early)[0] == 0.0
    # No status messages: online while readings come at least every 30 s.
    silent = window(end=100 * S, readings=[(0, {"a": 1.0}), (10 * S, {"a": 1.0})])
    assert measure("online_share", silent) == (0.4, {"online_s": 40.0, "window_s": 100.0, "from": "readings"})
    assert measure("reconnects", silent)[0] is None


def test_command_measures() -> None:
    commands = [
        Command(1, "move", "done", 20.0, 400.0, 0.0),
        Command(2, "move", "done", 30.0, 500.0, 3.0),
        Command(3, "move", "timed_out", None, None, None),
        Command(4, "move", "refused"),
        Command(5, "stop", "done", 10.0, 0.0, None),  # done at once: 0 ms is a time, not a missing one
        Command(6, "move", "rejected", 15.0, 20.0, None),
    ]
    w = window(kind="arm", commands=commands)
    assert measure("commands_done", w)[0] == pytest.approx(3 / 5)
    assert measure("latency_p95", w)[0] == 30.0
    assert measure("pose_reached", w, tolerance_deg=1.0)[0] == 0.5
    assert measure("unsafe_refused", w)[0] == 0.5
    assert measure("stop_honoured", w, within_ms=1000)[0] == 1.0
    assert measure("stop_honoured", window(kind="arm"))[0] is None


def test_the_shipped_rubrics_load_and_bad_ones_say_what_is_wrong(tmp_path: Path) -> None:
    rubrics = load_rubrics()
    assert set(rubrics) == {"air_quality", "arm", "any"}
    assert {c.measure for c in rubrics["arm"].criteria} >= {"commands_done", "latency_p95", "stop_honoured"}
    with pytest.raises(RubricError, match="measure: expected one of"):
        parse_rubric({"kind": "x", "criteria": [{"measure": "vibes", "good": 1, "bad": 0}]}, "r.toml")
    with pytest.raises(RubricError, match="missing 'bad'"):
        parse_rubric({"kind": "x", "criteria": [{"measure": "rejections", "good": 0}]}, "r.toml")
    (tmp_path / "a.toml").write_text('kind = "x"\n[[criteria]\n')
    with pytest.raises(RubricError, match="not valid TOML"):
        load_rubrics(tmp_path)


def test_not_applicable_criteria_do_not_count() -> None:
    result = grade(window(kind="arm", presence=[(0, True)]), load_rubrics())
    applicable = [r for r in result.results if r.applicable]
    assert {r.criterion.measure for r in applicable} == {"online_share", "reconnects"}
    assert result.score == 1.0


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
