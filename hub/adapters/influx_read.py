"""One way to read InfluxDB: the `Reader` protocol with every read the hub makes (grading evidence, the
dashboard's overview, last values and history, the field types held), whatever the backend.

Every backend reads with InfluxQL over `/query` (`InfluxQLReader`, the queries built in `hub.adapters.influxql`):
1.x natively, 2.x through its 1.x compatibility API (a database mapped to the bucket), 3.x as it serves InfluxQL.
A backend that could not read would raise `ReadNotSupported` from `check_readable` (handlers answer 501).
Readings come back as (time in ns, fields), tags and missing (null) fields left out.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from devices.kinds import DeviceKind
from devices.topics import DeviceRef
from hub.adapters import influxql

FieldValue = float | bool | str  # InfluxDB's JSON gives integers as int (a float to the type checker)
Reading = tuple[int, dict[str, FieldValue]]  # (time in ns, fields)
DeviceKey = tuple[str, str]  # (learner, device) within a cohort
HistoryRow = tuple[int, Any, Any, Any]  # (interval start in ns, mean, min, max); None for an empty interval


class ReadNotSupported(Exception):
    """This backend cannot answer reads (HTTP 501); every backend the hub has today can."""


class Reader(Protocol):
    def check_readable(self) -> None:
        """Raise ReadNotSupported now if reads cannot work on this backend (before any other check)."""

    async def field_types(self) -> dict[tuple[str, str], str]:
        """Every field's type, by (measurement, field)."""
        ...

    async def readings(self, measurement: str, ref: DeviceRef, start_ns: int, end_ns: int) -> list[Reading]: ...

    async def rejections(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[tuple[int, str]]:
        """(time, code) of each message the hub refused."""
        ...

    async def presence(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[tuple[int, bool]]:
        """(time, online) of each status in the window, after the last one before it (if any)."""
        ...

    async def commands(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[Reading]: ...

    async def latest(self, measurement: str, ref: DeviceRef, since_ns: int) -> Reading | None: ...

    async def history(
        self, measurement: str, ref: DeviceRef, field: str, since_ns: int, end_ns: int, interval_s: int
    ) -> list[HistoryRow]: ...

    async def latest_by_device(
        self, kinds: Iterable[DeviceKind], cohort: str, learner: str | None = None
    ) -> list[tuple[DeviceKey, Reading]]:
        """Each device's last reading, kind by kind (in the order of their sources): a device found under two
        kinds appears twice, the later one last."""
        ...

    async def sparklines(
        self, wanted: Iterable[tuple[DeviceKind, str]], cohort: str, seconds: int, interval_s: int
    ) -> list[tuple[str, DeviceKey, list[tuple[int, float]]]]:
        """For each (kind, field): (field, device, [(interval start, mean)]) over the last `seconds`, empty
        intervals left out; in the order of (source, field)."""
        ...


def _rows(series: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for s in series:
        columns = s.get("columns", [])
        rows += [dict(zip(columns, values, strict=False)) for values in s.get("values", [])]
    return rows


def _reading(row: dict[str, Any]) -> Reading:
    return int(row["time"]), {k: v for k, v in row.items() if k not in influxql.TAG_COLUMNS and v is not None}


def _key(series: dict[str, Any]) -> DeviceKey:
    tags = series.get("tags", {})
    return tags.get("learner", ""), tags.get("device", "")


class InfluxQLReader(ABC):
    """The reads in InfluxQL, over whatever runs a query (`/query` on 1.x, 2.x and 3.x)."""

    policies: Mapping[str, str] = {}  # cohort → the retention policy holding its points, when not the default

    @abstractmethod
    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL; return the `series` of the first statement (times in ns)."""

    def qualified(self, q: str, cohort: str) -> str:
        """A query built by `hub.adapters.influxql`, reading from the cohort's retention policy if it has one."""
        policy = self.policies.get(cohort)
        return q if policy is None else influxql.in_policy(q, policy)

    def check_readable(self) -> None:
        return None

    async def field_types(self) -> dict[tuple[str, str], str]:
        series = await self.query(influxql.FIELD_KEYS)
        return {(s["name"], row[0]): row[1] for s in series for row in s.get("values", [])}

    async def readings(self, measurement: str, ref: DeviceRef, start_ns: int, end_ns: int) -> list[Reading]:
        q = self.qualified(influxql.readings_query(measurement, ref, start_ns, end_ns), ref.cohort)
        rows = _rows(await self.query(q))
        return [_reading(row) for row in rows]

    async def rejections(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[tuple[int, str]]:
        rows = _rows(await self.query(self.qualified(influxql.rejections_query(ref, start_ns, end_ns), ref.cohort)))
        return [(int(r["time"]), str(r.get("code"))) for r in rows]

    async def presence(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[tuple[int, bool]]:
        before = _rows(await self.query(self.qualified(influxql.presence_before_query(ref, start_ns), ref.cohort)))
        statuses = [(int(r["time"]), bool(r["last"])) for r in before if r.get("last") is not None]
        rows = _rows(await self.query(self.qualified(influxql.presence_query(ref, start_ns, end_ns), ref.cohort)))
        return statuses + [(int(r["time"]), bool(r["online"])) for r in rows]

    async def commands(self, ref: DeviceRef, start_ns: int, end_ns: int) -> list[Reading]:
        q = self.qualified(influxql.commands_query(ref, start_ns, end_ns), ref.cohort)
        return [_reading(row) for row in _rows(await self.query(q))]

    async def latest(self, measurement: str, ref: DeviceRef, since_ns: int) -> Reading | None:
        rows = _rows(await self.query(self.qualified(influxql.latest_query(measurement, ref, since_ns), ref.cohort)))
        return _reading(rows[-1]) if rows else None

    async def history(
        self, measurement: str, ref: DeviceRef, field: str, since_ns: int, end_ns: int, interval_s: int
    ) -> list[HistoryRow]:
        q = self.qualified(influxql.history_query(measurement, ref, field, since_ns, end_ns, interval_s), ref.cohort)
        return [(int(v[0]), v[1], v[2], v[3]) for s in await self.query(q) for v in s.get("values", [])]

    async def latest_by_device(
        self, kinds: Iterable[DeviceKind], cohort: str, learner: str | None = None
    ) -> list[tuple[DeviceKey, Reading]]:
        found = []
        for source in sorted({influxql.kind_source(kind, cohort) for kind in kinds}):
            q = self.qualified(influxql.latest_by_device_query(source, cohort, learner), cohort)
            for series in await self.query(q):
                found += [(_key(series), _reading(row)) for row in _rows([series])]
        return found

    async def sparklines(
        self, wanted: Iterable[tuple[DeviceKind, str]], cohort: str, seconds: int, interval_s: int
    ) -> list[tuple[str, DeviceKey, list[tuple[int, float]]]]:
        found = []
        for source, field in sorted({(influxql.kind_source(kind, cohort), field) for kind, field in wanted}):
            q = self.qualified(influxql.sparkline_query(source, cohort, field, seconds, interval_s), cohort)
            for series in await self.query(q):
                points = [(int(v[0]), v[1]) for v in series.get("values", []) if v[1] is not None]
                found.append((field, _key(series), points))
        return found
