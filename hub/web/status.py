"""How the hub is doing: /healthz for anyone (the reasons for trainers and viewers), and the lab-wide counters
as JSON (/api/stats) and for Prometheus (/metrics)."""

from __future__ import annotations

from aiohttp import web
from prometheus_client.registry import CollectorRegistry

from hub.access.policy import Action, allows
from hub.access.tokens import bearer_token, lookup
from hub.web.common import deps_of, require
from hub.web.metrics import CONTENT_TYPE, render

METRICS_KEY: web.AppKey[CollectorRegistry] = web.AppKey("metrics", CollectorRegistry)


async def healthz(request: web.Request) -> web.Response:
    """Public: ok or degraded (503), nothing more. The reasons only for a trainer's or viewer's token."""
    deps = deps_of(request)
    health = deps.health()
    status = 200 if health["status"] == "ok" else 503
    token = lookup(deps.tokens(), bearer_token(request.headers.get("Authorization")))
    if token is not None and allows(token, Action.HEALTH_DETAILS):
        return web.json_response(health, status=status)
    return web.json_response({"status": health["status"]}, status=status)


async def metrics(request: web.Request) -> web.Response:
    require(request, Action.LAB_WIDE, None, "see lab-wide metrics (a trainer or viewer of all cohorts may)")
    body = render(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})


async def stats(request: web.Request) -> web.Response:
    require(request, Action.LAB_WIDE, None, "see lab-wide counters (a trainer or viewer of all cohorts may)")
    return web.json_response(deps_of(request).stats())
