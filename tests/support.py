"""Test helpers: an independent MQTT subscriber and publisher (plain paho), an MQTT v5 client that records the
broker's answers, InfluxDB queries, waiting with deadlines."""

from __future__ import annotations

import asyncio
import base64
import json
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode
from paho.mqtt.reasoncodes import ReasonCode

from tests.conftest import unique


class MqttListener:
    """A real subscriber, independent of the hub's adapter: paho in its own thread, messages into an asyncio queue."""

    def __init__(self, port: int, topic: str, auth: tuple[str, str] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"test-listener-{id(self)}")
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.subscribe(topic, qos=1)
        self.client.loop_start()

    def _on_message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self._loop.call_soon_threadsafe(self.queue.put_nowait, (msg.topic, bytes(msg.payload)))

    async def ready(self, timeout: float = 5.0) -> MqttListener:
        if not await asyncio.to_thread(self._subscribed.wait, timeout):
            raise TimeoutError("subscription not acknowledged")
        return self

    async def next(self, timeout: float = 5.0) -> tuple[str, bytes]:
        return await asyncio.wait_for(self.queue.get(), timeout)

    async def next_json(self, timeout: float = 5.0) -> dict[str, Any]:
        _, payload = await self.next(timeout)
        result: dict[str, Any] = json.loads(payload)
        return result

    def pending(self) -> int:
        """Messages received and not taken yet."""
        return self.queue.qsize()

    def close(self) -> None:
        self.client.disconnect()  # wakes paho's thread, so loop_stop() does not wait out its select()
        self.client.loop_stop()


class MqttPublisher:
    """A device-like publisher on its own connection."""

    def __init__(self, port: int, client_id: str = "", auth: tuple[str, str] | None = None) -> None:
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or f"test-pub-{id(self)}")
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    async def publish(self, topic: str, payload: bytes | str, qos: int = 1) -> None:
        info = self.client.publish(topic, payload, qos=qos)
        await asyncio.to_thread(info.wait_for_publish, 5)

    def close(self) -> None:
        self.client.disconnect()  # wakes paho's thread, so loop_stop() does not wait out its select()
        self.client.loop_stop()


@dataclass
class MqttV5:
    """An MQTT v5 client (plain paho, its own thread; over TCP, or WebSockets at /mqtt) that records what the broker
    answers: the CONNACK's reason code, each acknowledgement's, and the messages it receives. Its waits block (paho's
    thread goes on meanwhile); async tests use the `a`-prefixed twins, `accepted` and `received`, which do not."""

    port: int
    username: str | None
    password: str | None = field(repr=False)  # never in a test report
    client_id: str = ""  # a unique one unless given
    websockets: bool = False
    connected: threading.Event = field(default_factory=threading.Event, init=False)
    refused: threading.Event = field(default_factory=threading.Event, init=False)  # by the CONNACK
    lost: threading.Event = field(default_factory=threading.Event, init=False)  # the connection closed, for any reason
    reason: int | None = field(default=None, init=False)  # the CONNACK's reason code (0: accepted)
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list, init=False)  # topic, payload, retain

    def __post_init__(self) -> None:
        self.client_id = self.client_id or unique("v5-")
        self._acks: dict[int, Any] = {}
        self._acked = threading.Condition()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=paho.MQTTv5,
            transport="websockets" if self.websockets else "tcp",
        )
        if self.websockets:
            self.client.ws_set_options(path="/mqtt")
        if self.username is not None:
            self.client.username_pw_set(self.username, self.password)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *args: self.lost.set()
        self.client.on_publish = self._on_ack
        self.client.on_subscribe = self._on_ack
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, bytes(m.payload), bool(m.retain)))
        self.client.reconnect_delay_set(60, 60)  # no automatic reconnect within a test: the test decides
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()

    @property
    def got(self) -> list[tuple[str, bytes]]:
        """The messages received so far: topic and payload."""
        return [(topic, payload) for topic, payload, _ in self.messages]

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: ReasonCode, props: Any) -> None:
        self.reason = int(reason.value)  # before the events, so a waiter that sees one reads the code
        (self.refused if reason.is_failure else self.connected).set()

    def _on_ack(self, client: Any, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        with self._acked:
            self._acks[mid] = reason
            self._acked.notify_all()

    def _answer(self, timeout: float) -> int | None:
        """The CONNACK's reason code, or None if the connection closed without one."""
        deadline = time.monotonic() + timeout
        while not (self.connected.wait(0.02) or self.refused.is_set() or self.lost.is_set()):
            assert time.monotonic() < deadline, f"neither connected nor refused in {timeout} s"
        return self.reason

    def wait_connack(self, timeout: float = 5.0) -> int:
        """The CONNACK's reason code (0: accepted); fails if the connection closed without one."""
        reason = self._answer(timeout)
        assert reason is not None, "the connection closed without a CONNACK"
        return reason

    def wait_connect(self, timeout: float = 5.0) -> bool:
        """True if the broker accepted the connection, False if its CONNACK refused it."""
        return self.wait_connack(timeout) == 0

    async def accepted(self, timeout: float = 5.0) -> bool:
        """True once connected; False once refused, or cut off before that (a full listener closes the connection
        without a CONNACK)."""
        return await asyncio.to_thread(self._answer, timeout) == 0

    def _wait_ack(self, mid: int) -> Any:
        with self._acked:
            assert self._acked.wait_for(lambda: mid in self._acks, 5), "no acknowledgement in 5 s"
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        """QoS 1; the PUBACK's reason code."""
        info = self.client.publish(topic, payload, qos=1, retain=retain)
        return int(self._wait_ack(info.mid).value)

    def subscribe(self, topic: str) -> int:
        """QoS 1; the SUBACK's reason code (the granted QoS, or why not)."""
        _, mid = self.client.subscribe(topic, qos=1)
        return int(self._wait_ack(mid)[0].value)

    async def apublish(self, topic: str, payload: bytes, retain: bool = False) -> int:
        return await asyncio.to_thread(self.publish, topic, payload, retain)

    async def asubscribe(self, topic: str) -> int:
        return await asyncio.to_thread(self.subscribe, topic)

    async def received(self, topic: str, payload: bytes, timeout: float = 5.0) -> None:
        """Wait until this message has arrived."""
        deadline = time.monotonic() + timeout
        while (topic, payload) not in self.got:
            assert time.monotonic() < deadline, f"{topic} {payload!r} not received in {timeout} s: {self.messages}"
            await asyncio.sleep(0.01)

    def close(self) -> None:
        self.client.disconnect()  # wakes paho's thread, so loop_stop() does not wait out its select()
        self.client.loop_stop()


def influx_query(port: int, db: str, q: str, auth: tuple[str, str] | None = None) -> list[dict[str, Any]]:
    """InfluxQL over HTTP; the series of the first statement."""
    url = f"http://127.0.0.1:{port}/query?" + urllib.parse.urlencode({"db": db, "q": q, "epoch": "ns"})
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        data = json.load(resp)
    result = data["results"][0]
    if "error" in result:
        raise AssertionError(f"query {q!r} failed: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def influx_write(port: int, db: str, lines: list[str], chunk: int = 5000) -> None:
    """Line protocol (ns timestamps) into an existing database over HTTP, `chunk` lines a request."""
    for i in range(0, len(lines), chunk):
        query = urllib.parse.urlencode({"db": db, "precision": "ns"})
        body = "\n".join(lines[i : i + chunk]).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/write?{query}", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=30) as resp:
            assert resp.status == 204, resp.read()[:300]


def influx_count(
    port: int, db: str, measurement: str, field: str, where: str = "", auth: tuple[str, str] | None = None
) -> int:
    """How many values of `field` are stored (0 while the database does not exist yet); `measurement` may be
    a regex (`/^generic\\./`: the open kind's measurements of every learner)."""
    clause = f" WHERE {where}" if where else ""
    source = measurement if measurement.startswith("/") else f'"{measurement}"'  # a regex: every learner's
    try:
        series = influx_query(port, db, f'SELECT count("{field}") FROM {source}{clause}', auth)
    except AssertionError as err:
        if "database not found" in str(err):
            return 0
        raise
    return sum(int(s["values"][0][1]) for s in series)


def api_token(hub: Any, role: str = "trainer", scope: str = "*") -> str:
    """A new API token in a running hub's registry, in effect at once."""
    _, secret = hub.registry.add_token(role, scope, "test")
    hub.apply_registry()
    return str(secret)


async def http_json(url: str, token: str | None = None) -> tuple[int, Any]:
    """GET a JSON document from a thread (the hub under test serves from this test's event loop)."""

    def get() -> tuple[int, Any]:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
        try:
            with urllib.request.urlopen(request, timeout=5) as resp:
                return resp.status, json.load(resp)
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read() or b"null")

    return await asyncio.to_thread(get)


def http_get(url: str, token: str, timeout: float = 30) -> tuple[int, bytes]:
    """GET as a token's holder (blocking: call it from a thread while the hub under test serves): status, body."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


async def wait_until(
    check: Callable[[], Any] | Callable[[], Awaitable[Any]], timeout: float = 10.0, what: str = "condition"
) -> Any:
    """Poll `check` (sync or async) until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        last = result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.01)


async def stable(
    read: Callable[[], Any] | Callable[[], Awaitable[Any]],
    ready: Callable[[Any], bool],
    quiet: float = 1.0,
    timeout: float = 20.0,
    what: str = "a stable value",
) -> Any:
    """Poll `read` (sync or async) until `ready(value)` holds and the value has not changed for `quiet` s, then
    return it. Waiting for the value to *stay* put is what lets a caller's exact comparison see late arrivals
    (a duplicate written after the target was first reached); a wait that returned at the first match would not."""
    deadline = time.monotonic() + timeout
    last: Any = object()
    since = time.monotonic()
    while True:
        value = read()
        if asyncio.iscoroutine(value):
            value = await value
        now = time.monotonic()
        if value != last:
            last, since = value, now
        elif ready(value) and now - since >= quiet:
            return value
        if now > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what} (last: {last!r})")
        await asyncio.sleep(0.05)


async def count_when_stable(
    port: int, db: str, measurement: str, field: str, where: str, expected: int, quiet: float = 1.0
) -> int:
    """The count once it has reached `expected` and then stayed unchanged for `quiet` s; compare it with
    `expected` exactly, so a duplicate that arrives after the target was reached is seen."""

    def read() -> Any:
        return asyncio.to_thread(influx_count, port, db, measurement, field, where)

    return int(
        await stable(
            read, lambda n: n >= expected, quiet, what=f"{expected} points in {measurement} where {where or 'true'}"
        )
    )


def cli_config(services: Any, hub: Any, path: Path) -> Path:
    """A lab config for `labhub …` against a test's hub (its registry and database, the session's services)."""
    path.write_text(
        f'state_dir = "{services.state_dir}"\n'
        f"[mqtt]\nport = {services.mqtt_port}\nlaunch = false\n"
        f'[influx]\nurl = "{services.influx_url}"\ndatabase = "{hub.cfg.influx.database}"\nlaunch = false\n'
        f'[hub]\nregistry = "{hub.cfg.registry_path}"\n'
    )
    return path


async def labhub_process(*args: str, ok: bool = True) -> tuple[str, str]:
    """`labhub …` in its own process, without blocking a hub under test (it serves from this event loop); its stdout
    and stderr (the log, where it reports what it did). It must succeed, or with `ok=False` fail."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "hub.cli", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert (proc.returncode == 0) == ok, (args, proc.returncode, err.decode()[-3000:])
    return out.decode(), err.decode()


async def labhub(*args: str, ok: bool = True) -> str:
    """`labhub_process`'s stdout; when it must fail, its stderr too (where the reason is)."""
    out, err = await labhub_process(*args, ok=ok)
    return out if ok else out + err


def connack(port: int, username: str, password: str, client_id: str = "") -> int:
    """The broker's answer to a connection with this account (0: accepted); the client id is the username unless
    given."""
    answer: list[int] = []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or username)
    client.username_pw_set(username, password)
    client.on_connect = lambda c, u, f, rc, p=None: answer.append(rc.value)
    client.connect("127.0.0.1", port)
    deadline = time.monotonic() + 5
    while not answer and time.monotonic() < deadline:
        client.loop(timeout=0.05)
    client.disconnect()
    assert answer, "no CONNACK"
    return answer[0]


async def stop_lab(proc: asyncio.subprocess.Process, timeout: float = 30) -> None:
    """A `labhub` child still running gets SIGTERM first (killed, it would leave its broker and influxd behind),
    and SIGKILL only if it has not stopped within `timeout` s."""
    if proc.returncode is not None:
        return
    proc.terminate()
    try:
        await asyncio.wait_for(proc.wait(), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """`wait_until` for threads and blocking tests: poll `check` until truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class PacedPublisher(threading.Thread):
    """Readings `{"n": i}` at QoS 1 at a steady rate from one paho client, open loop (paced by the clock, whatever
    the hub does): paho keeps what is not acknowledged, queues what is published while disconnected (`offline`
    counts those), and sends both again on reconnect. Runs `total` readings, or until `finish` when None."""

    def __init__(
        self,
        port: int,
        topic: Callable[[int], str],
        rate: float,
        client_id: str,
        total: int | None = None,
        auth: tuple[str, str] | None = None,
        clean_session: bool = True,
        stamp: bool = False,
    ) -> None:
        super().__init__(daemon=True)
        self.topic, self.rate, self.total, self.stamp = topic, rate, total, stamp
        self.published = 0
        self.offline = 0
        self.acknowledged = 0  # PUBACKs received
        self.running = True
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session)
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_publish = self._on_publish
        self.client.max_inflight_messages_set(1000)
        self.client.max_queued_messages_set(0)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_publish(self, *args: Any) -> None:
        self.acknowledged += 1

    def run(self) -> None:
        started = time.monotonic()
        while self.running and (self.total is None or self.published < self.total):
            delay = started + self.published / self.rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            reading: dict[str, Any] = {"n": self.published}
            if self.stamp:  # a device timestamp makes a publisher's own resend idempotent
                reading["ts"] = time.time_ns() // 1000
            info = self.client.publish(self.topic(self.published), json.dumps(reading), qos=1)
            if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN:
                self.offline += 1
            self.published += 1

    def finish(self, timeout: float) -> None:
        """Stop (an open-ended run) or let `total` be published, then wait until the broker acknowledged all."""
        if self.total is None:
            self.running = False
        self.join(timeout)
        wait_for(lambda: self.acknowledged >= self.published, timeout, "the broker to acknowledge every reading")
        self.client.disconnect()
        self.client.loop_stop()
