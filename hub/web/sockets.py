"""The live WebSocket (/api/live): a read-only stream of some devices' or whole cohorts' events.

Open views are tracked per app: capped per token and in all, closed when the hub stops, and closed at once when
their token is revoked (or its learner disabled) or a device they named is removed from the registry.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiohttp import WSMessage, WSMsgType, web

from devices.text import has_surrogates
from devices.topics import DeviceRef, TopicError
from hub.access.policy import Action, Place
from hub.access.records import Token
from hub.access.tokens import WS_PROTOCOL
from hub.boundary import WEBSOCKET
from hub.web.bodies import HostileBody
from hub.web.common import DEPS_KEY, deps_of, error, readable, require, token_of

MAX_SOCKETS_PER_TOKEN = 8  # live views one token may hold open: a phone, a dashboard and its device pages
MAX_SOCKETS = 512  # live views in all, well under the file descriptors a process gets (1,024 at the least)
WS_MAX_MESSAGE = 4096  # bytes a live view's app may send in one message (the README's 4 KiB)


@dataclass(eq=False, slots=True)
class Socket:
    """An open live view: whose token, and the registered devices it named (it closes if they go)."""

    token: Token
    devices: frozenset[DeviceRef]


SOCKETS_KEY: web.AppKey[dict[web.WebSocketResponse, Socket]] = web.AppKey("sockets", dict)


def track_sockets(app: web.Application) -> None:
    """Open views are closed when the app shuts down, and when the registry takes away what they stand on."""
    app[SOCKETS_KEY] = {}
    app.on_shutdown.append(_close_sockets)
    app[DEPS_KEY].on_tokens_changed(lambda: _close_stale(app))


async def live(request: web.Request) -> web.StreamResponse:
    """WebSocket: `?device=c/l/d` (repeatable) streams those devices' readings, presence, rejections and command
    events; `?cohort=C` (repeatable) streams every device of the cohort, including ones that appear later."""
    try:
        devices = frozenset(DeviceRef.parse(d) for d in request.query.getall("device", []))
    except TopicError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    cohorts = frozenset(request.query.getall("cohort", []))
    if not (devices or cohorts) or len(devices) > 100 or len(cohorts) > 10:
        raise error(web.HTTPBadRequest, "name 1 to 100 devices (?device=cohort/learner/device) or cohorts (?cohort=C)")
    for ref in devices:
        readable(request, ref)
    token = token_of(request)
    for cohort in cohorts:
        require(request, Action.WATCH_COHORT, Place(cohort), f"watch all of cohort {cohort!r}")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
    if offered and WS_PROTOCOL not in offered:  # (aiohttp would log the offered list, token and all)
        raise error(web.HTTPBadRequest, f"offer the {WS_PROTOCOL!r} subprotocol with the token")
    deps = deps_of(request)
    sockets = request.app[SOCKETS_KEY]
    if sum(1 for s in sockets.values() if s.token.id == token.id) >= MAX_SOCKETS_PER_TOKEN:
        raise error(
            web.HTTPTooManyRequests,
            f"this token has {MAX_SOCKETS_PER_TOKEN} live views open already: close one first",
            {"Retry-After": "5"},
        )
    if len(sockets) >= MAX_SOCKETS:
        raise error(web.HTTPServiceUnavailable, "the hub has all the live views it can serve", {"Retry-After": "10"})
    # aiohttp refuses a message of exactly max_msg_size bytes: + 1 lets the promised 4 KiB through.
    ws = web.WebSocketResponse(heartbeat=20, max_msg_size=WS_MAX_MESSAGE + 1, protocols=[WS_PROTOCOL])
    registered = frozenset(ref for ref in devices if deps.registry.device(ref) is not None)
    sockets[ws] = Socket(token, registered)  # counted from now: handshakes in flight take their place too
    try:
        await ws.prepare(request)
        client = deps.watch(devices, cohorts)
    except BaseException:
        sockets.pop(ws, None)
        raise

    async def send() -> None:
        while True:
            await ws.send_json(await client.queue.get())

    sender = asyncio.create_task(send())
    try:
        async for message in ws:  # nothing is expected from the app; whatever comes is handled in a boundary
            with deps.boundaries.guard(WEBSOCKET, f"/api/live (token {token.id})"):
                _from_app(message)
    except Exception as err:  # the socket is open: no HTTP answer can be given any more
        deps.boundaries.failed(WEBSOCKET, f"/api/live (token {token.id})", err)
    finally:
        sender.cancel()
        deps.unwatch(client)
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
    deps = app[DEPS_KEY]
    valid = {token.id for token in deps.tokens().values()}
    sockets = app[SOCKETS_KEY]
    named = set().union(*(s.devices for s in sockets.values())) if sockets else set()
    removed = {ref for ref in named if deps.registry.device(ref) is None}
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
