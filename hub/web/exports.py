"""Readings out as files: `…/readings.csv` and `…/readings.jsonl` of a device, a learner, a demo session or a
cohort, over `?from=&to=` (Unix seconds or ISO-8601; default the last day; a session: its own window), raw or
downsampled (`&every=1m&agg=mean|min|max`).

Streamed: the header and the first page are read before the answer starts (so a database failure is still a
503), then page after page as InfluxDB gives them. A failure after the first byte cannot change the status: the
connection is cut, so the client sees an incomplete download rather than a file that looks whole.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from hub.access.policy import Action, Place
from hub.adapters.influx import StorageError
from hub.exports.formats import Column, csv_header, csv_rows, jsonl_rows
from hub.exports.scopes import cohort_targets, device_target, learner_targets, session_targets, session_window
from hub.exports.selection import Aggregate, Selection, Target, parse_every, parse_window
from hub.exports.stream import Row, columns, pages
from hub.web.common import deps_of, error, readable, reader_of, ref_of, require
from hub.web.history import read
from hub.web.sessions import session_of

log = logging.getLogger(__name__)
AGGS = "agg: mean, min or max"
TYPES = {"csv": "text/csv", "jsonl": "application/jsonl"}


def _selection(
    request: web.Request, targets: tuple[Target, ...], label: str, window: tuple[int, int] | None
) -> Selection:
    q = request.query
    try:
        own = window is not None and "from" not in q and "to" not in q
        start, end = window if own and window else parse_window(q.get("from"), q.get("to"), time.time_ns())
        every = parse_every(q["every"]) if q.get("every") else None
        agg = Aggregate(q.get("agg", "mean"))
        return Selection(targets, start, end, every, agg, label)
    except ValueError as err:
        raise error(
            web.HTTPBadRequest, f"{err} (from, to: Unix seconds or ISO-8601; every: 30s, 1m, 1h; {AGGS})"
        ) from None


async def _stream(request: web.Request, selection: Selection) -> web.StreamResponse:
    fmt = request.match_info["fmt"]
    reader = reader_of(request)
    cols: list[Column] = await read(columns(reader, selection))
    feed: AsyncIterator[list[Row]] = pages(reader, selection, cols)
    first = await read(anext(feed, []))
    response = web.StreamResponse(
        headers={
            "Content-Type": f"{TYPES[fmt]}; charset=utf-8",
            "Content-Disposition": f'attachment; filename="readings-{selection.label}.{fmt}"',
            "Cache-Control": "no-store",
        }
    )
    response.enable_chunked_encoding()
    await response.prepare(request)
    body = csv_rows if fmt == "csv" else jsonl_rows
    if fmt == "csv":
        await response.write(csv_header(cols))
    count = len(first)
    await response.write(body(first, cols))
    try:
        async for page in feed:
            await response.write(body(page, cols))
            count += len(page)
    except StorageError as err:
        log.warning("export %s cut after %d rows: InfluxDB: %s", selection.label, count, err)
        if request.transport is not None:
            request.transport.abort()
        return response
    await response.write_eof()
    log.info("export %s: %d rows as %s", selection.label, count, fmt)
    return response


def _label(*parts: str) -> str:
    return "-".join(parts)


async def device_readings(request: web.Request) -> web.StreamResponse:
    ref = ref_of(request)
    readable(request, ref)
    state = deps_of(request).devices.get(ref)
    seen = state.kind.name if state is not None and state.kind is not None else None
    target = device_target(deps_of(request).registry, ref, seen)
    if target is None:
        raise error(web.HTTPNotFound, f"no device {ref.key} has been seen or registered")
    return await _stream(request, _selection(request, (target,), _label(ref.cohort, ref.learner, ref.device), None))


async def learner_readings(request: web.Request) -> web.StreamResponse:
    cohort, learner = request.match_info["cohort"], request.match_info["learner"]
    require(request, Action.READ, Place(cohort, learner), f"see {cohort}/{learner}")
    targets = learner_targets(deps_of(request).registry, cohort, learner)
    return await _stream(request, _selection(request, targets, _label(cohort, learner), None))


async def cohort_readings(request: web.Request) -> web.StreamResponse:
    cohort = request.match_info["cohort"]
    require(request, Action.READ, Place(cohort), f"export cohort {cohort!r}")
    targets = cohort_targets(deps_of(request).registry, cohort)
    return await _stream(request, _selection(request, targets, cohort, None))


async def session_readings(request: web.Request) -> web.StreamResponse:
    session = session_of(request)
    targets = session_targets(deps_of(request).registry, session)
    window = session_window(session, time.time_ns())
    return await _stream(request, _selection(request, targets, _label("demo", session.id), window))


def add_routes(app: web.Application) -> None:
    """`readings.csv` and `readings.jsonl` of a device, a learner, a demo session and a cohort."""
    fmt = "readings.{fmt:csv|jsonl}"
    app.router.add_get(f"/api/devices/{{cohort}}/{{learner}}/{{device}}/{fmt}", device_readings)
    app.router.add_get(f"/api/learners/{{cohort}}/{{learner}}/{fmt}", learner_readings)
    app.router.add_get(f"/api/sessions/{{id}}/{fmt}", session_readings)
    app.router.add_get(f"/api/cohorts/{{cohort}}/{fmt}", cohort_readings)


def openapi_paths() -> dict[str, Any]:
    """The export routes in the OpenAPI description (`hub.web.openapi`)."""
    text = {"type": "string"}
    window = [
        {"name": "from", "in": "query", "required": False, "description": "Unix seconds or ISO-8601", "schema": text},
        {"name": "to", "in": "query", "required": False, "description": "Unix seconds or ISO-8601", "schema": text},
        {"name": "every", "in": "query", "required": False, "description": "downsample: 30s, 1m, 1h", "schema": text},
        {"name": "agg", "in": "query", "required": False, "schema": {"enum": ["mean", "min", "max"]}},
    ]
    fmt = {"name": "fmt", "in": "path", "required": True, "schema": {"enum": ["csv", "jsonl"]}}

    def path(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": text}

    scopes = {
        "/api/devices/{cohort}/{learner}/{device}": ("A device's readings", ["cohort", "learner", "device"]),
        "/api/learners/{cohort}/{learner}": ("A learner's devices' readings", ["cohort", "learner"]),
        "/api/sessions/{id}": ("A demo's readings (default window: the demo's)", ["id"]),
        "/api/cohorts/{cohort}": ("A cohort's readings (trainers, viewers)", ["cohort"]),
    }
    answers = {
        "200": "CSV (RFC 4180) or JSON Lines, streamed",
        "400": "bad window",
        "403": "not yours",
        "404": "unknown",
    }
    paths: dict[str, Any] = {}
    for prefix, (summary, names) in scopes.items():
        op = {
            "summary": f"{summary} over a window, raw or downsampled, as CSV or JSON Lines",
            "parameters": [*(path(n) for n in names), fmt, *window],
            "responses": {
                code: {
                    "description": what,
                    "content": {"text/csv": {"schema": text}, "application/jsonl": {"schema": text}},
                }
                for code, what in answers.items()
            },
        }
        paths[prefix + "/readings.{fmt}"] = {"get": op}
    return paths
