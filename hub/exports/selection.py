"""What an export holds: a `Selection` of devices (one device, a learner's, a demo session's or a cohort's) over a
time window, raw or downsampled in InfluxDB. Pure: building one from registry rows and parsing the window and the
interval as people type them (`from=2026-11-01T08:00:00Z`, `every=1m`)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from devices.kinds import KINDS, DeviceKind
from devices.topics import DeviceRef

MAX_WINDOW_S = 400 * 86400  # a course is shorter; past this a typo (ms for s) is likelier than a wish
DEFAULT_WINDOW_S = 86400  # no `from`: the last day
LAST_NS = 2**63 - 2  # InfluxDB's largest time
_EVERY = re.compile(r"(\d{1,7})(s|m|h|d)?")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Aggregate(StrEnum):
    """What one downsampling interval keeps of each numeric field."""

    MEAN = "mean"
    MIN = "min"
    MAX = "max"


@dataclass(frozen=True, slots=True)
class Target:
    """One device of an export, with its kind; readings before `since_ns` (its registration) belong to an earlier
    device of the same name and are left out."""

    ref: DeviceRef
    kind: DeviceKind
    since_ns: int = 0

    @property
    def measurement(self) -> str:
        return self.kind.measurement_for(self.ref.cohort, self.ref.learner)


@dataclass(frozen=True, slots=True)
class Selection:
    """Devices over [start_ns, end_ns); `every_s` set: one row per interval and device, `agg` of each numeric
    field. `label` names the files (`readings-<label>.csv`)."""

    targets: tuple[Target, ...]
    start_ns: int
    end_ns: int
    every_s: int | None = None
    agg: Aggregate = Aggregate.MEAN
    label: str = "readings"

    def __post_init__(self) -> None:
        if not self.start_ns < self.end_ns:
            raise ValueError("the window must end after it starts (from < to)")
        if self.every_s is not None and self.every_s < 1:
            raise ValueError("every: at least one second")


def target_of(ref: DeviceRef, kind: str, since_ns: int = 0) -> Target | None:
    """A device of a known kind (None: a kind this hub no longer knows, which has no schema to export with)."""
    known = KINDS.get(kind)
    return Target(ref, known, since_ns) if known is not None else None


def targets_of(devices: Iterable[tuple[DeviceRef, str, int]]) -> tuple[Target, ...]:
    """Targets from (ref, kind, registered at) rows, sorted by device id; unknown kinds left out."""
    found = [target_of(ref, kind, since) for ref, kind, since in devices]
    return tuple(sorted((t for t in found if t is not None), key=lambda t: t.ref.key))


def parse_time(text: str) -> int:
    """A moment as Unix seconds (`1764288000`, `1764288000.5`) or ISO-8601 (`2026-11-28T08:00:00Z`; no zone:
    UTC), in ns, between 1970 and 2262 (InfluxDB's times are signed 64-bit ns)."""
    ns = _parse_time(text)
    if not 0 <= ns < LAST_NS:
        raise ValueError(f"{text[:40]!r} is outside 1970–2262")
    return ns


def _parse_time(text: str) -> int:
    text = text.strip()
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if math.isfinite(seconds):
        if not math.isfinite(seconds * 1e9):  # 1e300 s: no integer of ns (round() would raise OverflowError)
            raise ValueError(f"{text[:40]!r} is outside 1970–2262")
        return round(seconds * 1e9)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00") if text.endswith("Z") else text)
    except ValueError:
        raise ValueError(f"{text[:40]!r} is neither Unix seconds nor an ISO-8601 time") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1000


def parse_every(text: str) -> int:
    """An interval as `30s`, `1m`, `1h`, `1d` or whole seconds."""
    match = _EVERY.fullmatch(text.strip())
    if match is None or int(match[1]) == 0:
        raise ValueError(f"every: {text[:20]!r} is not an interval like 30s, 1m, 1h or 1d")
    return int(match[1]) * _UNIT_S[match[2] or "s"]


def parse_window(start: str | None, end: str | None, now_ns: int) -> tuple[int, int]:
    """[from, to) in ns: `to` defaults to now, `from` to a day before `to`; at most MAX_WINDOW_S long."""
    end_ns = parse_time(end) if end else now_ns
    start_ns = parse_time(start) if start else end_ns - DEFAULT_WINDOW_S * 1_000_000_000
    if not start_ns < end_ns:
        raise ValueError("the window must end after it starts (from < to)")
    if end_ns - start_ns > MAX_WINDOW_S * 1_000_000_000:
        raise ValueError(f"the window is at most {MAX_WINDOW_S // 86400} days")
    return start_ns, end_ns
