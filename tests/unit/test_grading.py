"""Grading's measures and rubrics (pure): readings, presence and commands measured, scores from bad to good, criteria
that do not apply, the shipped rubrics. A real demo window graded from InfluxDB is in tests/integration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.grading.evidence import Command, Window
from hub.grading.rubrics import (
    Criterion,
    RubricError,
    grade,
    load_rubrics,
    parse_rubric,
)

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
