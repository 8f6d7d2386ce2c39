"""The serial bridge: a USB-serial prototype becomes a lab device on MQTT (the port itself: hub.adapters.serial_port).

Up the cable: bytes → framer (devices.serial_protocols) → readings on the device's `telemetry` topic (the hub
validates them like any other), acknowledgements on `ack`, problems on `errors` and in the log. Down the
cable: the device's `commands`, one JSON line each.

Serial life is messy, and the bridge never dies of it: a port that is absent at start or pulled out is
retried with capped backoff (so a replugged board is back within half a second); a board reset's boot
garbage, half lines and checksum errors are reported and skipped (logged once a minute per kind, every one
counted). Each line or frame is handled inside a boundary (hub.boundary): whatever a bug lets escape is
counted and logged once a minute per port, and reading goes on. While the broker is unreachable, readings
wait in a small bounded buffer (the oldest go first, counted). The bridge logs in with its own broker
account, which may speak for its one device and report on that device's `errors` topic.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from devices.feedback import render
from devices.problems import Problem
from devices.serial_protocols import (
    AckLine,
    Event,
    LineFramer,
    Sds011Framer,
    SerialProblem,
    Telemetry,
    encode_command,
    parse_line,
)
from devices.topics import DeviceRef
from hub.adapters.mqtt import Message, MqttClient, Will
from hub.adapters.serial_port import PortError, SerialPort
from hub.boundary import SERIAL, Boundaries, escape
from hub.pace import Backoff, TokenBucket

log = logging.getLogger(__name__)
T = TypeVar("T")

REOPEN = Backoff(first_s=0.05, cap_s=0.5, jitter=False)  # a missing port (a cheap failed open): then twice a second
REOPEN_CAPPED = 10  # an attempt number whose delay is the cap
STABLE_S = 1.0  # a port that stayed open this long resets the reopening backoff
ERRORS_PER_S = 2.0  # problem reports on the errors topic, per bridge (a noisy cable would flood it)
ERRORS_BURST = 10.0
PROBLEM_LOG_EVERY_S = 60.0  # one log line per problem code and bridge in this time; the rest are counted
DEFAULT_BAUD = {"lines": 115200, "sds011": 9600}  # one per protocol of devices.serial_protocols.PROTOCOLS


@dataclass(slots=True)
class BridgeStats:
    readings: int = 0
    acks: int = 0
    commands: int = 0
    problems: int = 0
    buffered_dropped: int = 0
    opens: int = 0
    losses: int = 0
    problem_codes: dict[str, int] = field(default_factory=dict)


class Bridge:
    """One serial port ↔ one lab device."""

    def __init__(
        self,
        ref: DeviceRef,
        port: str,
        protocol: str = "lines",
        baud: int | None = None,
        *,
        mqtt_host: str = "127.0.0.1",
        mqtt_port: int = 1883,
        username: str | None = None,
        password: str | None = None,
        buffer_size: int = 1000,
        port_factory: Callable[[str, int], SerialPort] = SerialPort,
        boundaries: Boundaries | None = None,
        language: str = "en",
    ) -> None:
        if protocol not in DEFAULT_BAUD:
            raise ValueError(f"unknown protocol {protocol!r} (known: {', '.join(DEFAULT_BAUD)})")
        self.ref = ref
        self.protocol = protocol
        self.language = language  # of the problem reports, as the hub answers this cohort (devices.feedback)
        self.port = port_factory(port, baud or DEFAULT_BAUD[protocol])
        self._framer: LineFramer | Sds011Framer = LineFramer() if protocol == "lines" else Sds011Framer()
        self.stats = BridgeStats()
        self.boundaries = boundaries if boundaries is not None else Boundaries()
        self._problem_logged: dict[str, tuple[float, int]] = {}  # code → (last logged, not logged since)
        self._buffer: deque[tuple[str, bytes, int, bool]] = deque(maxlen=buffer_size)
        self._error_bucket = TokenBucket(ERRORS_PER_S, ERRORS_BURST)
        self._suppressed = 0
        self.port_open = asyncio.Event()
        self._downlink: asyncio.Queue[bytes] = asyncio.Queue(maxsize=100)
        # Every port operation runs on this one thread, in turn: a close never races a read or a write,
        # and a slow port never takes threads from the hub's own pool (the spool's fsyncs).
        self._io = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"serial-{ref.device}")
        self._opened_at = 0.0
        self.mqtt = MqttClient(
            mqtt_host,
            mqtt_port,
            f"bridge-{ref.cohort}-{ref.learner}-{ref.device}",
            on_message=self._on_command,
            on_connect=self._on_connect,
            subscriptions=[(ref.topic("commands"), 1)] if protocol == "lines" else [],
            will=Will(ref.topic("status"), b"offline"),
            username=username,
            password=password,
        )

    # MQTT side ------------------------------------------------------------------------------------

    def _on_connect(self) -> None:
        self.mqtt.publish(self.ref.topic("status"), b"online" if self.port_open.is_set() else b"offline", 1, True)
        while self._buffer and self.mqtt.connected.is_set():
            topic, payload, qos, retain = self._buffer.popleft()
            self.mqtt.publish(topic, payload, qos, retain)

    def _publish(self, channel: str, payload: bytes, qos: int = 0, retain: bool = False) -> None:
        topic = self.ref.topic(channel)
        if self.mqtt.connected.is_set() and not self._buffer and self.mqtt.publish(topic, payload, qos, retain):
            return
        if len(self._buffer) == self._buffer.maxlen:
            self.stats.buffered_dropped += 1
            if self.stats.buffered_dropped in (1, 10, 100) or self.stats.buffered_dropped % 1000 == 0:
                log.warning(
                    "%s: broker unreachable and the buffer is full: %d oldest messages dropped",
                    self.ref.key,
                    self.stats.buffered_dropped,
                )
        self._buffer.append((topic, payload, qos, retain))

    def _on_command(self, msg: Message) -> None:
        if msg.retain:
            return  # an old command kept by the broker is not an order to move now
        try:
            line = encode_command(msg.payload)
        except ValueError as err:
            log.warning("%s: a command was not sent down the cable: %s", self.ref.key, escape(err))
            return
        if not self.port_open.is_set():  # never replay it later: the hub has given up on it by then
            self._problem(SerialProblem(Problem("port_not_connected")))
            return
        try:
            self._downlink.put_nowait(line)
        except asyncio.QueueFull:
            self._problem(SerialProblem(Problem("commands_backlog")))

    # Serial side ----------------------------------------------------------------------------------

    def _problem(self, problem: SerialProblem) -> None:
        """Log it and tell the device's errors topic (rate-limited; the rest are counted)."""
        self.stats.problems += 1
        self.stats.problem_codes[problem.code] = self.stats.problem_codes.get(problem.code, 0) + 1
        now = time.monotonic()
        logged, unlogged = self._problem_logged.get(problem.code, (-1e18, 0))
        if now - logged >= PROBLEM_LOG_EVERY_S:
            self._problem_logged[problem.code] = (now, 0)
            more = f" ({unlogged} more since the last report)" if unlogged else ""
            message = render(problem.problem)["message"]  # the log is in English, whatever the cohort's language
            log.warning("%s: %s: %s%s", self.ref.key, problem.code, escape(message), more)
        else:
            self._problem_logged[problem.code] = (logged, unlogged + 1)
        if not self._error_bucket.take(now):
            self._suppressed += 1
            return
        body = problem.as_json(self.language) | {"device": self.ref.key, "time_ns": time.time_ns()}
        if self._suppressed:
            body["suppressed_before"] = self._suppressed
            self._suppressed = 0
        self._publish("errors", json.dumps(body).encode())

    def handle(self, data: bytes) -> None:
        """Bytes from the cable → readings, acknowledgements and problems. Each line or frame is handled inside
        the boundary: a failure drops that one, is counted and logged (once a minute per port), and the rest
        goes on; a framer that failed starts afresh at the next line or frame."""
        items: list[bytes | Event] = []
        with self.boundaries.guard(SERIAL, self.port.url):
            try:
                items = list(self._framer.feed(data))
            except Exception:
                self._framer.resync()
                raise
        for item in items:
            with self.boundaries.guard(SERIAL, self.port.url):
                self._handle_one(item)

    def _handle_one(self, item: bytes | Event) -> None:
        event: Event | None = parse_line(item) if isinstance(item, bytes) else item
        if isinstance(event, Telemetry):
            self.stats.readings += 1
            self._publish("telemetry", event.payload)
        elif isinstance(event, AckLine):
            self.stats.acks += 1
            self._publish("ack", event.payload, qos=1)
        elif isinstance(event, SerialProblem):
            self._problem(event)

    async def _port(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, call)

    async def _open(self) -> None:
        """Open the port, retrying with capped backoff for as long as it takes."""
        # A port that failed soon after opening keeps backing off (no tight open-fail loop).
        attempt = 0 if time.monotonic() - self._opened_at >= STABLE_S else REOPEN_CAPPED
        first = True
        while True:
            try:
                await self._port(self.port.open)
                break
            except PortError as err:
                if first and self.stats.opens == 0:
                    where = {"port": self.port.url, "detail": str(err)}
                    self._problem(SerialProblem(Problem("port_absent", params=where)))
                first = False
                await asyncio.sleep(REOPEN.delay(attempt))
                attempt += 1
        self._opened_at = time.monotonic()
        self.stats.opens += 1
        self._framer.reset()
        self.port_open.set()
        log.info("%s: %s open at %d baud (%s)", self.ref.key, escape(self.port.url), self.port.baud, self.protocol)
        self._publish("status", b"online", qos=1, retain=True)

    async def _lost(self, err: PortError) -> None:
        self.port_open.clear()
        await self._port(self.port.close)
        self.stats.losses += 1
        self._problem(SerialProblem(Problem("port_lost", params={"port": self.port.url, "detail": str(err)})))
        self._publish("status", b"offline", qos=1, retain=True)

    async def _reader(self) -> None:
        while True:
            try:
                if not self.port.is_open:
                    await self._open()
                try:
                    data = await self._port(self.port.read)
                except PortError as err:
                    await self._lost(err)
                    continue
                if data:
                    self.handle(data)
            except Exception:  # a bug of ours must not end the bridge: log it and go on reading
                log.exception("%s: internal error in the serial reader", self.ref.key)
                await asyncio.sleep(0.5)

    async def _writer(self) -> None:
        while True:
            line = await self._downlink.get()
            if not self.port_open.is_set():
                self._problem(SerialProblem(Problem("port_not_connected", entry="port_closed_before_write")))
                continue
            try:
                await self._port(functools.partial(self.port.write, line))
                self.stats.commands += 1
            except PortError as err:
                self._problem(SerialProblem(Problem("write_failed", params={"detail": str(err)})))
            except Exception:
                log.exception("%s: internal error in the serial writer", self.ref.key)

    async def run(self) -> None:
        """Until cancelled."""
        async with asyncio.TaskGroup() as tg:
            tasks = [
                tg.create_task(self.mqtt.run(), name=f"bridge-mqtt-{self.ref.key}"),
                tg.create_task(self._reader(), name=f"bridge-read-{self.ref.key}"),
                tg.create_task(self._writer(), name=f"bridge-write-{self.ref.key}"),
            ]
            try:
                await asyncio.Event().wait()
            finally:
                if self.mqtt.connected.is_set():
                    self.mqtt.publish(self.ref.topic("status"), b"offline", qos=1, retain=True)
                await self.mqtt.stop()
                for task in tasks:
                    task.cancel()
                self._io.submit(self.port.close)  # after any read or write in progress
                self._io.shutdown(wait=False)
