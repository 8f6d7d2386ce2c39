"""Replays as JSON: `GET /api/sessions/<id>/replay` (a demo's devices over its window) and
`GET /api/devices/<c>/<l>/<d>/replay?from=&to=` (one device over a window; default the last day, at most a day).
Read from InfluxDB only (`hub.replay.source`); policy as for sessions and devices (another learner's: 404 / 403).

The answer (`hub.replay.timeline.as_json`):
    {"start_ns", "end_ns",
     "devices": [{"device": "c/l/d", "kind", "fields": [numeric field names], "arm": null | {"name",
                  "joints": {joint: {"min", "max", "home"}}, "links": {name: mm, base to tip}, "gripper"}}],
     "frames": [{"t_ns", "device", "type": "presence"|"reading"|"command"|"rejection"|"diagnosis", "data": {…}}],
     "truncated": bool}
and, for a session, "session": the session as `/api/sessions` lists it.
"""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from hub.exports.scopes import device_target
from hub.exports.selection import parse_window
from hub.replay import as_json, check_window, device_timeline, session_timeline
from hub.web.common import deps_of, error, readable, reader_of, ref_of
from hub.web.history import read
from hub.web.sessions import session_of


async def session_replay(request: web.Request) -> web.Response:
    session = session_of(request)
    deps = deps_of(request)
    timeline = await read(session_timeline(reader_of(request), deps.registry, session, time.time_ns()))
    return web.json_response(as_json(timeline) | {"session": session.as_json()}, headers={"Cache-Control": "no-store"})


async def device_replay(request: web.Request) -> web.Response:
    ref = ref_of(request)
    readable(request, ref)
    deps = deps_of(request)
    state = deps.devices.get(ref)
    seen = state.kind.name if state is not None and state.kind is not None else None
    target = device_target(deps.registry, ref, seen)
    if target is None:
        raise error(web.HTTPNotFound, f"no device {ref.key} has been seen or registered")
    try:
        start, end = parse_window(request.query.get("from"), request.query.get("to"), time.time_ns())
        check_window(start, end)
    except ValueError as err:
        raise error(web.HTTPBadRequest, f"{err} (from, to: Unix seconds or ISO-8601)") from None
    except OverflowError:  # seconds finite as a float but not in ns (1e300): parse_time lets round(inf) raise
        raise error(
            web.HTTPBadRequest, "from and to must be times between 1970 and 2262 (Unix seconds or ISO-8601)"
        ) from None
    timeline = await read(device_timeline(reader_of(request), deps.registry, target, start, end))
    return web.json_response(as_json(timeline), headers={"Cache-Control": "no-store"})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/sessions/{id}/replay", session_replay)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/replay", device_replay)


def openapi_paths() -> dict[str, Any]:
    """The replay routes in the OpenAPI description (`hub.web.openapi`)."""
    text = {"type": "string"}
    frame = {
        "type": "object",
        "properties": {
            "t_ns": {"type": "integer"},
            "device": text,
            "type": {"enum": ["presence", "reading", "command", "rejection", "diagnosis"]},
            "data": {"type": "object"},
        },
    }
    body = {
        "type": "object",
        "properties": {
            "start_ns": {"type": "integer"},
            "end_ns": {"type": "integer"},
            "devices": {"type": "array", "items": {"type": "object"}},
            "frames": {"type": "array", "items": frame},
            "truncated": {"type": "boolean"},
            "session": {"type": "object"},
        },
    }

    def path(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": text}

    def op(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "get": {
                "summary": summary,
                "parameters": params,
                "responses": {
                    "200": {"description": "the timeline", "content": {"application/json": {"schema": body}}},
                    "400": {"description": "bad window (at most a day)"},
                    "403": {"description": "not yours"},
                    "404": {"description": "unknown (or another learner's session)"},
                    "503": {"description": "InfluxDB unavailable"},
                },
            }
        }

    window = [
        {"name": n, "in": "query", "required": False, "description": "Unix seconds or ISO-8601", "schema": text}
        for n in ("from", "to")
    ]
    return {
        "/api/sessions/{id}/replay": op(
            "A demo's replay: its devices' readings, presence, commands, refusals and diagnoses over its window",
            [path("id")],
        ),
        "/api/devices/{cohort}/{learner}/{device}/replay": op(
            "One device's replay over a window (default the last day, at most a day)",
            [*(path(n) for n in ("cohort", "learner", "device")), *window],
        ),
    }
