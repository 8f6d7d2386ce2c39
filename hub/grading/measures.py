"""The measures a rubric's criteria name: each a pure function of a device's evidence `Window` and the
criterion's parameters, giving a value (None: not applicable, the evidence does not exist in the window) and the
evidence behind it, so a trainer or a learner can check the number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

from hub.grading.evidence import Command, Window

PRESENCE_TIMEOUT_S = 30.0  # without presence messages, a device is online while it sends this often

Measure = Callable[[Window, Mapping[str, Any]], tuple[float | None, dict[str, Any]]]
MEASURES: dict[str, Measure] = {}


def measure(name: str) -> Callable[[Measure], Measure]:
    def register(fn: Measure) -> Measure:
        MEASURES[name] = fn
        return fn

    return register


@measure("reading_rate")
def reading_rate(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Readings stored, as a share of what the declared period promises over the window."""
    period = float(p.get("period_s", 1.0))
    expected = w.seconds / period
    return len(w.readings) / expected, {
        "readings": len(w.readings),
        "window_s": round(w.seconds, 3),
        "period_s": period,
        "expected": round(expected, 1),
    }


@measure("longest_gap")
def longest_gap(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """The longest stretch of the window without a reading (the window's edges count)."""
    times = [w.start_ns, *sorted(t for t, _ in w.readings), w.end_ns]
    gap, at = max((b - a, a) for a, b in itertools.pairwise(times))
    return gap / 1e9, {"longest_gap_s": round(gap / 1e9, 3), "from_ns": at, "to_ns": at + gap}


@measure("valid_share")
def valid_share(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Stored readings among everything the device sent (stored + rejected)."""
    total = len(w.readings) + len(w.rejections)
    if not total:
        return None, {"readings": 0, "rejections": 0, "note": "nothing sent in the window"}
    return len(w.readings) / total, {"readings": len(w.readings), "rejections": len(w.rejections)}


@measure("rejections")
def rejections(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Messages the hub refused, by reason."""
    codes: dict[str, int] = {}
    for _, code in w.rejections:
        codes[code] = codes.get(code, 0) + 1
    return float(len(w.rejections)), {"rejections": len(w.rejections), "by_code": codes}


def _numbers(w: Window, name: str) -> list[float]:
    """The field's numeric values in time order (InfluxDB's JSON gives 40.0 back as 40)."""
    values = []
    for _, f in sorted(w.readings, key=lambda r: r[0]):
        v = f.get(name)
        if isinstance(v, int | float) and not isinstance(v, bool):
            values.append(float(v))
    return values


@measure("plausible_share")
def plausible_share(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Readings whose `field` lies in the rubric's plausible range (tighter than the sensor's own limits)."""
    name = str(p.get("field", ""))
    values = _numbers(w, name)
    if not values:
        return None, {"field": name, "readings_with_field": 0}
    low, high = float(p.get("min", -math.inf)), float(p.get("max", math.inf))
    inside = sum(1 for v in values if low <= v <= high)
    return inside / len(values), {
        "field": name,
        "plausible": inside,
        "readings_with_field": len(values),
        "range": [low, high],
    }


@measure("stuck_run")
def stuck_run(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """The longest run of identical consecutive values of `field` (a frozen sensor repeats itself)."""
    name = str(p.get("field", ""))
    values = _numbers(w, name)
    if not values:
        return None, {"field": name, "readings_with_field": 0}
    longest = run = 1
    for a, b in itertools.pairwise(values):
        run = run + 1 if a == b else 1
        longest = max(longest, run)
    return float(longest), {"field": name, "longest_identical_run": longest, "readings_with_field": len(values)}


def _starts(w: Window) -> list[int]:
    """When the device came online: an online status after an offline one (or its first status at all)."""
    starts, state = [], None
    for t, online in sorted(w.presence):
        if online and state is not True:
            starts.append(t)
        state = online
    return starts


@measure("warmup_artefacts")
def warmup_artefacts(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Readings with the SGP30's warm-up values (eCO2 400 ppm and TVOC 0 ppb together) in the first
    `warmup_s` (15) seconds after the device came online: firmware should hold these back. (Clean air later
    can read 400/0 too, so only the warm-up after a (re)start counts.)"""
    warmup = int(float(p.get("warmup_s", 15.0)) * 1e9)
    pairs = [(t, f.get("eco2"), f.get("tvoc")) for t, f in w.readings if "eco2" in f and "tvoc" in f]
    if not pairs:
        return None, {"readings_with_eco2_and_tvoc": 0}
    starts = _starts(w)
    if not starts:
        return None, {"note": "the device publishes no status: its (re)starts cannot be seen"}
    count = sum(
        1 for t, eco2, tvoc in pairs if eco2 == 400.0 and tvoc == 0.0 and any(s <= t < s + warmup for s in starts)
    )
    return float(count), {"warmup_readings": count, "starts_seen": len(starts), "warmup_s": warmup / 1e9}


def _online_intervals(w: Window) -> tuple[float, int, str]:
    """(seconds online in the window, reconnects, source of the answer)."""
    events = sorted(w.presence)
    if events:
        online_s, reconnects = 0.0, 0
        state: bool | None = None  # unknown until the first status
        since = w.start_ns
        for t, online in events:
            if t >= w.end_ns:
                break
            t = max(t, w.start_ns)
            if state:
                online_s += (t - since) / 1e9
            if online and state is False and t > w.start_ns:  # back after being seen offline
                reconnects += 1
            state, since = online, t
        if state:
            online_s += (w.end_ns - since) / 1e9
        return online_s, reconnects, "presence"
    timeout = int(PRESENCE_TIMEOUT_S * 1e9)
    covered = 0
    last_end = w.start_ns
    for t in sorted(t for t, _ in w.readings):
        begin, end = max(t, last_end), min(t + timeout, w.end_ns)
        if end > begin:
            covered += end - begin
            last_end = end
    return covered / 1e9, 0, "readings"


@measure("online_share")
def online_share(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Time online in the window (from its status messages; without them, from its readings)."""
    online_s, _, source = _online_intervals(w)
    return online_s / w.seconds, {"online_s": round(online_s, 3), "window_s": round(w.seconds, 3), "from": source}


@measure("reconnects")
def reconnects(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Times the device came back online during the window (its status went offline, then online)."""
    _, count, source = _online_intervals(w)
    if source != "presence":
        return None, {"note": "the device publishes no status: reconnects cannot be seen"}
    return float(count), {"reconnects": count}


def _findings(w: Window, p: Mapping[str, Any]) -> dict[str, list[tuple[int, bool]]]:
    """The lab doctor's stored changes by code: (time, open) in time order. Errors only, unless `warnings` is
    true: a warning (publishing fast, a stuck value) is advice, an error (a wrong password, a foreign topic, a
    cut payload) is something that does not work."""
    severities = {"error", "warning"} if p.get("warnings") else {"error"}
    by_code: dict[str, list[tuple[int, bool]]] = {}
    for t, f in sorted(w.diagnoses, key=lambda d: d[0]):
        if f.get("severity") in severities:
            by_code.setdefault(str(f.get("code")), []).append((t, f.get("open") is True))
    return by_code


@measure("findings_open")
def findings_open(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """The lab doctor's findings still open at the window's end (the demo): each code's last stored change."""
    by_code = _findings(w, p)
    if not by_code:
        return None, {"note": "the lab doctor found nothing of this severity for this device"}
    still = sorted(code for code, changes in by_code.items() if changes[-1][1])
    return float(len(still)), {"open_at_end": still, "codes_seen": sorted(by_code)}


@measure("findings_resolved")
def findings_resolved(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Of the lab doctor's findings during the course (up to the window's end), the share resolved since."""
    by_code = _findings(w, p)
    if not by_code:
        return None, {"note": "the lab doctor found nothing of this severity for this device"}
    resolved = sorted(code for code, changes in by_code.items() if not changes[-1][1])
    return len(resolved) / len(by_code), {"resolved": resolved, "found": sorted(by_code)}


def _sent(w: Window) -> list[Command]:
    return [c for c in w.commands if c.state != "refused"]


@measure("commands_done")
def commands_done(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Commands that reached `done`, among those sent to the device."""
    sent = _sent(w)
    by_state: dict[str, int] = {}
    for c in w.commands:
        by_state[c.state] = by_state.get(c.state, 0) + 1
    if not sent:
        return None, {"sent": 0, "by_state": by_state}
    done = sum(1 for c in sent if c.state == "done")
    return done / len(sent), {"done": done, "sent": len(sent), "by_state": by_state}


@measure("latency_p95")
def latency_p95(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """95th percentile of request → accepted by the device (ms)."""
    values = sorted(c.accepted_ms for c in w.commands if c.accepted_ms is not None)
    if not values:
        return None, {"accepted": 0}
    rank = max(0, math.ceil(0.95 * len(values)) - 1)  # nearest-rank percentile
    return values[rank], {"p95_ms": values[rank], "accepted": len(values), "max_ms": values[-1]}


@measure("pose_reached")
def pose_reached(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Finished moves whose final pose is within `tolerance_deg` of the targets."""
    tolerance = float(p.get("tolerance_deg", 1.0))
    errors = [c.pose_error_deg for c in w.commands if c.pose_error_deg is not None]
    if not errors:
        return None, {"finished_moves": 0}
    reached = sum(1 for e in errors if e <= tolerance)
    return reached / len(errors), {
        "reached": reached,
        "finished_moves": len(errors),
        "tolerance_deg": tolerance,
        "worst_error_deg": round(max(errors), 3),
    }


@measure("unsafe_refused")
def unsafe_refused(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Unsafe commands stopped before reaching the arm (refused by the hub) rather than attempted and
    rejected by the device."""
    refused = sum(1 for c in w.commands if c.state == "refused")
    rejected = sum(1 for c in w.commands if c.state == "rejected")
    if not refused + rejected:
        return None, {"refused": 0, "rejected_by_device": 0, "note": "no unsafe command was tried"}
    return refused / (refused + rejected), {"refused": refused, "rejected_by_device": rejected}


@measure("stop_honoured")
def stop_honoured(w: Window, p: Mapping[str, Any]) -> tuple[float | None, dict[str, Any]]:
    """Stops that reached `done` within `within_ms`."""
    within = float(p.get("within_ms", 1000.0))
    stops = [c for c in w.commands if c.type == "stop" and c.state != "refused"]
    if not stops:
        return None, {"stops": 0, "note": "no stop was sent"}
    honoured = sum(1 for c in stops if c.state == "done" and c.finished_ms is not None and c.finished_ms <= within)
    return honoured / len(stops), {"honoured": honoured, "stops": len(stops), "within_ms": within}
