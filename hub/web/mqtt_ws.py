"""MQTT over WebSockets (/mqtt, subprotocol `mqtt`): each WebSocket is bridged, byte for byte, to the broker's lab
listener, so that browsers and phone apps reach the lab through the hub's HTTP(S) port.

Nothing is trusted on the hub's side: the bytes are not parsed, the broker authenticates the account, enforces
every ACL and applies its per-client limits exactly as over TCP. What the hub adds is what the broker cannot do,
since it sees every bridged client at the hub's own address: limits per client address (open bridges, connects a
second) and in all, checked before the upgrade (429 or 503); and the lab doctor is told that address is shared, so
no refused login through the bridge is put on a device that once logged in from it.

Backpressure both ways: a WebSocket message is read only once the broker's side has drained the last one, and the
broker's side is read only as fast as the WebSocket sends; a message is at most the broker's largest packet
(`max_packet_size`, 1 MiB) and its headers. Either side closing closes the other; keepalive is MQTT's (the broker's).
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hub.boundary import WEBSOCKET
from hub.config import HubConfig
from hub.pace import RateLimiter
from hub.web.common import DEPS_KEY, deps_of, error

log = logging.getLogger(__name__)

SUBPROTOCOL = "mqtt"  # the MQTT 3.1.1 and 5 specs' name for MQTT over WebSockets
MAX_MESSAGE = (1 << 20) + 4096  # the broker's max_packet_size (1 MiB) and a packet's headers
CHUNK = 1 << 16  # bytes read from the broker at a time: one WebSocket message each
CONNECT_TIMEOUT_S = 5.0
RETRY_AFTER_S = {"per_address": 5, "rate": 1, "hub_full": 10, "broker_unreachable": 5}


@dataclass(slots=True)
class BridgeStats:
    """What the bridges did since the hub started: shown by /metrics."""

    open: int = 0
    opened: int = 0
    bytes_to_broker: int = 0
    bytes_to_clients: int = 0
    refused: Counter[str] = field(default_factory=Counter)  # reason → refusals before the upgrade


@dataclass(slots=True)
class Admission:
    """Who may open a bridge now: at most `per_address` open from one client address, `total` in all, and
    `rate` new ones a second per address (bursts of ten times that). Pure: time is the caller's."""

    per_address: int
    total: int
    rate: RateLimiter
    open: Counter[str] = field(default_factory=Counter)

    @classmethod
    def of(cls, config: HubConfig) -> Admission:
        rate = config.mqtt_ws_connects_per_second
        return cls(config.mqtt_ws_per_address, config.mqtt_ws_max, RateLimiter(rate, max(1.0, 10 * rate)))

    def admit(self, address: str, now: float) -> str | None:
        """None and the bridge counted as open; otherwise why not (a key of RETRY_AFTER_S)."""
        if sum(self.open.values()) >= self.total:
            return "hub_full"
        if self.open[address] >= self.per_address:
            return "per_address"
        if self.rate.check(address, now):
            return "rate"
        self.open[address] += 1
        return None

    def release(self, address: str) -> None:
        self.open[address] -= 1
        if self.open[address] <= 0:
            del self.open[address]


@dataclass(slots=True)
class Bridges:
    """The app's bridges: their admission, counters and open WebSockets (closed when the hub stops)."""

    admission: Admission
    stats: BridgeStats = field(default_factory=BridgeStats)
    sockets: set[web.WebSocketResponse] = field(default_factory=set)
    shared: set[str] = field(default_factory=set)  # addresses the doctor was told are the bridge's


BRIDGES_KEY: web.AppKey[Bridges] = web.AppKey("mqtt_bridges", Bridges)


class BridgeCollector(Collector):
    def __init__(self, stats: BridgeStats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily("labhub_mqtt_ws_open", "MQTT-over-WebSocket bridges open (/mqtt)", value=s.open)
        yield CounterMetricFamily("labhub_mqtt_ws_opened", "MQTT-over-WebSocket bridges opened", value=s.opened)
        moved = CounterMetricFamily(
            "labhub_mqtt_ws_bytes", "Bytes bridged between WebSocket clients and the broker", labels=["direction"]
        )
        moved.add_metric(["to_broker"], s.bytes_to_broker)
        moved.add_metric(["to_clients"], s.bytes_to_clients)
        yield moved
        refused = CounterMetricFamily(
            "labhub_mqtt_ws_refused", "MQTT-over-WebSocket connections refused, by reason", labels=["reason"]
        )
        for reason in RETRY_AFTER_S:
            refused.add_metric([reason], s.refused[reason])
        yield refused


def track_bridges(app: web.Application, metrics: CollectorRegistry) -> None:
    """The app's bridges, their counters in `metrics`, and their close when the hub stops."""
    bridges = app[BRIDGES_KEY] = Bridges(Admission.of(app[DEPS_KEY].config))
    metrics.register(BridgeCollector(bridges.stats))
    app.on_shutdown.append(_close_all)


async def _close_all(app: web.Application) -> None:
    for ws in list(app[BRIDGES_KEY].sockets):
        await ws.close(code=1001, message=b"hub stopping")


def target(host: str, port: int) -> tuple[str, int]:
    """Where to connect for a listener bound to `host`: a wildcard listener is reached on loopback."""
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:
            return ("::1" if ":" in host else "127.0.0.1"), port
    return host, port


async def mqtt_socket(request: web.Request) -> web.StreamResponse:
    """WebSocket /mqtt (subprotocol `mqtt`): an MQTT connection to the broker's lab listener, through the hub."""
    deps = deps_of(request)
    if deps.mqtt_bridge is None:
        raise error(web.HTTPNotFound, "this hub has no MQTT over WebSockets")
    offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",")]
    if SUBPROTOCOL not in offered:
        raise error(web.HTTPBadRequest, f"MQTT over WebSockets: offer the {SUBPROTOCOL!r} subprotocol")
    ws = web.WebSocketResponse(protocols=[SUBPROTOCOL], max_msg_size=MAX_MESSAGE, compress=False, autoping=True)
    if not ws.can_prepare(request).ok:
        raise error(web.HTTPBadRequest, "MQTT over WebSockets: a WebSocket upgrade is expected here")
    bridges = request.app[BRIDGES_KEY]
    address = request.remote or "?"
    refusal = bridges.admission.admit(address, time.monotonic())
    if refusal is not None:
        bridges.stats.refused[refusal] += 1
        raise _refused(refusal)
    try:
        return await _bridge(request, ws, bridges, address)
    finally:
        bridges.admission.release(address)


def _refused(reason: str) -> web.HTTPException:
    headers = {"Retry-After": str(RETRY_AFTER_S[reason])}
    if reason == "per_address":
        return error(web.HTTPTooManyRequests, "too many MQTT connections open from this address", headers)
    if reason == "rate":
        return error(web.HTTPTooManyRequests, "too many new MQTT connections from this address; slow down", headers)
    if reason == "hub_full":
        return error(web.HTTPServiceUnavailable, "the hub has all the MQTT connections it can bridge", headers)
    return error(web.HTTPServiceUnavailable, "the lab's broker cannot be reached; try again shortly", headers)


async def _bridge(
    request: web.Request, ws: web.WebSocketResponse, bridges: Bridges, address: str
) -> web.StreamResponse:
    deps = deps_of(request)
    assert deps.mqtt_bridge is not None
    host, port = target(*deps.mqtt_bridge)
    try:
        async with asyncio.timeout(CONNECT_TIMEOUT_S):
            reader, writer = await asyncio.open_connection(host, port, limit=CHUNK)
    except (OSError, TimeoutError) as err:
        log.warning("/mqtt: the broker at %s:%d cannot be reached (%s)", host, port, err)
        bridges.stats.refused["broker_unreachable"] += 1
        raise _refused("broker_unreachable") from None
    try:
        _tell_doctor(deps.doctor, bridges, writer)
        await ws.prepare(request)
    except BaseException:
        writer.close()
        raise
    stats = bridges.stats
    stats.open += 1
    stats.opened += 1
    bridges.sockets.add(ws)
    down = asyncio.create_task(_to_client(reader, ws, stats), name="mqtt-ws-down")
    try:
        await _to_broker(ws, writer, stats)
    except Exception as err:  # the socket is open: no HTTP answer can be given any more
        deps.boundaries.failed(WEBSOCKET, f"/mqtt ({address})", err)
    finally:
        bridges.sockets.discard(ws)
        stats.open -= 1
        down.cancel()
        writer.close()
        await asyncio.gather(down, return_exceptions=True)
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        if not ws.closed:
            await ws.close(code=1011, message=b"bridge closed")
    return ws


def _tell_doctor(doctor: object, bridges: Bridges, writer: asyncio.StreamWriter) -> None:
    """The broker sees every bridged client at this connection's local address: the doctor must not attribute
    refused logins from it to whichever device last logged in there."""
    sockname = writer.get_extra_info("sockname")
    local = str(sockname[0]) if sockname else ""
    if local and local not in bridges.shared and doctor is not None:
        bridges.shared.add(local)
        shared_address = getattr(doctor, "shared_address", None)
        if shared_address is not None:
            shared_address(local)


async def _to_broker(ws: web.WebSocketResponse, writer: asyncio.StreamWriter, stats: BridgeStats) -> None:
    """WebSocket → broker: one message at a time, the next read once the broker's side has drained."""
    async for message in ws:
        if message.type == WSMsgType.BINARY:
            data: bytes = message.data
            writer.write(data)
            stats.bytes_to_broker += len(data)
            try:
                await writer.drain()
            except ConnectionError:
                return
        elif message.type == WSMsgType.TEXT:  # MQTT's packets travel in binary messages only (the spec)
            await ws.close(code=1003, message=b"MQTT over WebSockets takes binary messages only")
            return
    # The client closed (or its connection broke, or sent a message past MAX_MESSAGE: aiohttp closes with 1009).
    with contextlib.suppress(OSError):
        if writer.can_write_eof():
            writer.write_eof()


async def _to_client(reader: asyncio.StreamReader, ws: web.WebSocketResponse, stats: BridgeStats) -> None:
    """Broker → WebSocket: read only as fast as the WebSocket sends; its end closes the WebSocket with a reason."""
    reason = b"the broker closed the connection"
    try:
        while data := await reader.read(CHUNK):
            await ws.send_bytes(data)
            stats.bytes_to_clients += len(data)
    except ConnectionError:
        if ws.closed:
            return
        reason = b"the connection to the broker was lost"
    await ws.close(code=1000, message=reason)
