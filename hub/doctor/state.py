"""The lab doctor's state per device: its findings (with first/last seen, count, samples, resolved) and its
checklist. Plain data the engine (hub.doctor.engine) mutates; `Finding.as_json` is the API's shape."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from devices import diagnoses as dx
from devices.topics import DeviceRef


@dataclass(slots=True)
class Finding:
    code: str
    first_ns: int
    last_ns: int
    count: int = 0
    samples: deque[str] = field(default_factory=lambda: deque(maxlen=dx.DEFAULT_THRESHOLDS.samples))
    params: dict[str, object] = field(default_factory=dict)
    resolved_ns: int | None = None

    @property
    def open(self) -> bool:
        return self.resolved_ns is None

    def as_json(self, ref: DeviceRef, lang: str) -> dict[str, object]:
        message, hint = dx.render_finding(self.code, {"device": ref.key, "count": self.count, **self.params}, lang)
        return {
            "code": self.code,
            "severity": dx.SEVERITY.get(self.code, dx.WARNING),
            "message": message,
            "hint": hint,
            "fix": dx.fix_for(self.code),
            "evidence": {"count": self.count, "samples": list(self.samples)},
            "first_seen_ns": self.first_ns,
            "last_seen_ns": self.last_ns,
            "resolved": self.resolved_ns is not None,
            "resolved_ns": self.resolved_ns,
        }


@dataclass(frozen=True, slots=True)
class Change:
    """A finding that opened or was resolved: what the hub announces and stores."""

    ref: DeviceRef
    finding: Finding
    opened: bool


@dataclass(slots=True)
class Check:
    ok: bool | None = None
    at_ns: int | None = None
    evidence: str = ""


@dataclass(slots=True)
class DeviceDoctor:
    """What the doctor knows of one device."""

    ref: DeviceRef
    findings: dict[str, Finding] = field(default_factory=dict)
    checks: dict[str, Check] = field(default_factory=lambda: {name: Check() for name in dx.CHECKLIST})
    connects: deque[int] = field(default_factory=deque)
    collisions: deque[int] = field(default_factory=deque)
    unclean_at: int | None = None  # an unclean end waiting for its will's `offline` status
    unclean_line: str = ""
    last_by_topic: dict[str, int] = field(default_factory=dict)
    fast_run: int = 0
    readings: int = 0
    same: dict[str, list[Any]] = field(default_factory=dict)  # field → [value, since_ns, count]
    stuck_field: str | None = None  # the field of the open stuck_sensor finding
    stuck_next_ns: int = 0

    def check(self, name: str, ok: bool, now: int, evidence: str) -> None:
        item = self.checks[name]
        if item.ok is not ok:
            item.ok, item.at_ns = ok, now
        item.evidence = evidence[:200]

    def open_findings(self) -> list[Finding]:
        return [f for f in self.findings.values() if f.open]
