"""What InfluxDB holds, for the pages: a cohort's overview (every device's state, last reading and sparkline in
one request), a device's last stored reading, and one field's history downsampled in the database.

Readings from before a device was registered belong to an earlier device (or learner) of the same name, removed
since, and are never shown as this one's. Reads go through the `Reader` protocol (`reader_of`), which only the
InfluxDB 1.x backend answers for now (InfluxQL).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from aiohttp import web

from devices.kinds import FIELD_NAME_RE, KINDS
from devices.topics import SEGMENT_RE, DeviceRef
from hub.access.policy import Action, Place, allows, listing
from hub.adapters.influx import StorageError
from hub.web.common import deps_of, error, readable, reader_of, ref_of, token_of

T = TypeVar("T")
MAIN_FIELD = {"air_quality": "pm2_5", "arm": "base"}  # what a dashboard card's sparkline shows


def measurement_of(request: web.Request, ref: DeviceRef) -> tuple[str, str]:
    state = deps_of(request).devices.get(ref)
    if state is None or state.kind is None:
        raise error(web.HTTPNotFound, f"no device {ref.key} has been seen or registered")
    return state.kind.name, state.measurement


def registered_since(request: web.Request, ref: DeviceRef) -> int:
    """When the device was registered (ns), or 0: readings from before belong to an earlier device (or
    learner) of the same name, removed since, and are not shown as this one's."""
    record = deps_of(request).registry.device(ref)
    return record.created_ns if record is not None else 0


async def read(reading: Awaitable[T]) -> T:
    try:
        return await reading
    except StorageError as err:
        raise error(web.HTTPServiceUnavailable, f"InfluxDB: {err}") from None


async def cohort_overview(request: web.Request) -> web.Response:
    """One request for a whole dashboard: every visible device of the cohort with its state, its last stored
    reading and a sparkline of its main field (`?spark_s=`, default the last 5 minutes, in InfluxDB buckets)."""
    deps = deps_of(request)
    cohort = request.match_info["cohort"]
    token = token_of(request)
    states = [
        s for s in deps.devices.values() if s.ref.cohort == cohort and allows(token, Action.READ, Place.of(s.ref))
    ]
    try:
        spark_s = max(30, min(3600, int(request.query.get("spark_s", "300"))))
    except ValueError:
        raise error(web.HTTPBadRequest, "spark_s: seconds") from None
    if not SEGMENT_RE.fullmatch(cohort):
        raise error(web.HTTPBadRequest, "not a cohort name")
    latest_by: dict[tuple[str, str], dict[str, Any]] = {}
    since = {(r.ref.learner, r.ref.device): r.created_ns for r in deps.registry.devices(cohort)}
    kinds = [s.kind for s in states if s.kind is not None]
    shown = listing(token, cohort)
    if kinds:
        learner = shown[1] if shown is not None else None
        for key, (at, fields) in await read(reader_of(request).latest_by_device(kinds, cohort, learner)):
            if at < since.get(key, 0):
                continue  # an earlier device of that name
            latest_by[key] = {"time_ns": at, "fields": fields}
    main: dict[tuple[str, str], str] = {}
    for state in states:
        if state.kind is None:
            continue
        fields = latest_by.get((state.ref.learner, state.ref.device), {}).get("fields", {})
        name = MAIN_FIELD.get(state.kind.name)
        if name not in fields:
            name = next((f for f, v in fields.items() if isinstance(v, int | float) and not isinstance(v, bool)), None)
        if name:
            main[(state.ref.learner, state.ref.device)] = name
    sparks: dict[tuple[str, str], list[list[float]]] = {}
    interval = max(1, spark_s // 60)
    wanted = [
        (s.kind, main[(s.ref.learner, s.ref.device)])
        for s in states
        if s.kind is not None and (s.ref.learner, s.ref.device) in main
    ]
    if wanted:
        for name, key, points in await read(reader_of(request).sparklines(wanted, cohort, spark_s, interval)):
            if main.get(key) == name:
                sparks[key] = [[t / 1e9, v] for t, v in points if t >= since.get(key, 0)]
    devices = []
    for state in sorted(states, key=lambda s: s.ref.key):
        key = (state.ref.learner, state.ref.device)
        devices.append(
            state.summary()
            | {"latest": latest_by.get(key), "spark": {"field": main.get(key), "points": sparks.get(key, [])}}
        )
    return web.json_response({"cohort": cohort, "spark_s": spark_s, "devices": devices})


async def latest(request: web.Request) -> web.Response:
    """The device's last stored reading."""
    ref = ref_of(request)
    readable(request, ref)
    kind, measurement = measurement_of(request, ref)
    found = await read(reader_of(request).latest(measurement, ref, registered_since(request, ref)))
    at, fields = found if found is not None else (None, {})
    return web.json_response({"device": ref.key, "kind": kind, "time_ns": at, "fields": fields})


async def history(request: web.Request) -> web.Response:
    """One field over a time range, downsampled in InfluxDB: mean, min and max per interval, so a day of 1 Hz
    readings is `points` (default 300) rows; an interval without readings is null (a gap, not a line).
    `from`/`to`: Unix seconds (default: the last hour)."""
    ref = ref_of(request)
    readable(request, ref)
    kind, measurement = measurement_of(request, ref)
    name = request.query.get("field", "")
    if not FIELD_NAME_RE.fullmatch(name):
        raise error(web.HTTPBadRequest, "field: a field name, e.g. ?field=pm2_5")
    try:
        end = float(request.query.get("to", time.time()))
        start = float(request.query.get("from", end - 3600))
        points = max(10, min(2000, int(request.query.get("points", "300"))))
    except ValueError:
        raise error(web.HTTPBadRequest, "from and to are Unix seconds; points a whole number") from None
    if not 0 < end - start <= 90 * 86400:
        raise error(web.HTTPBadRequest, "the range must be positive and at most 90 days")
    interval = max(1, math.ceil((end - start) / points))
    since = max(int(start * 1e9), registered_since(request, ref))
    rows = await read(reader_of(request).history(measurement, ref, name, since, int(end * 1e9), interval))
    while rows and rows[0][1] is None:  # empty buckets before the first reading and after the last: no plot
        rows.pop(0)
    while rows and rows[-1][1] is None:
        rows.pop()
    spec = KINDS[kind].fields.get(name)
    return web.json_response(
        {
            "device": ref.key,
            "field": name,
            "unit": spec.unit if spec else "",
            "interval_s": interval,
            "from": start,
            "to": end,
            "points": [[row[0] / 1e9, row[1], row[2], row[3]] for row in rows],
        }
    )
