"""The rubric's lab-doctor measures, from stored `diagnoses` changes: open at the demo's end, resolved in the course."""

from __future__ import annotations

from collections.abc import Mapping

from devices.topics import DeviceRef
from hub.adapters.influx_read import FieldValue
from hub.grading.evidence import Window
from hub.grading.measures import MEASURES
from hub.grading.rubrics import grade, load_rubrics

REF = DeviceRef("demo", "ana", "aq1")
S = 10**9


def window(*changes: tuple[int, str, bool], severity: str = "error") -> Window:
    points: list[tuple[int, Mapping[str, FieldValue]]] = [
        (t * S, {"code": code, "severity": severity, "open": is_open, "count": 1}) for t, code, is_open in changes
    ]
    return Window(REF, "air_quality", 100 * S, 200 * S, diagnoses=points)


def test_open_and_resolved_findings() -> None:
    w = window(
        (10, "wrong_password", True),
        (150, "too_fast", True),
        (20, "wrong_password", False),
        (160, "too_fast", False),
        (170, "too_fast", True),
    )
    assert MEASURES["findings_open"](w, {}) == (
        1.0,
        {"open_at_end": ["too_fast"], "codes_seen": ["too_fast", "wrong_password"]},
    )
    assert MEASURES["findings_resolved"](w, {}) == (
        0.5,
        {"resolved": ["wrong_password"], "found": ["too_fast", "wrong_password"]},
    )


def test_nothing_found_is_not_applicable_and_changes_no_grade() -> None:
    assert MEASURES["findings_open"](window(), {})[0] is None
    assert MEASURES["findings_resolved"](window(), {})[0] is None
    clean = grade(window((10, "stuck_sensor", True), (20, "stuck_sensor", False)), load_rubrics())
    found = {r.criterion.id: r.score for r in clean.results if r.applicable}
    assert found["no_open_findings"] == 1.0 and found["findings_resolved"] == 1.0
    left_open = grade(window((10, "stuck_sensor", True)), load_rubrics())
    found = {r.criterion.id: r.score for r in left_open.results if r.applicable}
    assert (found["no_open_findings"] or 0) < 1.0 and found["findings_resolved"] == 0.0


def test_warnings_count_only_when_the_rubric_asks() -> None:
    w = window((10, "too_fast", True), severity="warning")
    assert MEASURES["findings_open"](w, {})[0] is None
    assert MEASURES["findings_open"](w, {"warnings": True})[0] == 1.0
