"""Grading a demonstration from evidence: rubrics (TOML in config/rubrics/), their criteria and the grade (pure, but for reading the rubric files).

A rubric lists criteria; each names a *measure* (`hub.grading.measures`: a function of what InfluxDB holds for
the device over the demo window, `hub.grading.evidence`), a `good` and a `bad` value (the score goes linearly
from 0 at `bad` to 1 at `good`, whichever way round they are) and a weight. Every criterion reports its
evidence, the numbers behind the score, so a trainer (or a learner) can check them. A criterion whose
evidence does not exist in the window (no stop was sent, no eCO2 sensor) is *not applicable* and does not
count. Scores come only from stored data, never from a running hub's memory: a restart does not change a
grade.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.topics import DeviceRef
from hub.config import CONFIG_DIR
from hub.grading.evidence import Window
from hub.grading.measures import MEASURES

RUBRICS_DIR = CONFIG_DIR / "rubrics"
ANY = "any"  # the rubric every device gets, on top of its kind's


class RubricError(ValueError):
    """A rubric file that cannot be used as written."""


@dataclass(frozen=True, slots=True)
class Criterion:
    id: str
    title: str
    measure: str
    good: float
    bad: float
    weight: float = 1.0
    params: Mapping[str, Any] = field(default_factory=dict)

    def score(self, value: float) -> float:
        if self.good == self.bad:
            return 1.0 if value == self.good else 0.0
        return min(1.0, max(0.0, (value - self.bad) / (self.good - self.bad)))


@dataclass(frozen=True, slots=True)
class Rubric:
    kind: str
    title: str
    criteria: tuple[Criterion, ...]
    source: str = ""


@dataclass(frozen=True, slots=True)
class Result:
    criterion: Criterion
    value: float | None  # None: not applicable
    evidence: Mapping[str, Any]

    @property
    def applicable(self) -> bool:
        return self.value is not None

    @property
    def score(self) -> float | None:
        return None if self.value is None else self.criterion.score(self.value)

    def as_json(self) -> dict[str, Any]:
        c = self.criterion
        return {
            "id": c.id,
            "title": c.title,
            "measure": c.measure,
            "value": None if self.value is None else round(self.value, 4),
            "good": c.good,
            "bad": c.bad,
            "weight": c.weight,
            "score": None if self.score is None else round(self.score, 4),
            "applicable": self.applicable,
            "evidence": dict(self.evidence),
        }


@dataclass(frozen=True, slots=True)
class DeviceGrade:
    ref: DeviceRef
    kind: str
    start_ns: int
    end_ns: int
    results: tuple[Result, ...]

    @property
    def score(self) -> float | None:
        """Weighted mean of the applicable criteria, 0–1."""
        scored = [(r.criterion.weight, r.score) for r in self.results if r.score is not None]
        total = sum(w for w, _ in scored)
        return None if not total else sum(w * s for w, s in scored if s is not None) / total

    def as_json(self) -> dict[str, Any]:
        score = self.score
        return {
            "device": self.ref.key,
            "kind": self.kind,
            "window": {"start_ns": self.start_ns, "end_ns": self.end_ns},
            "score_percent": percent(score),
            "score_20": None if score is None else round(20 * score, 1),
            "criteria": [r.as_json() for r in self.results],
        }


def parse_rubric(data: Mapping[str, Any], where: str) -> Rubric:
    kind = data.get("kind")
    if not isinstance(kind, str) or not kind:
        raise RubricError(f"{where}: kind: expected a device kind (or 'any')")
    criteria = []
    entries = data.get("criteria", [])
    if not isinstance(entries, list) or not entries:
        raise RubricError(f"{where}: criteria: expected at least one [[criteria]] table")
    for i, entry in enumerate(entries):
        key = f"{where}: criteria[{i}]"
        if not isinstance(entry, dict):
            raise RubricError(f"{key}: expected a table")
        name = entry.get("measure")
        if name not in MEASURES:
            raise RubricError(f"{key}.measure: expected one of {', '.join(sorted(MEASURES))}, got {name!r}")
        try:
            good, bad, weight = float(entry["good"]), float(entry["bad"]), float(entry.get("weight", 1.0))
        except KeyError as err:
            raise RubricError(f"{key}: missing {err.args[0]!r} (the value scoring 1, and the one scoring 0)") from None
        except (TypeError, ValueError):
            raise RubricError(f"{key}: good, bad and weight must be numbers") from None
        if weight < 0:
            raise RubricError(f"{key}.weight: must not be negative")
        params = {k: v for k, v in entry.items() if k not in ("id", "title", "measure", "good", "bad", "weight")}
        criteria.append(
            Criterion(str(entry.get("id", name)), str(entry.get("title", name)), name, good, bad, weight, params)
        )
    return Rubric(kind, str(data.get("title", kind)), tuple(criteria), where)


def load_rubrics(directory: Path = RUBRICS_DIR) -> dict[str, Rubric]:
    """Every `*.toml` in the directory, by kind."""
    rubrics: dict[str, Rubric] = {}
    for path in sorted(directory.glob("*.toml")):
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as err:
            raise RubricError(f"{path}: not valid TOML: {err}") from None
        rubric = parse_rubric(data, str(path))
        if rubric.kind in rubrics:
            raise RubricError(f"{path}: a second rubric for kind {rubric.kind!r}")
        rubrics[rubric.kind] = rubric
    return rubrics


def grade(window: Window, rubrics: Mapping[str, Rubric]) -> DeviceGrade:
    """The device's kind rubric, then the rubric for any device."""
    results = []
    for rubric in (rubrics.get(window.kind), rubrics.get(ANY)):
        if rubric is None:
            continue
        for criterion in rubric.criteria:
            value, evidence = MEASURES[criterion.measure](window, criterion.params)
            results.append(Result(criterion, value, evidence))
    return DeviceGrade(window.ref, window.kind, window.start_ns, window.end_ns, tuple(results))


def percent(score: float | None) -> float | None:
    """A 0–1 score as the percentage every output shows (one decimal), so a table never rounds it differently."""
    return None if score is None else round(100 * score, 1)


def learner_score(grades: Sequence[DeviceGrade]) -> float | None:
    """A learner's score: the mean of their devices' scores (devices with nothing applicable left out)."""
    scores = [g.score for g in grades if g.score is not None]
    return None if not scores else sum(scores) / len(scores)
