"""The InfluxQL of exports, as text (pure; names escaped by `hub.adapters.influxql`).

Raw readings are paged by time, not by OFFSET: each page asks for the next `limit` points after the last one seen
(a device's series has one point per timestamp), so every page costs the same however deep into a month it is.
Downsampled readings are sliced into windows of `limit` intervals, aligned on the interval so no interval is split.
"""

from __future__ import annotations

from collections.abc import Sequence

from devices.topics import DeviceRef
from hub.adapters.influxql import device_clause, ident

PAGE_ROWS = 5000  # rows per query: a page's JSON is about 1 MB for the widest kind


def raw_page_query(measurement: str, ref: DeviceRef, after_ns: int, end_ns: int, limit: int = PAGE_ROWS) -> str:
    """The next `limit` readings of a device at or after `after_ns`, before `end_ns`, oldest first."""
    return (
        f"SELECT * FROM {ident(measurement)} WHERE {device_clause(ref)} AND time >= {int(after_ns)} "
        f"AND time < {int(end_ns)} ORDER BY time ASC LIMIT {int(limit)}"
    )


def downsampled_query(
    measurement: str, ref: DeviceRef, fields: Sequence[str], agg: str, start_ns: int, end_ns: int, every_s: int
) -> str:
    """`agg` (mean, min or max) of each field per `every_s` interval over [start_ns, end_ns); empty intervals
    left out. Each column keeps its field's name."""
    if agg not in ("mean", "min", "max"):
        raise ValueError(f"aggregate {agg!r}: mean, min or max")
    picks = ", ".join(f"{agg}({ident(f)}) AS {ident(f)}" for f in fields)
    return (
        f"SELECT {picks} FROM {ident(measurement)} WHERE {device_clause(ref)} AND time >= {int(start_ns)} "
        f"AND time < {int(end_ns)} GROUP BY time({int(every_s)}s) fill(none)"
    )


def slices(start_ns: int, end_ns: int, every_s: int, intervals: int = PAGE_ROWS) -> list[tuple[int, int]]:
    """[start_ns, end_ns) cut at multiples of `intervals` × `every_s` (InfluxDB aligns intervals on the epoch)."""
    step = every_s * 1_000_000_000 * intervals
    cuts = []
    lo = start_ns
    while lo < end_ns:
        hi = min(end_ns, (lo // step + 1) * step)
        cuts.append((lo, hi))
        lo = hi
    return cuts
