"""Validation of a decoded reading against its device kind. Pure: no clock, no I/O, no mutation.

Policy (documented in the README): a reading is all or nothing. If any field is wrong the whole reading
is refused and every problem found is reported, so the stored data never holds half a measurement.

Numbers from JSON and bare values are stored as floats (a board that sends 21 then 21.5 is not
punished for it); line-protocol integers (`42i`) are stored as integers.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from devices.decode import Decoded, Source
from devices.kinds import (
    FIELD_NAME_RE,
    MAX_DISTINCT_FIELDS,
    MAX_FIELDS,
    MAX_STRING_LENGTH,
    RESERVED_NAMES,
    DeviceKind,
    FieldType,
)
from devices.problems import PayloadRejected, Problem

INT64_MIN = -(2**63)
INT64_MAX = 2**63 - 1
FieldValue = float | int | bool | str

# Names beginners type for the air-quality fields.
ALIASES = {
    "temp": "temperature",
    "hum": "humidity",
    "humid": "humidity",
    "press": "pressure",
    "voc": "tvoc",
    "pm2": "pm2_5",
}


@dataclass(frozen=True, slots=True)
class Limits:
    """How far a device timestamp may be from the hub's clock."""

    past_ns: int = 30 * 86400 * 10**9
    future_ns: int = 10 * 60 * 10**9


DEFAULT_LIMITS = Limits()


@dataclass(slots=True)  # not frozen: one per message, and frozen construction costs 3.5x
class Reading:
    """A valid reading: typed fields and the device's timestamp in ns (None → stamp on receipt).

    `types` lists the InfluxDB type of each field of open kinds, for type pinning; fixed kinds' types
    come from their schema and are not repeated here. Empty `types` means every value is a float under a
    name already checked (a fixed kind's reading, or an open kind's that brings no new name or type).
    """

    fields: dict[str, FieldValue]
    types: dict[str, FieldType]
    timestamp_ns: int | None


def validate(
    kind: DeviceKind,
    decoded: Decoded,
    now_ns: int,
    pinned: Mapping[str, FieldType],
    limits: Limits = DEFAULT_LIMITS,
    names: Collection[str] = (),
) -> Reading:
    """Check every field and the timestamp; raise PayloadRejected listing all problems.

    `names`: the field names this device (of an open kind) already used; at most MAX_DISTINCT_FIELDS in all."""
    values = decoded.values
    if not kind.open_fields:
        if decoded.timestamp is None and _all_plain(kind.bounds, values):
            return Reading(values, _NO_TYPES, None)  # type: ignore[arg-type]
    elif decoded.source is Source.JSON:
        known = _known_numbers(pinned, names, values)
        if known is not None:
            timestamp_ns, problem = (
                (None, None) if decoded.timestamp is None else _check_timestamp(decoded.timestamp, now_ns, limits)
            )
            if problem is None:
                return Reading(known, _NO_TYPES, timestamp_ns)
    problems: list[Problem] = []
    fields: dict[str, FieldValue] = {}
    types: dict[str, FieldType] = {}
    if not values:
        problems.append(Problem("empty_reading"))
    elif len(values) > MAX_FIELDS:
        problems.append(Problem("too_many_fields", params={"size": len(values), "limit": MAX_FIELDS}))
    elif kind.open_fields:
        for name, value in values.items():
            problem = _check_open_field(name, value, decoded.source, pinned, fields, types)
            if problem is not None:
                problems.append(problem)
        new = [name for name in fields if name not in names]
        room = MAX_DISTINCT_FIELDS - len(names)
        if len(new) > room:
            first = new[max(0, room)]
            problems.append(Problem("too_many_distinct_fields", first, fields[first], {"limit": MAX_DISTINCT_FIELDS}))
    else:
        for name, value in values.items():
            problem = _check_kind_field(kind, name, value, fields)
            if problem is not None:
                problems.append(problem)
    timestamp_ns = None
    if decoded.timestamp is not None:
        timestamp_ns, problem = _check_timestamp(decoded.timestamp, now_ns, limits)
        if problem is not None:
            problems.append(problem)
    if problems:
        raise PayloadRejected(problems)
    return Reading(fields, types, timestamp_ns)


_NO_TYPES: dict[str, FieldType] = {}


def _all_plain(bounds: Mapping[str, tuple[float, float]], values: dict[str, object]) -> bool:
    """The hot path: every field known, a float, and in range (NaN fails the comparison), at most MAX_FIELDS."""
    if not values or len(values) > MAX_FIELDS:
        return False
    for name, value in values.items():
        limits = bounds.get(name)
        if limits is None or type(value) is not float or not limits[0] <= value <= limits[1]:
            return False
    return True


_FLOAT = FieldType.FLOAT  # an enum member read through its class costs a lookup per field on the hot path
_INF = math.inf


def _known_numbers(
    pinned: Mapping[str, FieldType], names: Collection[str], values: dict[str, object]
) -> dict[str, FieldValue] | None:
    """The hot path of open kinds: when every field is one this device already stored as a float, and a finite
    JSON number, the values as floats (`values` itself when they all are); otherwise None.

    Such a reading adds no name and no type, so its `types` stay empty."""
    if not values or len(values) > MAX_FIELDS:
        return None
    get = pinned.get
    ints = False
    for name, value in values.items():
        if get(name) is not _FLOAT or name not in names:
            return None
        kind = type(value)
        if kind is float:
            if not -_INF < value < _INF:  # type: ignore[operator]  # NaN fails the comparison too
                return None
        elif kind is int and INT64_MIN <= value <= INT64_MAX:  # type: ignore[operator]
            ints = True
        else:
            return None
    return {name: float(value) for name, value in values.items()} if ints else values  # type: ignore[arg-type, return-value]


def _check_kind_field(kind: DeviceKind, name: str, value: object, fields: dict[str, FieldValue]) -> Problem | None:
    spec = kind.fields.get(name)
    if spec is None:
        suggestion = suggest_field(name, kind)
        params: dict[str, object] = {"kind": kind.name, "known": ", ".join(kind.fields)}
        if suggestion:
            params["suggestion"] = suggestion
            return Problem("unknown_field_suggest", name, value, params)
        return Problem("unknown_field", name, value, params)
    number, problem = _number(name, value)
    if problem is not None:
        return problem
    assert number is not None
    if not spec.minimum <= number <= spec.maximum:
        return Problem(
            "out_of_range",
            name,
            value,
            {"minimum": _fmt(spec.minimum), "maximum": _fmt(spec.maximum), "unit": spec.unit, "sensor": spec.sensor},
        )
    fields[name] = number
    return None


def _number(name: str, value: object) -> tuple[float | None, Problem | None]:
    """A JSON/bare number as a finite float, or the problem with it."""
    if isinstance(value, bool):
        return None, Problem("wrong_type", name, value, {"expected": "number", "got": "boolean"})
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return None, Problem("integer_too_large", name, value)
        return float(value), None
    if isinstance(value, float):
        if not math.isfinite(value):
            return None, Problem("not_finite", name, value)
        return value, None
    if isinstance(value, str):
        try:
            parsed = float(value.strip())
        except ValueError:
            return None, Problem("wrong_type", name, value, {"expected": "number", "got": "string"})
        if math.isfinite(parsed):
            return None, Problem("number_as_string", name, value)
        return None, Problem("wrong_type", name, value, {"expected": "number", "got": "string"})
    return None, Problem("wrong_type", name, value, {"expected": "number", "got": _json_type(value)})


def _check_open_field(
    name: str,
    value: object,
    source: Source,
    pinned: Mapping[str, FieldType],
    fields: dict[str, FieldValue],
    types: dict[str, FieldType],
) -> Problem | None:
    if not FIELD_NAME_RE.fullmatch(name):
        return Problem("bad_field_name", name, value, {"suggestion": sanitize_name(name)})
    if name in RESERVED_NAMES:
        return Problem("reserved_field_name", name, value)
    typed: FieldValue
    if isinstance(value, bool):
        typed, ftype = value, FieldType.BOOLEAN
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            return Problem("integer_too_large", name, value)
        if source is Source.LINE:
            typed, ftype = value, FieldType.INTEGER
        else:
            typed, ftype = float(value), FieldType.FLOAT
    elif isinstance(value, float):
        if not math.isfinite(value):
            return Problem("not_finite", name, value)
        typed, ftype = value, FieldType.FLOAT
    elif isinstance(value, str):
        if len(value) > MAX_STRING_LENGTH:
            return Problem("string_too_long", name, value, {"size": len(value), "limit": MAX_STRING_LENGTH})
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            return Problem("control_character", name, value)
        typed, ftype = value, FieldType.STRING
    else:
        return Problem("wrong_type", name, value, {"expected": "number, boolean or string", "got": _json_type(value)})
    before = pinned.get(name)
    if before is not None and before is not ftype:
        return Problem("type_changed", name, value, {"pinned": before.value, "got": ftype.value})
    fields[name] = typed
    types[name] = ftype
    return None


def _check_timestamp(raw: object, now_ns: int, limits: Limits) -> tuple[int | None, Problem | None]:
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        return None, Problem("timestamp_invalid", "ts", raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        return None, Problem("timestamp_invalid", "ts", raw)
    ns, unit = timestamp_to_ns(raw)
    if not now_ns - limits.past_ns <= ns <= now_ns + limits.future_ns:
        code = "timestamp_since_boot" if 0 <= raw < 10**9 else "timestamp_out_of_range"
        return None, Problem(code, "ts", raw, {"unit": unit, "as_date": _iso(ns), "now": _iso(now_ns)})
    return ns, None


def timestamp_to_ns(raw: int | float) -> tuple[int, str]:
    """Epoch seconds, milliseconds, microseconds or nanoseconds, told apart by magnitude.

    Today is ~1.7e9 s = ~1.7e12 ms = ~1.7e15 µs = ~1.7e18 ns, so the ranges do not overlap for any
    date between 1973 and 5138.
    """
    magnitude = abs(raw)
    if magnitude < 1e11:
        unit, to_ns = "s", 10**9
    elif magnitude < 1e14:
        unit, to_ns = "ms", 10**6
    elif magnitude < 1e17:
        unit, to_ns = "us", 10**3
    else:
        return int(raw), "ns"
    if isinstance(raw, int):
        return raw * to_ns, unit
    # A float carries ~16 significant digits: scale to whole microseconds first, so 1700000000.25 s
    # becomes exactly ...250000000 ns rather than ...249999872.
    return round(raw * (to_ns // 1000)) * 1000, unit


def suggest_field(name: str, kind: DeviceKind) -> str | None:
    """The field the learner probably meant: same letters without separators, an alias, or a close spelling."""
    wanted = _squash(name)
    for known in kind.fields:
        if _squash(known) == wanted:
            return known
    alias = ALIASES.get(name.lower())
    if alias in kind.fields:
        return alias
    close = difflib.get_close_matches(name.lower(), list(kind.fields), n=1, cutoff=0.6)
    return close[0] if close else None


def sanitize_name(name: str) -> str:
    """A valid field name close to `name` (for hints)."""
    cleaned = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in name).strip("_")
    if not cleaned or not cleaned[0].isalpha():
        cleaned = "f_" + cleaned
    return cleaned[:64]


def _squash(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    return type(value).__name__


def _fmt(value: float) -> str:
    if math.isfinite(value):
        return f"{value:g}"
    return "∞" if value > 0 else "−∞"


def _iso(ns: int) -> str:
    try:
        return datetime.fromtimestamp(ns / 1e9, tz=UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return "out of calendar"
