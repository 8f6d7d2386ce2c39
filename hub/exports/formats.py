"""Rows as bytes: CSV (RFC 4180: comma, double quotes, CRLF; a header with each field's unit) and JSON Lines.
Pure functions over rows (dicts of `time_ns`, `cohort`, `learner`, `device` and fields) and their columns.

The columns are decided before the first row (a stream cannot go back to widen its header): every field of the
selection's kinds in schema order, then fields InfluxDB holds beyond them (open kinds' own names), sorted. Each
value is written as its column's type says, so a float that InfluxDB's JSON gave as `21` is `21.0` and pandas reads
the column as float64.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hub.exports.selection import Selection

TAGS = ("cohort", "learner", "device")
NUMERIC = frozenset({"float", "integer"})


@dataclass(frozen=True, slots=True)
class Column:
    """A field's column: its name, unit (from the kind's schema; "" when unknown) and InfluxDB type."""

    name: str
    unit: str
    type: str  # float | integer | boolean | string

    @property
    def title(self) -> str:
        """The CSV header cell: `pm2_5 [µg/m³]`, or the bare name when the field has no unit."""
        return f"{self.name} [{self.unit}]" if self.unit else self.name


def columns_of(selection: Selection, field_types: Mapping[tuple[str, str], str]) -> list[Column]:
    """The field columns of a selection: schema fields first, then the others InfluxDB holds for its measurements.
    Downsampled, only numeric fields (a mean of text means nothing), and a mean is a float."""
    found: dict[str, Column] = {}
    for target in selection.targets:
        for spec in target.kind.fields.values():
            found.setdefault(spec.name, Column(spec.name, spec.unit, str(spec.type)))
    extra: dict[str, str] = {}
    measurements = {t.measurement for t in selection.targets}
    for (measurement, name), kind in sorted(field_types.items()):
        if measurement in measurements and name not in found:
            extra[name] = kind if extra.get(name, kind) == kind else "string"  # two types: text holds both
    columns = list(found.values()) + [Column(name, "", extra[name]) for name in sorted(extra)]
    if selection.every_s is None:
        return columns
    mean = selection.agg == "mean"
    return [Column(c.name, c.unit, "float" if mean else c.type) for c in columns if c.type in NUMERIC]


def iso_utc(ns: int) -> str:
    """`2026-11-28T08:00:00.123456789Z`: UTC, to the nanosecond InfluxDB keeps."""
    seconds, fraction = divmod(ns, 1_000_000_000)
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{fraction:09d}Z"


def _cell(value: Any, kind: str) -> str:
    if value is None:
        return ""
    if kind == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        return repr(float(value))
    if kind == "integer" and isinstance(value, int | float) and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _value(value: Any, kind: str) -> Any:
    if kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def csv_header(columns: Iterable[Column]) -> bytes:
    return _csv([["time_utc", "time_ns", *TAGS, *(c.title for c in columns)]])


def csv_rows(rows: Iterable[Mapping[str, Any]], columns: list[Column]) -> bytes:
    lines = []
    for row in rows:
        ns = int(row["time_ns"])
        fields = [_cell(row.get(c.name), c.type) for c in columns]
        lines.append([iso_utc(ns), str(ns), *(str(row.get(tag, "")) for tag in TAGS), *fields])
    return _csv(lines)


def _csv(lines: list[list[str]]) -> bytes:
    text = io.StringIO()
    csv.writer(text, lineterminator="\r\n").writerows(lines)
    return text.getvalue().encode()


def jsonl_rows(rows: Iterable[Mapping[str, Any]], columns: list[Column]) -> bytes:
    """One JSON object a line: time_utc, time_ns, the tags, then the fields present in that row."""
    out = []
    for row in rows:
        ns = int(row["time_ns"])
        line: dict[str, Any] = {"time_utc": iso_utc(ns), "time_ns": ns, **{tag: row.get(tag, "") for tag in TAGS}}
        line |= {c.name: _value(row[c.name], c.type) for c in columns if row.get(c.name) is not None}
        out.append(json.dumps(line, ensure_ascii=False, separators=(",", ":")) + "\n")
    return "".join(out).encode()
