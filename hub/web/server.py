"""Serving the API: the app from its dependencies, on a TCP port (in LAN mode also on the LAN's, over TLS), with its
cleanup on the caller's exit stack."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from hub.adapters.tls import NO_LAN, LabTls, listeners
from hub.boundary import HTTP, ServerLogFilter
from hub.config import LanConfig
from hub.web.app import create_app
from hub.web.deps import WebDeps

log = logging.getLogger(__name__)


async def serve(
    deps: WebDeps, stack: contextlib.AsyncExitStack, lan: LanConfig = NO_LAN, tls: LabTls | None = None
) -> int:
    """Listen on hub.http_host:http_port (0: any free port) until `stack` closes, and in LAN mode on the LAN's
    listeners too (HTTPS with `tls`; plain HTTP only with lan.plain); the port of the first. OSError if it cannot
    listen, the address in its `filename`. Requests aiohttp cannot even parse are counted by the hub's boundaries,
    not logged each time."""
    if lan.enabled and tls is None:
        raise RuntimeError("LAN mode without the lab's TLS files")
    server_log = logging.getLogger("aiohttp.server")
    parse_errors = ServerLogFilter(deps.boundaries, HTTP)
    server_log.addFilter(parse_errors)
    stack.callback(server_log.removeFilter, parse_errors)
    runner = web.AppRunner(create_app(deps), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    own, *on_lan = listeners(deps.config.http_host, deps.config.http_port, lan.https_port, lan)
    context = tls.server_context() if tls is not None else None
    for site in (own, *on_lan):
        try:
            await web.TCPSite(runner, site.host, site.port, ssl_context=context if site.tls else None).start()
        except OSError as err:
            raise OSError(err.errno, err.strerror, f"{site.host}:{site.port}") from None
    for site in on_lan:
        if site.tls:
            log.info("hub API on https://%s:%d for the LAN", site.host, site.port)
        else:
            log.warning(
                "WARNING: plain HTTP on the LAN at %s:%d (lan.plain): tokens cross it in clear", site.host, site.port
            )
    return int(runner.addresses[0][1])
