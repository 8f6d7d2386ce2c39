"""Devices as the hub sees them: the list a token may see, one device's state, its payload inspector, and the
catalogue of kinds (fields, units, ranges) the pages label values with."""

from __future__ import annotations

import math

from aiohttp import web

from devices.kinds import KINDS
from hub.access.policy import Action, Place, allows
from hub.web.common import deps_of, error, readable, ref_of, token_of
from hub.web.deps import DeviceView


async def devices(request: web.Request) -> web.Response:
    token = token_of(request)
    deps = deps_of(request)
    doctor = deps.doctor
    rows = []
    for state in deps.devices.values():
        if allows(token, Action.READ, Place.of(state.ref)):
            row = state.summary()
            if doctor is not None:  # the dashboard's badge: open findings and the worst of them
                row["findings_open"], row["worst"] = doctor.summary(state.ref)
            rows.append(row)
    cohort = request.query.get("cohort")
    if cohort:
        rows = [r for r in rows if r["cohort"] == cohort]
    rows.sort(key=lambda r: str(r["id"]))
    return web.json_response({"devices": rows})


def state_of(request: web.Request) -> DeviceView:
    ref = ref_of(request)
    readable(request, ref)
    state = deps_of(request).devices.get(ref)
    if state is None:
        raise error(web.HTTPNotFound, f"no device {ref.key} has been seen or declared")
    return state


async def device(request: web.Request) -> web.Response:
    return web.json_response(state_of(request).summary())


async def inspector(request: web.Request) -> web.Response:
    state = state_of(request)
    entries = [e.as_json() for e in reversed(state.inspector)]
    return web.json_response({"device": state.ref.key, "messages": entries})


async def kinds(request: web.Request) -> web.Response:
    """Every device kind's fields with their units and ranges (the dashboard labels values with them)."""
    return web.json_response(
        {
            name: {
                "description": kind.description,
                "open_fields": kind.open_fields,
                "fields": {
                    f.name: {"type": f.type.value, "unit": f.unit}
                    | ({"min": f.minimum} if math.isfinite(f.minimum) else {})
                    | ({"max": f.maximum} if math.isfinite(f.maximum) else {})
                    for f in kind.fields.values()
                },
            }
            for name, kind in KINDS.items()
        }
    )
