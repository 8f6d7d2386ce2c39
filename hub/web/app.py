"""The hub's HTTP API (aiohttp): `create_app(deps)` with its two middlewares and its route table.

The only package that sees aiohttp's request objects. Every answer passes one boundary (a handler's failure is
counted and answered 500 without the hub's insides) and gets headers that keep pages out of frames; every route
but the public ones needs a bearer token, rate-limited per token. The handlers live one module per resource.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.access.tokens import bearer_token, lookup, origin_allowed, retry_after
from hub.boundary import HTTP, escape
from hub.pace import RateLimiter
from hub.web import auth, commands, devices, diagnosis, history, kit, pages, registry, sessions, sockets, status
from hub.web.common import DEPS_KEY, TOKEN_KEY, error
from hub.web.deps import WebDeps
from hub.web.exports import add_routes as add_exports
from hub.web.metrics import registry_for
from hub.web.mqtt_ws import mqtt_socket, track_bridges
from hub.web.openapi import DEVICE_AUTH, PUBLIC
from hub.web.packs import add_routes as add_packs
from hub.web.replay import add_routes as add_replay
from hub.web.showcase import PREFIXES as SHOWCASE_PREFIXES
from hub.web.showcase import add_routes as add_showcases
from hub.web.telemetry import add_routes as add_telemetry

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
LIMITER_KEY: web.AppKey[RateLimiter] = web.AppKey("limiter", RateLimiter)
CSP_KEY: web.AppKey[dict[str, str]] = web.AppKey("csp", dict)

MAX_BODY_BYTES = 64 * 1024  # a command is well under 1 KiB; a cohort CSV of 1,000 lines fits


def create_app(deps: WebDeps) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[boundary, security])
    app[DEPS_KEY] = deps
    app[CSP_KEY] = pages.page_policies()
    app[LIMITER_KEY] = RateLimiter(deps.config.api_requests_per_second, 2 * deps.config.api_requests_per_second)
    app[status.METRICS_KEY] = registry_for(deps)
    app.router.add_get("/", pages.index)
    app.router.add_get("/healthz", status.healthz)
    app.router.add_get("/ca.crt", pages.ca_certificate)
    app.router.add_get("/metrics", status.metrics)
    app.router.add_get("/api/stats", status.stats)
    app.router.add_get("/api/devices", devices.devices)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}", devices.device)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/inspector", devices.inspector)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/kit", kit.device_kit)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/diagnosis", diagnosis.device_diagnosis)
    app.router.add_post("/api/devices/{cohort}/{learner}/{device}/commands", commands.post_command)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/commands", commands.list_commands)
    app.router.add_get("/api/commands/{id}", commands.get_command)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/arm", commands.arm_profile)
    add_telemetry(app, deps.config.telemetry_posts_per_second)  # device accounts (Basic), not tokens
    app.router.add_get("/api/live", sockets.live)
    app.router.add_get("/mqtt", mqtt_socket)
    app.router.add_get("/api/openapi.json", pages.openapi)
    for path in pages.PAGES:
        app.router.add_get(path, pages.page)
    app.router.add_get("/static/vendor/uplot/{name}", pages.vendor)
    app.router.add_get("/static/labhub.js", pages.shared_script)
    app.router.add_get("/static/diagnosis.js", pages.shared_script)
    app.router.add_get("/static/replay.js", pages.shared_script)
    app.router.add_get("/api/kinds", devices.kinds)
    app.router.add_get("/api/whoami", auth.whoami)
    app.router.add_get("/api/cohorts/{cohort}/overview", history.cohort_overview)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/latest", history.latest)
    app.router.add_get("/api/devices/{cohort}/{learner}/{device}/history", history.history)
    add_exports(app)
    add_packs(app)
    add_showcases(app)
    add_replay(app)
    app.router.add_get("/api/sessions", sessions.sessions_list)
    app.router.add_post("/api/sessions", sessions.sessions_start)
    app.router.add_post("/api/sessions/{id}/stop", sessions.sessions_stop)
    app.router.add_get("/api/sessions/{id}/grade", sessions.sessions_grade)
    app.router.add_get("/api/registry/devices", registry.registry_devices)
    app.router.add_post("/api/registry/devices", registry.registry_add_device)
    app.router.add_delete("/api/registry/devices/{cohort}/{learner}/{device}", registry.registry_remove_device)
    app.router.add_post("/api/registry/devices/{cohort}/{learner}/{device}/{action}", registry.registry_device_action)
    app.router.add_get("/api/registry/learners", registry.registry_learners)
    app.router.add_post("/api/registry/learners", registry.registry_add_learner)
    app.router.add_post("/api/registry/learners/{cohort}/{learner}/{action}", registry.registry_learner_action)
    app.router.add_post("/api/registry/import", registry.registry_import)
    app.router.add_get("/api/tokens", auth.tokens_list)
    app.router.add_post("/api/tokens", auth.tokens_add)
    app.router.add_delete("/api/tokens/{id}", auth.tokens_revoke)
    sockets.track_sockets(app)
    track_bridges(app, app[status.METRICS_KEY])
    return app


# Every answer: a boundary around the handler, and headers that keep pages out of frames and sniffing --------


def _harden(headers: Any, request: web.Request) -> None:
    if not (request.path.startswith(SHOWCASE_PREFIXES) and "Content-Security-Policy" in headers):  # sets its own
        headers["Content-Security-Policy"] = request.app[CSP_KEY].get(request.path, pages.API_POLICY)
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
        request.app[DEPS_KEY].boundaries.failed(HTTP, _route_of(request), err)
        response = web.json_response({"error": INTERNAL_ERROR}, status=500)
    if not response.prepared:
        _harden(response.headers, request)
    return response


# Security: every route needs a token except these (health, and pages that hold no data and log in) -------

PUBLIC_PATHS = frozenset(PUBLIC)
PUBLIC_PREFIXES = (
    *SHOWCASE_PREFIXES,  # a showcase's key (or its being public) opens it: its handlers check
    "/static/vendor/",
    "/static/labhub.js",
    "/static/diagnosis.js",
    "/static/replay.js",
)  # the pages' scripts: no data


@web.middleware
async def security(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Origin check and CORS, then the bearer token and its rate limit; the token is in request[TOKEN_KEY]."""
    deps = request.app[DEPS_KEY]
    allowed = deps.config.allowed_origins
    origin = request.headers.get("Origin")
    if not origin_allowed(origin, request.host, allowed):
        raise error(
            web.HTTPForbidden, f"origin {origin[:100] if origin else ''!r} is not allowed (hub.allowed_origins)"
        )
    cors = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"} if origin and origin in allowed else {}
    if request.method == "OPTIONS" and cors:  # a browser's preflight for an allow-listed origin
        cors["Access-Control-Allow-Methods"] = "GET, POST, DELETE"
        cors["Access-Control-Allow-Headers"] = "Authorization, Content-Type, Idempotency-Key"
        cors["Access-Control-Max-Age"] = "600"
        return web.Response(status=204, headers=cors)
    device_auth = _route_of(request) in DEVICE_AUTH  # a board's own broker account: the route checks it
    if request.path not in PUBLIC_PATHS and not request.path.startswith(PUBLIC_PREFIXES) and not device_auth:
        secret = bearer_token(request.headers.get("Authorization"), request.headers.get("Sec-WebSocket-Protocol"))
        token = lookup(deps.tokens(), secret)
        if token is None:
            raise error(
                web.HTTPUnauthorized,
                "a valid API token is needed: Authorization: Bearer <token> (ask your trainer)"
                if secret is None
                else "this API token is not valid (revoked, or mistyped)",
                {"WWW-Authenticate": 'Bearer realm="labhub"', **cors},
            )
        wait = request.app[LIMITER_KEY].check(token.id, time.monotonic())
        if wait:
            raise error(
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
