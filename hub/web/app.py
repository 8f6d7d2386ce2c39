"""The hub's HTTP API (aiohttp): health, counters, devices and the payload inspector.

Built by a factory that receives the hub; the only module that sees aiohttp's request objects.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import WSMessage, WSMsgType, web
from prometheus_client.registry import CollectorRegistry

from devices.arm import CommandError
from devices.kinds import FIELD_NAME_RE, KINDS
from devices.text import has_surrogates
from devices.topics import SEGMENT_RE, DeviceRef, TopicError
from hub.access.dynsec import DynsecError
from hub.access.registry import DemoSession, RegistryError, Token, check_learner, decode_csv, parse_csv
from hub.access.tokens import (
    WS_PROTOCOL,
    RateLimiter,
    bearer_token,
    can_command,
    can_grant,
    can_manage,
    can_read,
    health_details,
    lab_wide,
    lookup,
    origin_allowed,
    retry_after,
)
from hub.adapters.influx import InfluxV1, StorageError
from hub.adapters.influxql import device_clause
from hub.boundary import HTTP, WEBSOCKET, escape
from hub.commands.relay import FINAL, ArmState, OfflineError, command_error_json
from hub.config import ARM_PROFILES
from hub.grading.reports import grade_session
from hub.grading.rubrics import RubricError, load_rubrics
from hub.web.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from hub.web.metrics import registry_for
from hub.web.metrics import render as render_metrics
from hub.web.openapi import PUBLIC, spec

if TYPE_CHECKING:
    from hub.ingest.pipeline import DeviceState
    from hub.runtime import Hub

log = logging.getLogger(__name__)
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
TOKEN_KEY: web.RequestKey[Token] = web.RequestKey("token", Token)
HUB_KEY: web.AppKey[Hub] = web.AppKey("hub")
METRICS_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics")
LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("limiter")
CSP_KEY: web.AppKey[dict[str, str]] = web.AppKey("csp")


@dataclass(eq=False, slots=True)
class Socket:
    """An open live view: whose token, and the registered devices it named (it closes if they go)."""

    token: Token
    devices: frozenset[DeviceRef]


SOCKETS_KEY: web.AppKey[dict[web.WebSocketResponse, Socket]] = web.AppKey("sockets")

INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LabHub</title></head>
<body><h1>LabHub</h1><p>API:</p><ul>
<li><a href="/healthz">/healthz</a> — ok or degraded (the reasons with a trainer's or viewer's token)</li>
<li><a href="/api/stats">/api/stats</a> — counters</li>
<li><a href="/metrics">/metrics</a> — the same, for Prometheus</li>
<li><a href="/dashboard">/dashboard</a> — the live cohort dashboard (trainers, classroom screens)</li>
<li><a href="/phone">/phone</a> — the phone control page for arms</li>
<li><a href="/api/openapi.json">/api/openapi.json</a> — the API's OpenAPI description</li>
<li><a href="/api/devices">/api/devices</a> — devices, their state and rejections</li>
<li>/api/devices/&lt;cohort&gt;/&lt;learner&gt;/&lt;device&gt;/inspector — the last messages and their verdicts</li>
</ul></body></html>"""


MAX_BODY_BYTES = 64 * 1024  # a command is well under 1 KiB; a cohort CSV of 1,000 lines fits
MAX_SOCKETS_PER_TOKEN = 8  # live views one token may hold open: a phone, a dashboard and its device pages
MAX_SOCKETS = 512  # live views in all, well under the file descriptors a process gets (1,024 at the least)


def make_app(hub: Hub) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[boundary, security])
    app[HUB_KEY] = hub
    app[CSP_KEY] = page_policies()
    app[LIMITER_KEY] = RateLimiter(hub.cfg.hub.api_requests_per_second, 2 * hub.cfg.hub.api_requests_per_second)
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
    app.router.add_get("/dashboard", dashboard)
    app.router.add_get("/dashboard/device", device_page)
    app.router.add_get("/static/vendor/uplot/{name}", vendor)
    app.router.add_get("/static/labhub.js", shared_script)
    app.router.add_get("/api/kinds", kinds)
    app.router.add_get("/api/whoami", whoami)
    app.router.add_get("/api/cohorts/{cohort}/overview", cohort_overview)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/latest", latest)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/history", history)
    app.router.add_get("/api/sessions", sessions_list)
    app.router.add_post("/api/sessions", sessions_start)
    app.router.add_post("/api/sessions/{id}/stop", sessions_stop)
    app.router.add_get("/api/sessions/{id}/grade", sessions_grade)
    app.router.add_get("/api/registry/devices", registry_devices)
    app.router.add_post("/api/registry/devices", registry_add_device)
    app.router.add_delete("/api/registry/devices/{cohort}/{learner}/{device}", registry_remove_device)
    app.router.add_post("/api/registry/devices/{cohort}/{learner}/{device}/{action}", registry_device_action)
    app.router.add_get("/api/registry/learners", registry_learners)
    app.router.add_post("/api/registry/learners", registry_add_learner)
    app.router.add_post("/api/registry/learners/{cohort}/{learner}/{action}", registry_learner_action)
    app.router.add_post("/api/registry/import", registry_import)
    app.router.add_get("/api/tokens", tokens_list)
    app.router.add_post("/api/tokens", tokens_add)
    app.router.add_delete("/api/tokens/{id}", tokens_revoke)
    app[SOCKETS_KEY] = {}
    app.on_shutdown.append(_close_sockets)
    hub.token_listeners.append(lambda: _close_stale(app))
    return app


STATIC = Path(__file__).resolve().parent / "static"
WS_MAX_MESSAGE = 4096  # bytes a live view's app may send in one message (the README's 4 KiB)
PAGES = {"/phone": "phone.html", "/dashboard": "dashboard.html", "/dashboard/device": "device.html"}


# Every answer: a boundary around the handler, and headers that keep pages out of frames and sniffing --------

API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
INLINE_RE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)  # inline blocks only (no src attribute)


def page_policy(html: str) -> str:
    """A page's Content-Security-Policy: its own scripts and styles (files from this hub, and its inline
    blocks by SHA-256), the API and live WebSocket on this origin, never inside a frame."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in INLINE_RE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return (
        f"default-src 'none'; script-src 'self' {' '.join(hashes['script'])}; "
        f"style-src 'self' {' '.join(hashes['style'])}; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def page_policies() -> dict[str, str]:
    policies = {path: page_policy((STATIC / name).read_text()) for path, name in PAGES.items()}
    policies["/"] = page_policy(INDEX)
    return policies


def _harden(headers: Any, request: web.Request) -> None:
    headers["Content-Security-Policy"] = request.app[CSP_KEY].get(request.path, API_POLICY)
    headers["X-Frame-Options"] = "DENY"
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "no-referrer"


def _route_of(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else escape(request.path, 100)


INTERNAL_ERROR = "the hub could not answer this request (the failure is logged); try again, or tell the trainer"


@web.middleware
async def boundary(request: web.Request, handler: Handler) -> web.StreamResponse:
    """One boundary per request: whatever a handler lets escape (but an HTTP answer) is counted and logged by
    the hub's boundaries and answered 500 with a JSON error that tells nothing of the hub's insides."""
    try:
        response = await handler(request)
    except web.HTTPException as err:
        _harden(err.headers, request)
        raise
    except Exception as err:  # the boundary: one request's failure stops here
        request.app[HUB_KEY].boundaries.failed(HTTP, _route_of(request), err)
        response = web.json_response({"error": INTERNAL_ERROR}, status=500)
    if not response.prepared:
        _harden(response.headers, request)
    return response


# Security: every route needs a token except these (health, and pages that hold no data and log in) -------

PUBLIC_PATHS = frozenset(PUBLIC)
PUBLIC_PREFIXES = ("/static/vendor/", "/static/labhub.js")  # the pages' scripts: no data


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin check and CORS, then the bearer token and its rate limit; the token is in request["token"]."""
    hub = request.app[HUB_KEY]
    allowed = hub.cfg.hub.allowed_origins
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, allowed):
        raise _error(
            web.HTTPForbidden, f"origin {origin[:100] if origin else ''!r} is not allowed (hub.allowed_origins)"
        )
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin and origin in allowed else {}
    if request.method == "OPTIONS" and cors:  # a browser's preflight for an allow-listed origin
        cors["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        cors["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Idempotency-Key"
        cors["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=cors)
    if request.path not in PUBLIC_PATHS and not request.path.startswith(PUBLIC_PREFIXES):
        secret = bearer_token(request.headers.get("Authorization"), request.headers.get("Sec-WebSocket-Protocol"))
        token = lookup(hub.tokens, secret)
        if token is None:
            raise _error(
                web.HTTPUnauthorized,
                "a valid API token is needed: Authorization: Bearer <token> (ask your trainer)"
                if secret is None
                else "this API token is not valid (revoked, or mistyped)",
                {"WWW-Authenticate": 'Bearer realm="labhub"', **cors},
            )
        wait = request.app[LIMITER_KEY].check(token.id, time.monotonic())
        if wait:
            raise _error(
                web.HTTPTooManyRequests,
                "too many requests with this token; slow down",
                {"Retry-After": retry_after(wait), **cors},
            )
        request[TOKEN_KEY] = token
    try:
        response = await handler(request)
    except web.HTTPException as err:
        err.headers.update(cors)
        raise
    if cors and not response.prepared:
        response.headers.update(cors)
    return response


def _token(request: web.Request) -> Token:
    token: Token = request[TOKEN_KEY]
    return token


def _check(allowed: bool, what: str) -> None:
    if not allowed:
        raise _error(web.HTTPForbidden, f"this token may not {what}")


def _readable(request: web.Request, ref: DeviceRef) -> None:
    _check(can_read(_token(request), ref), f"see {ref.key}")


async def dashboard(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / PAGES["/dashboard"], headers={"Cache-Control": "no-cache"})


async def device_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / PAGES["/dashboard/device"], headers={"Cache-Control": "no-cache"})


VENDOR = {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}


async def vendor(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in VENDOR:
        raise _error(web.HTTPNotFound, "no such file")
    return web.FileResponse(STATIC / "vendor" / "uplot" / name, headers={"Cache-Control": "max-age=86400"})


async def shared_script(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "labhub.js", headers={"Cache-Control": "no-cache"})


async def phone(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / PAGES["/phone"], headers={"Cache-Control": "no-cache"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())


async def index(request: web.Request) -> web.Response:
    return web.Response(text=INDEX, content_type="text/html")


async def healthz(request: web.Request) -> web.Response:
    """Public: ok or degraded (503), nothing more. The reasons only for a trainer's or viewer's token."""
    hub = request.app[HUB_KEY]
    health = hub.health()
    status = 200 if health["status"] == "ok" else 503
    token = lookup(hub.tokens, bearer_token(request.headers.get("Authorization")))
    if token is not None and health_details(token):
        return web.json_response(health, status=status)
    return web.json_response({"status": health["status"]}, status=status)


async def metrics(request: web.Request) -> web.Response:
    _check(lab_wide(_token(request)), "see lab-wide metrics (a trainer or viewer of all cohorts may)")
    body = render_metrics(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": METRICS_CONTENT_TYPE})


async def stats(request: web.Request) -> web.Response:
    _check(lab_wide(_token(request)), "see lab-wide counters (a trainer or viewer of all cohorts may)")
    return web.json_response(request.app[HUB_KEY].stats())


async def devices(request: web.Request) -> web.Response:
    hub = request.app[HUB_KEY]
    token = _token(request)
    rows = [s.summary() for s in hub.ingest.devices.values() if can_read(token, s.ref)]
    cohort = request.query.get("cohort")
    if cohort:
        rows = [r for r in rows if r["cohort"] == cohort]
    rows.sort(key=lambda r: str(r["id"]))
    return web.json_response({"devices": rows})


def _error(cls: type[web.HTTPException], message: str, headers: dict[str, str] | None = None) -> web.HTTPException:
    """API errors are JSON too: {"error": "..."}."""
    return cls(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def _state(request: web.Request) -> DeviceState:
    ref = _ref(request)
    _readable(request, ref)
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
    _readable(request, ref)
    arm = request.app[HUB_KEY].relay.arms.get(ref)
    if arm is None:
        raise _error(web.HTTPNotFound, f"{ref.key} is not a known arm")
    return ref, arm


async def post_command(request: web.Request) -> web.Response:
    """Send a command to an arm: 202 with its record (200 once finished with ?wait=S), 422 if unsafe,
    409 if the device is offline, 404 if it is not an arm."""
    relay = request.app[HUB_KEY].relay
    ref, _ = _arm(request)
    _check(can_command(_token(request), ref), f"send commands to {ref.key}")
    try:
        body = await _json(request)
    except HostileBody as err:
        return web.json_response({"error": {"code": "malformed", "message": str(err)}}, status=400)
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
    _readable(request, record.device)
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
    """WebSocket: `?device=c/l/d` (repeatable) streams those devices' readings, presence, rejections and command
    events; `?cohort=C` (repeatable) streams every device of the cohort, including ones that appear later."""
    try:
        devices = frozenset(DeviceRef.parse(d) for d in request.query.getall("device", []))
    except TopicError as err:
        raise _error(web.HTTPBadRequest, str(err)) from None
    cohorts = frozenset(request.query.getall("cohort", []))
    if not (devices or cohorts) or len(devices) > 100 or len(cohorts) > 10:
        raise _error(web.HTTPBadRequest, "name 1 to 100 devices (?device=cohort/learner/device) or cohorts (?cohort=C)")
    for ref in devices:
        _readable(request, ref)
    token = _token(request)
    for cohort in cohorts:
        _check(token.role != "learner" and token.scope in ("*", cohort), f"watch all of cohort {cohort!r}")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if offered and WS_PROTOCOL not in offered:  # (aiohttp would log the offered list, token and all)
        raise _error(web.HTTPBadRequest, f"offer the {WS_PROTOCOL!r} subprotocol with the token")
    hub = request.app[HUB_KEY]
    sockets = request.app[SOCKETS_KEY]
    if sum(1 for s in sockets.values() if s.token.id == token.id) >= MAX_SOCKETS_PER_TOKEN:
        raise _error(
            web.HTTPTooManyRequests,
            f"this token has {MAX_SOCKETS_PER_TOKEN} live views open already: close one first",
            {"Retry-After": "5"},
        )
    if len(sockets) >= MAX_SOCKETS:
        raise _error(web.HTTPServiceUnavailable, "the hub has all the live views it can serve", {"Retry-After": "10"})
    # aiohttp refuses a message of exactly max_msg_size bytes: + 1 lets the promised 4 KiB through.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=WS_MAX_MESSAGE + 1, protocols=[WS_PROTOCOL])
    registered = frozenset(ref for ref in devices if hub.registry.device(ref) is not None)
    sockets[ws] = Socket(token, registered)  # counted from now: handshakes in flight take their place too
    try:
        await ws.prepare(request)
        client = hub.watch(devices, cohorts)
    except BaseException:
        sockets.pop(ws, None)
        raise

    async def send() -> None:
        while True:
            await ws.send_json(await client.queue.get())

    sender = asyncio.create_task(send())
    try:
        async for message in ws:  # nothing is expected from the app; whatever comes is handled in a boundary
            with hub.boundaries.guard(WEBSOCKET, f"/api/live (token {token.id})"):
                _from_app(message)
    except Exception as err:  # the socket is open: no HTTP answer can be given any more
        hub.boundaries.failed(WEBSOCKET, f"/api/live (token {token.id})", err)
    finally:
        sender.cancel()
        hub.unwatch(client)
        sockets.pop(ws, None)
    return ws


def _from_app(message: WSMessage) -> None:
    """A message from a live view's app: none is needed (the view is read-only); text must be valid Unicode."""
    if message.type == WSMsgType.TEXT and has_surrogates(message.data):
        raise HostileBody("a live-view message that is not valid Unicode")


async def _close_sockets(app: web.Application) -> None:
    for ws in list(app[SOCKETS_KEY].keys()):
        await ws.close(code=1001, message=b"hub stopping")


_CLOSING: set[asyncio.Task[bool]] = set()


def _close_stale(app: web.Application) -> None:
    """The registry changed: a revoked token (or a disabled or removed learner's) loses its open live views,
    and so does a view of a device that has been removed."""
    hub = app[HUB_KEY]
    valid = {token.id for token in hub.tokens.values()}
    sockets = app[SOCKETS_KEY]
    named = set().union(*(s.devices for s in sockets.values())) if sockets else set()
    removed = {ref for ref in named if hub.registry.device(ref) is None}
    for ws, socket in list(sockets.items()):
        if ws.closed:
            continue
        if socket.token.id not in valid:
            code, why = 4001, b"token revoked"
        elif socket.devices & removed:
            code, why = 4004, b"device removed"
        else:
            continue
        sockets.pop(ws, None)
        closing = asyncio.get_running_loop().create_task(ws.close(code=code, message=why))
        _CLOSING.add(closing)  # held until done: the live handler then ends on its own
        closing.add_done_callback(_CLOSING.discard)


async def inspector(request: web.Request) -> web.Response:
    state = _state(request)
    entries = [e.as_json() for e in reversed(state.inspector)]
    return web.json_response({"device": state.ref.key, "messages": entries})


# Registry and tokens (trainers) ---------------------------------------------------------------------------


MAX_JSON_DEPTH = 32  # a command is 3 levels deep
MAX_INT_DIGITS = 19  # int64; a longer integer is no angle, speed or id


class HostileBody(ValueError):
    """A body no client of ours sends: not UTF-8, lone surrogates, absurd numbers or nesting (→ 400)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise HostileBody(f"an integer of {len(text)} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> object:
    raise HostileBody(f"{name} is not a JSON number")


def _check_text(value: object) -> None:
    """Every string (keys too) valid Unicode, at most MAX_JSON_DEPTH levels: iterative, linear in the size."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if has_surrogates(item):
                raise HostileBody("the body holds a lone surrogate (e.g. \\ud800): text must be valid Unicode")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise HostileBody(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


async def _json(request: web.Request) -> object:
    """The body as JSON from outside: HostileBody for what no client sends, ValueError if it is not JSON."""
    raw = await request.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HostileBody("the body is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except RecursionError:
        raise HostileBody(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    _check_text(value)
    return value


async def _body(request: web.Request) -> dict[str, object]:
    try:
        body = await _json(request)
    except HostileBody as err:
        raise _error(web.HTTPBadRequest, str(err)) from None
    except ValueError:
        raise _error(web.HTTPBadRequest, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise _error(web.HTTPBadRequest, "the body must be a JSON object")
    return body


def _text(body: dict[str, object], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise _error(web.HTTPBadRequest, f"{key!r} must be a string")
    return value


@contextlib.contextmanager
def _registry_change(request: web.Request) -> Iterator[None]:
    """Around a registry change: bad input → 400/404/409, the broker unreachable → 503; then the hub follows."""
    try:
        yield
    except RegistryError as err:
        text = str(err)
        status = 404 if text.startswith("no ") else 409 if "already" in text else 400
        raise _error({404: web.HTTPNotFound, 409: web.HTTPConflict}.get(status, web.HTTPBadRequest), text) from None
    except DynsecError as err:
        raise _error(web.HTTPServiceUnavailable, f"the broker's accounts could not be changed: {err}") from None
    request.app[HUB_KEY].apply_registry()


def _managed_cohort(request: web.Request, cohort: str) -> None:
    _check(can_manage(_token(request), cohort), f"manage cohort {cohort!r}")


def _cohort_filter(request: web.Request) -> str | None:
    token = _token(request)
    _check(token.role == "trainer", "see the registry (trainers only)")
    cohort = request.query.get("cohort")
    if token.scope != "*":
        if cohort not in (None, token.scope):
            raise _error(web.HTTPForbidden, f"this token may not manage cohort {cohort!r}")
        cohort = token.scope
    return cohort


async def registry_devices(request: web.Request) -> web.Response:
    cohort = _cohort_filter(request)
    return web.json_response({"devices": [d.as_json() for d in request.app[HUB_KEY].registry.devices(cohort)]})


async def registry_add_device(request: web.Request) -> web.Response:
    """Register a device: 201 with its broker username and password (shown this once)."""
    body = await _body(request)
    key = _text(body, "id")
    _managed_cohort(request, key.split("/", 1)[0])
    profile = body.get("profile")
    kind, description = _text(body, "kind", "generic"), _text(body, "description", "")
    with _registry_change(request):
        credential = await request.app[HUB_KEY].accounts.add_device(
            key, kind, str(profile) if profile else None, description
        )
    return web.json_response({"username": credential.username, "password": credential.password}, status=201)


async def registry_remove_device(request: web.Request) -> web.Response:
    ref = _ref(request)
    _managed_cohort(request, ref.cohort)
    with _registry_change(request):
        await request.app[HUB_KEY].accounts.remove_device(ref.key)
    return web.json_response({"removed": ref.key})


async def registry_device_action(request: web.Request) -> web.Response:
    """disable (cuts it off at once), enable, or rotate (a new password; the old one stops working)."""
    ref = _ref(request)
    _managed_cohort(request, ref.cohort)
    accounts = request.app[HUB_KEY].accounts
    action = request.match_info["action"]
    if action == "rotate":
        with _registry_change(request):
            credential = await accounts.rotate_device(ref.key)
        return web.json_response({"username": credential.username, "password": credential.password})
    if action not in ("disable", "enable"):
        raise _error(web.HTTPNotFound, f"no action {action!r}: disable, enable or rotate")
    with _registry_change(request):
        await accounts.set_device_enabled(ref.key, action == "enable")
    return web.json_response({"device": ref.key, "enabled": action == "enable"})


async def registry_learners(request: web.Request) -> web.Response:
    cohort = _cohort_filter(request)
    rows = request.app[HUB_KEY].registry.learners(cohort)
    return web.json_response(
        {"learners": [{"id": r.key, "enabled": r.enabled, "mqtt_account": r.has_account} for r in rows]}
    )


async def registry_add_learner(request: web.Request) -> web.Response:
    """A learner's MQTT account (for an MQTT phone app): 201 with its password (shown this once)."""
    body = await _body(request)
    key = _text(body, "id")
    _managed_cohort(request, key.split("/", 1)[0])
    with _registry_change(request):
        credential = await request.app[HUB_KEY].accounts.add_learner(key)
    return web.json_response({"username": credential.username, "password": credential.password}, status=201)


async def registry_learner_action(request: web.Request) -> web.Response:
    cohort, learner = request.match_info["cohort"], request.match_info["learner"]
    _managed_cohort(request, cohort)
    accounts = request.app[HUB_KEY].accounts
    action = request.match_info["action"]
    key = f"{cohort}/{learner}"
    if action == "rotate":
        with _registry_change(request):
            credential = await accounts.rotate_learner(key)
        return web.json_response({"username": credential.username, "password": credential.password})
    if action not in ("disable", "enable"):
        raise _error(web.HTTPNotFound, f"no action {action!r}: disable, enable or rotate")
    with _registry_change(request):
        await accounts.set_learner_enabled(key, action == "enable")
    return web.json_response({"learner": key, "enabled": action == "enable"})


async def registry_import(request: web.Request) -> web.Response:
    """A cohort CSV (cohort,learner,device,kind,profile,description): 201 with the new accounts' passwords."""
    try:
        text = decode_csv(await request.read())
        lines = parse_csv(text, frozenset(ARM_PROFILES))
    except RegistryError as err:
        raise _error(web.HTTPBadRequest, str(err)) from None
    for cohort in {line.cohort for line in lines}:
        _managed_cohort(request, cohort)
    with _registry_change(request):
        made = await request.app[HUB_KEY].accounts.import_lines(lines)
    return web.json_response({"accounts": [{"username": c.username, "password": c.password} for c in made]}, status=201)


async def tokens_list(request: web.Request) -> web.Response:
    token = _token(request)
    _check(token.role == "trainer", "list tokens (trainers only)")
    rows = [
        t.as_json()
        for t in request.app[HUB_KEY].registry.tokens()
        if token.scope == "*" or t.scope.split("/", 1)[0] == token.scope
    ]
    return web.json_response({"tokens": rows})


async def tokens_add(request: web.Request) -> web.Response:
    """A new token: 201 with its secret (shown this once; only a digest is kept)."""
    body = await _body(request)
    role, scope = _text(body, "role"), _text(body, "scope")
    _check(can_grant(_token(request), role, scope), f"create a {role} token for {scope!r}")
    registry = request.app[HUB_KEY].registry
    label = _text(body, "label", "")
    with _registry_change(request):
        token, secret = registry.add_token(role, scope, label)
    return web.json_response(token.as_json() | {"token": secret}, status=201)


async def tokens_revoke(request: web.Request) -> web.Response:
    _check(_token(request).role == "trainer", "revoke tokens (trainers only)")
    registry = request.app[HUB_KEY].registry
    target = registry.token(request.match_info["id"])
    if target is None:
        raise _error(web.HTTPNotFound, "no such token")
    _check(can_grant(_token(request), target.role, target.scope), "revoke this token")
    with _registry_change(request):
        registry.revoke_token(target.id)
    return web.json_response({"revoked": target.id})


# Dashboard data: kinds, latest values, history ---------------------------------------------------------------


async def whoami(request: web.Request) -> web.Response:
    """The token's role and scope (pages adapt to them)."""
    token = _token(request)
    return web.json_response({"id": token.id, "role": token.role, "scope": token.scope, "label": token.label})


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


def _measurement(request: web.Request, ref: DeviceRef) -> tuple[str, str]:
    state = request.app[HUB_KEY].ingest.devices.get(ref)
    if state is None or state.kind is None:
        raise _error(web.HTTPNotFound, f"no device {ref.key} has been seen or registered")
    return state.kind.name, state.kind.measurement_for(ref.cohort, ref.learner)


def _registered_since(request: web.Request, ref: DeviceRef) -> int:
    """When the device was registered (ns), or 0: readings from before belong to an earlier device (or
    learner) of the same name, removed since, and are not shown as this one's."""
    record = request.app[HUB_KEY].registry.device(ref)
    return record.created_ns if record is not None else 0


def _db(request: web.Request) -> InfluxV1:
    """The database, for reading (history, overview, grades): the 1.x API only, for now."""
    backend = request.app[HUB_KEY].backend
    if not isinstance(backend, InfluxV1):
        raise _error(web.HTTPNotImplemented, "history, overviews and grades need the InfluxDB 1.x backend for now")
    return backend


async def _query(request: web.Request, q: str) -> list[dict[str, Any]]:
    try:
        return await _db(request).query(q)
    except StorageError as err:
        raise _error(web.HTTPServiceUnavailable, f"InfluxDB: {err}") from None


MAIN_FIELD = {"air_quality": "pm2_5", "arm": "base"}  # what a dashboard card's sparkline shows
LATEST_WITHIN = "30d"  # "last values" older than this are not looked for (InfluxDB would scan every shard)


async def cohort_overview(request: web.Request) -> web.Response:
    """One request for a whole dashboard: every visible device of the cohort with its state, its last stored
    reading and a sparkline of its main field (`?spark_s=`, default the last 5 minutes, in InfluxDB buckets)."""
    hub = request.app[HUB_KEY]
    cohort = request.match_info["cohort"]
    token = _token(request)
    states = [s for s in hub.ingest.devices.values() if s.ref.cohort == cohort and can_read(token, s.ref)]
    try:
        spark_s = max(30, min(3600, int(request.query.get("spark_s", "300"))))
    except ValueError:
        raise _error(web.HTTPBadRequest, "spark_s: seconds") from None
    if not SEGMENT_RE.fullmatch(cohort):
        raise _error(web.HTTPBadRequest, "not a cohort name")
    latest_by: dict[tuple[str, str], dict[str, Any]] = {}
    since = {(r.ref.learner, r.ref.device): r.created_ns for r in hub.registry.devices(cohort)}
    measurements = {s.kind.measurement_source(cohort) for s in states if s.kind is not None}
    narrow = f" AND learner = '{token.scope.split('/', 1)[1]}'" if token.role == "learner" else ""
    for measurement in sorted(measurements):
        q = (
            f"SELECT * FROM {measurement} WHERE cohort = '{cohort}'{narrow} AND time > now() - {LATEST_WITHIN} "
            "GROUP BY learner, device ORDER BY time DESC LIMIT 1"
        )
        for series in await _query(request, q):
            tags = series.get("tags", {})
            for values in series.get("values", []):
                row = dict(zip(series["columns"], values, strict=False))
                at = row.pop("time")
                key = (tags.get("learner", ""), tags.get("device", ""))
                if at < since.get(key, 0):
                    continue  # an earlier device of that name
                fields = {k: v for k, v in row.items() if k not in ("cohort", "learner", "device") and v is not None}
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
    for measurement, name in sorted(
        {
            (s.kind.measurement_source(cohort), main[(s.ref.learner, s.ref.device)])
            for s in states
            if s.kind is not None and (s.ref.learner, s.ref.device) in main
        }
    ):
        q = (
            f"SELECT mean(\"{name}\") FROM {measurement} WHERE cohort = '{cohort}' AND time > now() - {spark_s}s "
            f"GROUP BY time({interval}s), learner, device fill(none)"
        )
        for series in await _query(request, q):
            key = (series.get("tags", {}).get("learner", ""), series.get("tags", {}).get("device", ""))
            if main.get(key) == name:
                sparks[key] = [
                    [v[0] / 1e9, v[1]]
                    for v in series.get("values", [])
                    if v[1] is not None and v[0] >= since.get(key, 0)
                ]
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
    ref = _ref(request)
    _readable(request, ref)
    kind, measurement = _measurement(request, ref)
    q = (
        f'SELECT * FROM "{measurement}" WHERE {device_clause(ref)} AND time > now() - {LATEST_WITHIN} '
        f"AND time >= {_registered_since(request, ref)} ORDER BY time DESC LIMIT 1"
    )
    series = await _query(request, q)
    fields: dict[str, object] = {}
    at = None
    for s in series:
        for values in s.get("values", []):
            row = dict(zip(s["columns"], values, strict=False))
            at = row.pop("time")
            fields = {k: v for k, v in row.items() if k not in ("cohort", "learner", "device") and v is not None}
    return web.json_response({"device": ref.key, "kind": kind, "time_ns": at, "fields": fields})


async def history(request: web.Request) -> web.Response:
    """One field over a time range, downsampled in InfluxDB: mean, min and max per interval, so a day of 1 Hz
    readings is `points` (default 300) rows; an interval without readings is null (a gap, not a line).
    `from`/`to`: Unix seconds (default: the last hour)."""
    ref = _ref(request)
    _readable(request, ref)
    kind, measurement = _measurement(request, ref)
    name = request.query.get("field", "")
    if not FIELD_NAME_RE.fullmatch(name):
        raise _error(web.HTTPBadRequest, "field: a field name, e.g. ?field=pm2_5")
    try:
        end = float(request.query.get("to", time.time()))
        start = float(request.query.get("from", end - 3600))
        points = max(10, min(2000, int(request.query.get("points", "300"))))
    except ValueError:
        raise _error(web.HTTPBadRequest, "from and to are Unix seconds; points a whole number") from None
    if not 0 < end - start <= 90 * 86400:
        raise _error(web.HTTPBadRequest, "the range must be positive and at most 90 days")
    interval = max(1, math.ceil((end - start) / points))
    since = max(int(start * 1e9), _registered_since(request, ref))
    q = (
        f'SELECT mean("{name}"), min("{name}"), max("{name}") FROM "{measurement}" WHERE {device_clause(ref)} '
        f"AND time >= {since} AND time < {int(end * 1e9)} GROUP BY time({interval}s) fill(null)"
    )
    rows = [values for s in await _query(request, q) for values in s.get("values", [])]
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


# Demo sessions and grades --------------------------------------------------------------------------------


async def sessions_list(request: web.Request) -> web.Response:
    token = _token(request)
    cohort = request.query.get("cohort")
    learner = request.query.get("learner")
    if token.role == "learner":
        cohort, learner = token.scope.split("/", 1)
    elif token.scope != "*":
        if cohort not in (None, token.scope):
            raise _error(web.HTTPForbidden, f"this token may not see cohort {cohort!r}")
        cohort = token.scope
    rows = request.app[HUB_KEY].registry.sessions(cohort, learner)
    return web.json_response({"sessions": [s.as_json() for s in rows[:200]]})


async def sessions_start(request: web.Request) -> web.Response:
    """Start a learner's demo: {"learner": "cohort/learner"} → 201 with the session."""
    body = await _body(request)
    try:
        cohort, learner = check_learner(_text(body, "learner"))
    except RegistryError as err:
        raise _error(web.HTTPBadRequest, str(err)) from None
    _managed_cohort(request, cohort)
    token = _token(request)
    trainer = f"{token.label or 'trainer'} (token {token.id})"
    registry = request.app[HUB_KEY].registry
    with _registry_change(request):
        session = registry.start_session(cohort, learner, trainer)
    log.info("demo %s started for %s/%s by %s", session.id, cohort, learner, trainer)
    return web.json_response(session.as_json(), status=201)


def _session(request: web.Request) -> DemoSession:
    session = request.app[HUB_KEY].registry.session(request.match_info["id"])
    token = _token(request)
    if session is None or not (can_read(token, DeviceRef(session.cohort, session.learner, "x"))):
        raise _error(web.HTTPNotFound, "no such demo session (or not yours to see)")
    return session


async def sessions_stop(request: web.Request) -> web.Response:
    session = _session(request)
    _managed_cohort(request, session.cohort)
    registry = request.app[HUB_KEY].registry
    with _registry_change(request):
        stopped = registry.stop_session(session.id)
    log.info("demo %s of %s/%s stopped", stopped.id, stopped.cohort, stopped.learner)
    return web.json_response(stopped.as_json())


async def sessions_grade(request: web.Request) -> web.Response:
    """The session's grade from what InfluxDB holds for its window (a running session: up to now)."""
    session = _session(request)
    hub = request.app[HUB_KEY]
    db = _db(request)
    if not await hub.flush_evidence(timeout=3.0):
        raise _error(
            web.HTTPServiceUnavailable,
            "readings accepted before now are still on their way to InfluxDB (is it down?): a grade now would miss them",
        )
    try:
        rubrics = load_rubrics()
        report = await grade_session(db, hub.registry, session, rubrics)
    except RubricError as err:
        raise _error(web.HTTPInternalServerError, f"a rubric in config/rubrics is wrong: {err}") from None
    except StorageError as err:
        raise _error(web.HTTPServiceUnavailable, f"InfluxDB: {err}") from None
    return web.json_response(report.as_json())
