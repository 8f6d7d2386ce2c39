"""The hub's HTTP API (aiohttp): health, counters, devices and the payload inspector.

Built by a factory that receives the hub; the only module that sees aiohttp's request objects.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from devices.arm import CommandError
from hub.commands import FINAL, ArmState, OfflineError, command_error_json
from hub.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hub.metrics import registry_for
from hub.metrics import render as render_metrics
from hub.openapi import spec
from hub.topics import DeviceRef, TopicError

if TYPE_CHECKING:
    from hub.app import Hub
    from hub.ingest import DeviceState

HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")
METRICS_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
SOCKETS_KEY: web.AppKey[set[web.WebSocketResponse]] = web.AppKey("sockets")

INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LabHub</title></head>
<body><h1>LabHub</h1><p>API:</p><ul>
<li><a href="/healthz">/healthz</a> — ok or degraded, with reasons</li>
<li><a href="/api/stats">/api/stats</a> — counters</li>
<li><a href="/metrics">/metrics</a> — the same, for Prometheus</li>
<li><a href="/phone">/phone</a> — the phone control page for arms</li>
<li><a href="/api/openapi.json">/api/openapi.json</a> — the API's OpenAPI description</li>
<li><a href="/api/devices">/api/devices</a> — devices, their state and rejections</li>
<li>/api/devices/&lt;cohort&gt;/&lt;learner&gt;/&lt;device&gt;/inspector — the last messages and their verdicts</li>
</ul></body></html>"""


def make_app(hub: Hub) -> web.Application:
    app = web.Application(client_max_size=64 * 1024)
    app[HUB_KEY] = hub
    app[METRICS_KEY] = registry_for(hub)
    app.router.add_get("/", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/api/stats", stats)
    app.router.add_get("/api/devices", devices)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}", device)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/inspector", inspector)
    app.router.add_post("/api/devices/{cohort}/{learner}/{device}/commands", post_command)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/commands", list_commands)
    app.router.add_get("/api/commands/{id}", get_command)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/arm", arm_profile)
    app.router.add_get("/api/live", live)
    app.router.add_get("/api/openapi.json", openapi)
    app.router.add_get("/phone", phone)
    app[SOCKETS_KEY] = set()
    app.on_shutdown.append(_close_sockets)
    return app


STATIC = Path(__file__).resolve().parent / "static"


async def phone(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "phone.html", headers={"Cache-Control": "no-cache"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


async def index(request: web.Request) -> web.Response:
    return web.Response(text=INDEX, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    health = request.app[HUB_KEY].health()
    return web.json_response(health, status=200 if health["status"] == "ok" else 503)


async def metrics(request: web.Request) -> web.Response:
    body = render_metrics(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[HUB_KEY].stats())


async def devices(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    rows = [s.summary() for s in hub.ingest.devices.values()]
    cohort = request.query.get("cohort")
    if cohort:
        rows = [r for r in rows if r["cohort"] == cohort]
    rows.sort(key=lambda r: str(r["id"]))
    return web.json_response({"devices": rows})


def _error(cls: type[web.HTTPException], message: str) -> web.HTTPException:
    """API errors are JSON too: {"error": "..."}."""
    return cls(text=json.dumps({"error": message}), content_type="application/json")


def _state(request: web.Request) -> DeviceState:
    ref = _ref(request)
    state = request.app[HUB_KEY].ingest.devices.get(ref)
    if state is None:
        raise _error(web.HTTPNotFound, f"no device {ref.key} has been seen or declared")
    return state


async def device(request: web.Request) -> web.Response:
    return web.json_response(_state(request).summary())


MAX_WAIT_S = 30.0


def _wait_s(request: web.Request) -> float:
    try:
        return max(0.0, min(MAX_WAIT_S, float(request.query.get("wait", "0"))))
    except ValueError:
        raise _error(web.HTTPBadRequest, "wait must be a number of seconds") from None


def _ref(request: web.Request) -> DeviceRef:
    info = request.match_info
    try:
        return DeviceRef.parse(f"{info['cohort']}/{info['learner']}/{info['device']}")
    except TopicError as err:
        raise _error(web.HTTPBadRequest, str(err)) from None


def _arm(request: web.Request) -> tuple[DeviceRef, ArmState]:
    ref = _ref(request)
    arm = request.app[HUB_KEY].relay.arms.get(ref)
    if arm is None:
        raise _error(web.HTTPNotFound, f"{ref.key} is not a known arm")
    return ref, arm


async def post_command(request: web.Request) -> web.Response:
    """Send a command to an arm: 202 with its record (200 once finished with ?wait=S), 422 if unsafe,
    409 if the device is offline, 404 if it is not an arm."""
    relay = request.app[HUB_KEY].relay
    ref, _ = _arm(request)
    try:
        body = await request.json()
    except ValueError:
        return web.json_response(
            {"error": {"code": "malformed", "message": "the body must be a JSON command"}}, status=422
        )
    key = request.headers.get("Idempotency-Key") or (body.get("idempotency_key") if isinstance(body, dict) else None)
    try:
        record = relay.submit(ref, body, "http", idempotency_key=str(key)[:128] if key else None)
    except CommandError as err:
        return web.json_response(command_error_json(err), status=422)
    except OfflineError as err:
        return web.json_response(err.record.as_json(), status=409)
    record = await relay.wait(record, _wait_s(request))
    return web.json_response(record.as_json(), status=200 if record.state in FINAL else 202)


async def arm_profile(request: web.Request) -> web.Response:
    """An arm's joints with their limits and top speeds, its poses and gripper, and its current pose."""
    ref, arm = _arm(request)
    profile = arm.profile
    return web.json_response(
        {
            "device": ref.key,
            "profile": profile.name,
            "description": profile.description,
            "joints": {
                j.name: {"min": j.minimum, "max": j.maximum, "max_speed": j.max_speed, "home": j.home}
                for j in profile.joints.values()
            },
            "coupled": [{"joint": c.joint, "on": c.on, "points": [list(p) for p in c.points]} for c in profile.coupled],
            "poses": {name: dict(pose) for name, pose in profile.poses.items()},
            "gripper": {"joint": profile.gripper, "open": profile.gripper_open, "closed": profile.gripper_closed}
            if profile.gripper
            else None,
            "pose": arm.pose,
        }
    )


async def get_command(request: web.Request) -> web.Response:
    relay = request.app[HUB_KEY].relay
    record = relay.by_id.get(request.match_info["id"])
    if record is None:
        raise _error(web.HTTPNotFound, "no such command (or too old to remember)")
    record = await relay.wait(record, _wait_s(request))
    return web.json_response(record.as_json())


async def list_commands(request: web.Request) -> web.Response:
    ref, arm = _arm(request)
    return web.json_response(
        {
            "device": ref.key,
            "profile": arm.profile.name,
            "pose": arm.pose,
            "commands": [r.as_json() for r in reversed(arm.recent)],
        }
    )


async def live(request: web.Request) -> web.StreamResponse:
    """WebSocket: `?device=c/l/d` (repeatable) streams those devices' readings, presence and command events."""
    try:
        devices = frozenset(DeviceRef.parse(d) for d in request.query.getall("device", []))
    except TopicError as err:
        raise _error(web.HTTPBadRequest, str(err)) from None
    if not devices or len(devices) > 100:
        raise _error(web.HTTPBadRequest, "name 1 to 100 devices: /api/live?device=cohort/learner/device")
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=4096)
    await ws.prepare(request)
    hub = request.app[HUB_KEY]
    sockets = request.app[SOCKETS_KEY]
    sockets.add(ws)
    client = hub.watch(devices)

    async def send() -> None:
        while True:
            await ws.send_json(await client.queue.get())

    sender = asyncio.create_task(send())
    try:
        async for _ in ws:  # nothing to read from the app; this ends when it goes away
            pass
    finally:
        sender.cancel()
        hub.unwatch(client)
        sockets.discard(ws)
    return ws


async def _close_sockets(app: web.Application) -> None:
    sockets: set[web.WebSocketResponse] = app[SOCKETS_KEY]
    for ws in list(sockets):
        await ws.close(code=1001, message=b"hub stopping")


async def inspector(request: web.Request) -> web.Response:
    state = _state(request)
    entries = [e.as_json() for e in reversed(state.inspector)]
    return web.json_response({"device": state.ref.key, "messages": entries})
