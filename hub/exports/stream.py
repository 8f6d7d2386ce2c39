"""Exports streamed from InfluxDB: `rows(reader, selection)` yields readings page by page, device after device
(each oldest first), and `write_csv` / `write_jsonl` write them as they come, so memory stays that of one page
whatever the window (a month of 1 Hz data is 2.6 M rows).

The reader must run InfluxQL (`query`, as `hub.adapters.influx_read.InfluxQLReader` does on every backend that
serves `/query`); one that cannot raises `ReadNotSupported`, as every other read does.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, Any, Protocol, runtime_checkable

from hub.adapters.influx_read import Reader, ReadNotSupported
from hub.adapters.influxql import TAG_COLUMNS
from hub.exports.formats import Column, columns_of, csv_header, csv_rows, jsonl_rows
from hub.exports.queries import PAGE_ROWS, downsampled_query, raw_page_query, slices
from hub.exports.selection import Selection, Target

Row = dict[str, Any]  # time_ns, cohort, learner, device, then the fields present


@runtime_checkable
class Queries(Protocol):
    """A reader that runs InfluxQL and returns the first statement's series (times in ns)."""

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]: ...

    def qualified(self, q: str, cohort: str) -> str: ...


class AsyncWriter(Protocol):
    """Where bytes go asynchronously (aiohttp's StreamResponse)."""

    def write(self, data: bytes) -> Awaitable[None]: ...


Out = IO[bytes] | AsyncWriter


def _queries(reader: Reader) -> Queries:
    reader.check_readable()
    if not isinstance(reader, Queries):
        raise ReadNotSupported("exports need a backend that answers InfluxQL at /query")
    return reader


def _rows_of(series: list[dict[str, Any]], target: Target) -> list[Row]:
    tags = target.ref.tags
    found = []
    for s in series:
        columns = s.get("columns", [])
        for values in s.get("values", []):
            row = {k: v for k, v in zip(columns, values, strict=False) if v is not None and k not in TAG_COLUMNS}
            row["time_ns"] = int(values[0])
            found.append(tags | row)
    return found


async def _pages(db: Queries, target: Target, selection: Selection, numeric: list[str]) -> AsyncIterator[list[Row]]:
    start = max(selection.start_ns, target.since_ns)
    if selection.every_s is not None:
        if not numeric:
            return
        for lo, hi in slices(start, selection.end_ns, selection.every_s):
            q = downsampled_query(target.measurement, target.ref, numeric, selection.agg, lo, hi, selection.every_s)
            page = _rows_of(await db.query(db.qualified(q, target.ref.cohort)), target)
            if page:
                yield page
        return
    after = start
    while after < selection.end_ns:
        q = raw_page_query(target.measurement, target.ref, after, selection.end_ns)
        page = _rows_of(await db.query(db.qualified(q, target.ref.cohort)), target)
        if page:
            yield page
        if len(page) < PAGE_ROWS:
            return
        after = page[-1]["time_ns"] + 1


async def columns(reader: Reader, selection: Selection) -> list[Column]:
    """The field columns of the export (see `hub.exports.formats.columns_of`)."""
    return columns_of(selection, await reader.field_types())


async def pages(reader: Reader, selection: Selection, cols: list[Column] | None = None) -> AsyncIterator[list[Row]]:
    """The selection's rows a page at a time, device after device, each oldest first."""
    db = _queries(reader)
    cols = cols if cols is not None else await columns(reader, selection)
    numeric = [c.name for c in cols if c.type in ("float", "integer")]
    for target in selection.targets:
        async for page in _pages(db, target, selection, numeric):
            yield page


async def rows(reader: Reader, selection: Selection) -> AsyncIterator[Row]:
    """The selection's rows one by one (dicts: time_ns, cohort, learner, device, then the fields present)."""
    async for page in pages(reader, selection):
        for row in page:
            yield row


async def _put(out: Out, data: bytes) -> None:
    written = out.write(data)
    if inspect.isawaitable(written):
        await written


async def _write(
    reader: Reader, selection: Selection, out: Out, head: Callable[[list[Column]], bytes] | None, body: Any
) -> int:
    cols = await columns(reader, selection)
    if head is not None:
        await _put(out, head(cols))
    count = 0
    async for page in pages(reader, selection, cols):
        await _put(out, body(page, cols))
        count += len(page)
    return count


async def write_csv(reader: Reader, selection: Selection, out: Out) -> int:
    """The selection as CSV into `out` (a binary file, or an async writer such as a StreamResponse); returns the
    number of rows (the header not counted)."""
    return await _write(reader, selection, out, csv_header, csv_rows)


async def write_jsonl(reader: Reader, selection: Selection, out: Out) -> int:
    """The selection as JSON Lines into `out`; returns the number of rows."""
    return await _write(reader, selection, out, None, jsonl_rows)
