"""InfluxDB line protocol encoding. Pure.

The series prefix (measurement and tags) is computed once per device; per reading only the fields and
the timestamp are formatted. Escaping follows the line-protocol reference: commas, spaces and equals
signs in tag keys/values and field keys, commas and spaces in measurements, quotes and backslashes in
string field values, and control characters everywhere (as visible text: see _CONTROLS).
"""

from __future__ import annotations

from collections.abc import Mapping

# Line protocol has no escape for a line break: one in a name or a value would end the point and start
# another, named by the sender. Control characters are written as visible text instead (a backslash makes
# InfluxDB's scanner skip the character after it, so `\n` can never break a line or a section).
# A backslash in a name is written `\x5c`: InfluxDB 1.x reads `\\,` in a name as a backslash and an
# escaped comma, and a trailing `\\` before a space as a broken tag, so doubling it is not safe there.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), 127)} | {10: "\\n", 13: "\\r", 9: "\\t"}
_MEASUREMENT_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "\\": "\\x5c", **_CONTROLS})
_KEY_ESCAPES = str.maketrans({",": "\\,", " ": "\\ ", "=": "\\=", "\\": "\\x5c", **_CONTROLS})
_STRING_ESCAPES = str.maketrans({'"': '\\"', "\\": "\\\\", **_CONTROLS})


def escape_measurement(name: str) -> str:
    return name.translate(_MEASUREMENT_ESCAPES)


def escape_key(name: str) -> str:
    """Tag keys, tag values and field keys share one escaping rule."""
    return name.translate(_KEY_ESCAPES)


def series_prefix(measurement: str, tags: Mapping[str, str]) -> str:
    """`measurement,tag=value,… ` with tags sorted by key (InfluxDB's preferred order), trailing space."""
    parts = [escape_measurement(measurement)]
    parts.extend(f"{escape_key(k)}={escape_key(tags[k])}" for k in sorted(tags))
    return ",".join(parts) + " "


def format_value(value: float | int | bool | str) -> str:
    """One field value; ints are taken as InfluxDB integers, so callers pass floats for float fields."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return f"{value}i"
    return '"' + value.translate(_STRING_ESCAPES) + '"'


def encode_floats(prefix: str, fields: Mapping[str, float], timestamp_ns: int) -> str:
    """encode_line for readings of fixed kinds, whose fields are schema names holding floats (the hot path)."""
    return f"{prefix}{','.join([f'{k}={v!r}' for k, v in fields.items()])} {timestamp_ns}"


def encode_line(prefix: str, fields: Mapping[str, float | int | bool | str], timestamp_ns: int) -> str:
    """One point: `prefix` from series_prefix, then fields and a nanosecond timestamp.

    This is on the hot path, so the type dispatch is inlined; keys are escaped only when they need it
    (validated names never do).
    """
    parts = []
    for key, value in fields.items():
        if not key.isidentifier():
            key = escape_key(key)
        kind = type(value)
        if kind is float:
            parts.append(f"{key}={value!r}")
        elif kind is bool:
            parts.append(f"{key}={'true' if value else 'false'}")
        elif kind is int:
            parts.append(f"{key}={value}i")
        else:
            parts.append(f"{key}={format_value(value)}")
    return f"{prefix}{','.join(parts)} {timestamp_ns}"
