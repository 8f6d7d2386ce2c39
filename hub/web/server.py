"""Serving the API: the app from its dependencies, on a TCP port, with its cleanup on the caller's exit stack."""

from __future__ import annotations

import contextlib
import logging

from aiohttp import web

from hub.boundary import HTTP, ServerLogFilter
from hub.web.app import create_app
from hub.web.deps import WebDeps


async def serve(deps: WebDeps, host: str, port: int, stack: contextlib.AsyncExitStack) -> int:
    """Listen on `host`:`port` (0: any free port) until `stack` closes; the port it listens on. OSError if it
    cannot listen. Requests aiohttp cannot even parse are counted by the hub's boundaries, not logged each time."""
    server_log = logging.getLogger("aiohttp.server")
    parse_errors = ServerLogFilter(deps.boundaries, HTTP)
    server_log.addFilter(parse_errors)
    stack.callback(server_log.removeFilter, parse_errors)
    runner = web.AppRunner(create_app(deps), access_log=None)
    await runner.setup()
    stack.push_async_callback(runner.cleanup)
    await web.TCPSite(runner, host, port).start()
    addresses = runner.addresses
    return int(addresses[0][1]) if addresses else port
