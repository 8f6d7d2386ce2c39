"""The adversarial suite: hostile input on every surface of a real lab, and what must hold after each batch.

The lab: a closed mosquitto (every device and learner app logs in with its own account, as `labhub up`
runs it), the real influxd, one hub. Two learners (ana, ben) each have an air-quality sensor, an arm (with
hostile firmware answering its commands), a generic device, a learner MQTT app and an API token; ana also
has a USB-serial board behind a bridge. A third learner's canaries (an air-quality sensor and a generic
device) publish readings every 50 ms the whole time. Before the canaries start, the hostile generic devices
try to pin the canaries' field names to other types.

Hypothesis batches (tests/hostile.py) go to every surface: telemetry (JSON, line protocol, bare values on
`telemetry/<field>`), status, ack, commands/request, HTTP command bodies (and their headers, query and path),
WebSocket handshakes and messages, serial lines, cohort CSV imports, and the learner-facing routes from the
learners' apps (showcases published, approved, re-keyed, revoked, listed and visited; kits, diagnoses, replays,
data packs, the replay page). The third learner has a demo and an approved showcase of their own. After each batch:

- the hub is alive (its task runs, it is connected to the broker);
- the canaries' readings are stored within 1 s (no gap over 1 s in what InfluxDB holds, and a reading sent
  after the batch is queryable within 1 s);
- no point exists outside its sender's own series: every series in the database is a measurement the hub
  may write, tagged with a device of this lab that may produce it, tags from closed vocabularies, and field
  names a learner may use;
- every error the hub's loggers wrote was counted by a boundary (hub.boundary);
- the event loop never lagged 100 ms (a probe task in the loop the hub runs on);
- no HTTP request got a 500, and no learner's token reached another learner's device, demo, showcase or pack
  (no 2xx, no answer naming the third learner; their showcase still opens, the lab's showcases and demos are
  unchanged), and every showcase published in the batch renders its Markdown inert through its share link.

The lab doctor reads the broker's events file line by line in even batches and in bulk (its path under load)
in odd ones.

The known-bad payloads of issue 11 also have their own small tests (minimal reproducers), so a regression
names itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import itertools
import json
import logging
import shutil
import threading
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import paho.mqtt.client as paho
import pytest
import yarl
from hypothesis import strategies as st
from paho.mqtt.enums import CallbackAPIVersion

from devices.topics import DeviceRef
from hub.access.cohort_csv import parse_csv
from hub.adapters.serial_port import PortError, SerialPort
from hub.bridges.serial_bridge import Bridge
from hub.config import HubConfig, InfluxConfig, LabConfig, MqttConfig
from hub.doctor.brokerlog import BULK_FROM_LINES
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port
from hub.runtime import Hub
from tests import hostile
from tests.conftest import make_state_dir, unique
from tests.integration.conftest import Services
from tests.support import influx_query

pytestmark = pytest.mark.timeout(150)

CANARY_PERIOD_S = 0.05
MAX_STORE_S = 1.0  # a canary reading is queryable within this, whatever else is sent
MAX_LAG_S = 0.1  # the event loop never stalls longer
BATCHES = 20  # the CI-sized run: Hypothesis batches of hostile input on every surface
CSV_COHORT = "csvk"  # the cohort CSV strategy's placeholder, replaced by a unique name per lab
HOSTILE = ("ana", "ben")
CANARY = "cyd"
LAB_DEVICES = {  # name → (kind, profile)
    "aq1": ("air_quality", ""),
    "arm1": ("arm", "mearm"),
    "gen1": ("generic", ""),
}
SERIAL_DEVICE = "uno"  # ana's USB-serial board (generic)
WS_DEVICE = "ws1"  # ana's device that logs in through /mqtt (MQTT over WebSockets) only
CANARY_DEVICES = {"canq": "air_quality", "cang": "generic"}
ERROR_LOGGERS = ("hub", "devices", "aiohttp", "asyncio")
APPS = 4  # tokens per hostile learner (and the trainer), one per batch in turn: each stays under the API's rate
SHOWCASE_MARKDOWN = "\n\n".join(hostile.HOSTILE_MARKDOWN[:26])  # every trick at once, within the length limit
# The showcase page's own elements (hub/showcase/page.py): anything else active came from a learner's text.
SHOWCASE_OWN_ELEMENTS = [
    ("meta", "charset"),
    ("meta", "viewport"),
    ("meta", "robots"),
    ("link", "icon"),
    ("style", ""),
    ("iframe", "class=replay"),
]


# The closed broker ---------------------------------------------------------------------------------------------


@dataclass
class Broker:
    state: Path
    port: int
    service: Service


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    state = make_state_dir("labhub-adversarial-")
    port = free_port()
    service = start_mosquitto(state, port=port, open_mode=False)
    try:
        yield Broker(state, port, service)
    finally:
        service.stop()
        shutil.rmtree(state, ignore_errors=True)


# Clients --------------------------------------------------------------------------------------------------------


class Client:
    """A paho client (MQTT 3.1.1, its own thread) logged in with one account."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.connected = threading.Event()
        self.got: list[tuple[str, bytes]] = []
        self.on_message: Any = None
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=unique("adv-"))
        self.client.username_pw_set(username, password)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        self.client.on_message = self._message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _message(self, client: Any, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.got.append((msg.topic, bytes(msg.payload)))
        if self.on_message is not None:
            self.on_message(msg.topic, bytes(msg.payload))

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> paho.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class FeedPort(SerialPort):
    """A serial port whose bytes come from the test (the bridge's own reader thread reads them)."""

    def __init__(self, url: str, baud: int) -> None:
        super().__init__(url, baud)
        self.chunks: list[bytes] = []
        self.lock = threading.Lock()
        self.opened = False

    def open(self) -> None:
        self.opened = True

    @property
    def is_open(self) -> bool:
        return self.opened

    def read(self) -> bytes:
        if not self.opened:
            raise PortError("closed")
        with self.lock:
            if self.chunks:
                return self.chunks.pop(0)
        time.sleep(0.01)
        return b""

    def write(self, data: bytes) -> None:
        if not self.opened:
            raise PortError("closed")

    def close(self) -> None:
        self.opened = False

    def feed(self, data: bytes) -> None:
        with self.lock:
            self.chunks.append(data)


class ErrorLog(logging.Handler):
    """Every record at ERROR or above from the hub's side of the lab (its own loggers, aiohttp's, asyncio's)."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ERROR_LOGGERS:
            self.records.append(record)


class LagProbe:
    """Measures how late the event loop wakes a sleeper (what every other task on the loop suffers too)."""

    def __init__(self, period: float = 0.005) -> None:
        self.period = period
        self.worst = 0.0
        self.samples: list[float] = []
        self.woke = asyncio.Event()

    async def run(self) -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(self.period)
            lag = time.monotonic() - started - self.period
            self.worst = max(self.worst, lag)
            self.samples.append(lag)
            if len(self.samples) > 200_000:
                del self.samples[:100_000]
            self.woke.set()

    def take(self) -> float:
        worst, self.worst = self.worst, 0.0
        return worst

    async def restart(self) -> None:
        """Starts a fresh count once the probe has woken: the sleep it was in may span a stall from before
        (the test's own `gc.collect()` ran synchronously just before the first batch and was charged to it)."""
        self.woke.clear()
        await self.woke.wait()
        self.take()


# The lab ----------------------------------------------------------------------------------------------------------


@dataclass
class Device:
    ref: DeviceRef
    kind: str
    client: Client | None = None
    commands_seen: int = 0


@dataclass
class Outcome:
    """What one batch sent and what it broke."""

    sent: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    lag_s: float = 0.0
    canary_gap_s: float = 0.0
    canary_store_s: float = 0.0
    boundary_failures: dict[str, int] = field(default_factory=dict)


class Lab:
    """A running hub on the closed broker, its devices, learners and canaries (see the module docstring)."""

    def __init__(self, services: Services, broker: Broker) -> None:
        self.services = services
        self.broker = broker
        self.cohort = unique("adv")
        self.csv_cohort = unique("csv")
        name = unique()
        self.cfg = LabConfig(
            state_dir=broker.state,
            mqtt=MqttConfig(port=broker.port, launch=False, client_id=f"hub-{name}"),
            influx=InfluxConfig(url=services.influx_url, database=name, launch=False),
            hub=HubConfig(http_port=0, open_mode=False, registry=str(broker.state / "registries" / f"{name}.sqlite3")),
        )
        self.db = name
        self.devices: dict[str, Device] = {}  # "learner/device" → device
        self.learner_apps: dict[str, Client] = {}
        self.tokens: dict[str, str] = {}
        self.errors = ErrorLog()
        self.lag = LagProbe()
        self.hub: Hub | None = None
        self.task: asyncio.Task[None] | None = None
        self.tasks: list[asyncio.Task[Any]] = []
        self.bridge: Bridge | None = None
        self.serial_port: FeedPort | None = None
        self.canary_stop = threading.Event()
        self.canary_thread: threading.Thread | None = None
        self.canary_sent = 0
        self.firmware_acks: list[dict[str, Any]] = [{"status": "accepted"}]
        self.http: aiohttp.ClientSession | None = None
        self.base = ""
        self.ws_login = ("", "")
        self.passwords: dict[str, str] = {}
        self.counted = 0  # boundary failures seen so far
        self.sessions: dict[str, Any] = {}  # learner → their stopped demo (DemoSession)
        self.showcases: dict[str, tuple[str, str]] = {}  # learner → their approved showcase's (slug, share key)
        self.batches = 0  # batches sent so far: which learner app tokens and which visitor address the next uses
        self.answered: dict[str, set[int]] = {}  # learner-facing route → the statuses it answered
        self.logged = 0  # error records seen so far

    # The lab doctor's two ways of reading the broker's events -----------------------------------

    def broker_log_in_bulk(self, bulk: bool) -> None:
        """Every read of the broker's events in bulk (as under load, past BULK_FROM_LINES lines) or line by line
        (the classroom's rates), so hostile traffic reaches the doctor through both."""
        assert self.hub is not None and self.hub.doctor.follower is not None
        self.hub.doctor.follower.bulk_from_lines = 0 if bulk else BULK_FROM_LINES

    def bulk_reads(self) -> int:
        assert self.hub is not None and self.hub.doctor.follower is not None
        return self.hub.doctor.follower.bulk_reads

    # Start and stop ----------------------------------------------------------------------------

    async def start(self) -> None:
        logging.getLogger().addHandler(self.errors)
        hub = self.hub = Hub(self.cfg)
        self.task = asyncio.create_task(hub.run())
        ready = asyncio.create_task(hub.ready.wait())
        await asyncio.wait([self.task, ready], timeout=30, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if self.task.done():
            self.task.result()
        assert hub.mqtt.connected.is_set(), f"hub did not connect: {hub.mqtt.last_error}"
        self.tasks.append(asyncio.create_task(self.lag.run()))
        rows = ["cohort,learner,device,kind,profile,description"]
        for learner in (*HOSTILE, CANARY):
            rows.append(f"{self.cohort},{learner},,,,")
        for learner in HOSTILE:
            rows += [f"{self.cohort},{learner},{d},{kind},{profile}," for d, (kind, profile) in LAB_DEVICES.items()]
        rows.append(f"{self.cohort},ana,{SERIAL_DEVICE},generic,,")
        rows.append(f"{self.cohort},ana,{WS_DEVICE},generic,,")
        rows += [f"{self.cohort},{CANARY},{d},{kind},," for d, kind in CANARY_DEVICES.items()]
        made = await hub.accounts.import_lines(parse_csv("\n".join(rows), frozenset(["mearm", "braccio"])))
        hub.apply_registry()
        passwords = {c.username: c.password for c in made}
        ws_ref = DeviceRef(self.cohort, "ana", WS_DEVICE)
        self.ws_login = (ws_ref.key, passwords[ws_ref.key])
        self.passwords = passwords  # HTTP telemetry posts as the devices' own accounts
        for learner in HOSTILE:
            for name, (kind, _) in LAB_DEVICES.items():
                self._device(learner, name, kind, passwords)
            self.learner_apps[learner] = app = Client(
                self.broker.port, f"{self.cohort}/{learner}", passwords[f"{self.cohort}/{learner}"]
            )
            app.client.subscribe(f"lab/{self.cohort}/{learner}/+/commands/result", qos=1)
            self.tokens[learner] = hub.registry.add_token("learner", f"{self.cohort}/{learner}", "adversarial")[1]
        for name, kind in CANARY_DEVICES.items():
            self._device(CANARY, name, kind, passwords)
        self.tokens["trainer"] = hub.registry.add_token("trainer", self.csv_cohort, "adversarial")[1]
        self.tokens["ana-live"] = hub.registry.add_token("learner", f"{self.cohort}/ana", "adversarial live")[1]
        for learner, n in itertools.product(HOSTILE, range(APPS)):
            self.tokens[f"{learner}-app{n}"] = hub.registry.add_token("learner", f"{self.cohort}/{learner}", "app")[1]
            self.tokens[f"lab-trainer{n}"] = hub.registry.add_token("trainer", self.cohort, "showcases")[1]
        for learner in (*HOSTILE, CANARY):
            self.sessions[learner] = hub.registry.start_session(self.cohort, learner, "adversarial")
        hub.apply_registry()
        for device in self.devices.values():
            if device.kind == "arm" and device.client is not None:
                device.client.client.subscribe(device.ref.topic("commands"), qos=1)
                device.client.on_message = self._firmware(device)
        for client in [*(d.client for d in self.devices.values()), *self.learner_apps.values()]:
            assert client is not None
            assert await asyncio.to_thread(client.connected.wait, 10), "a lab client did not connect"
        # ana's USB-serial board, through a bridge logged in with its own bridge account.
        serial_ref = DeviceRef(self.cohort, "ana", SERIAL_DEVICE)
        self.devices[f"ana/{SERIAL_DEVICE}"] = Device(serial_ref, "generic")
        self.devices[f"ana/{WS_DEVICE}"] = Device(ws_ref, "generic")  # logs in through /mqtt only
        login = await hub.accounts.bridge_login(serial_ref.key)
        ports: list[FeedPort] = []

        def port_factory(url: str, baud: int) -> SerialPort:
            ports.append(FeedPort(url, baud))
            return ports[-1]

        self.bridge = Bridge(
            serial_ref,
            "feed://",
            mqtt_port=self.broker.port,
            username=login.username,
            password=login.password,
            port_factory=port_factory,
        )
        self.serial_port = ports[0]
        self.tasks.append(asyncio.create_task(self.bridge.run()))
        await asyncio.wait_for(self.bridge.mqtt.connected.wait(), 10)
        await asyncio.wait_for(self.bridge.port_open.wait(), 10)
        self.http = aiohttp.ClientSession()
        self.base = f"http://127.0.0.1:{hub.http_port}"
        await self.pin_attack()
        self.canary_thread = threading.Thread(target=self._canaries, daemon=True)
        self.canary_thread.start()
        await self.wait_for(
            lambda: all(self.state(f"{CANARY}/{d}").received > 0 for d in CANARY_DEVICES), "canaries heard"
        )
        await self.showcase_setup()
        self.counted, self.logged = self.boundary_total(), len(self.errors.records)

    async def showcase_setup(self) -> None:
        """Each learner's demo stopped, and published by their trainer as an approved showcase (with its grade,
        so its data pack is offered too) whose description holds every hostile Markdown trick."""
        assert self.hub is not None and self.http is not None
        for learner, session in self.sessions.items():
            self.sessions[learner] = self.hub.registry.stop_session(session.id)
            body = {
                "learner": f"{self.cohort}/{learner}",
                "title": f"{learner}'s <b>project</b>",
                "description": SHOWCASE_MARKDOWN,
                "session": session.id,
                "show_grade": True,
            }
            async with self.http.post(
                self.base + "/api/showcases", json=body, headers=self.auth("lab-trainer0")
            ) as resp:
                answer = await resp.json()
                assert resp.status == 201, answer
            self.showcases[learner] = (answer["slug"], answer["key"])

    def _device(self, learner: str, name: str, kind: str, passwords: dict[str, str]) -> None:
        ref = DeviceRef(self.cohort, learner, name)
        self.devices[f"{learner}/{name}"] = Device(ref, kind, Client(self.broker.port, ref.key, passwords[ref.key]))

    async def stop(self) -> None:
        self.canary_stop.set()
        if self.canary_thread is not None:
            await asyncio.to_thread(self.canary_thread.join, 5)
        for client in [*(d.client for d in self.devices.values() if d.client), *self.learner_apps.values()]:
            client.close()
        if self.http is not None:
            await self.http.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.hub is not None and self.task is not None and not self.task.done():
            self.hub.stop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.task, 30)
        logging.getLogger().removeHandler(self.errors)

    # Helpers ------------------------------------------------------------------------------------

    def auth(self, who: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def names(self, sender: str, new_slug: str | None) -> dict[str, str]:
        """The lab's names for the learner-facing requests' placeholders (tests/hostile.py), as `sender` sees them."""
        return {
            hostile.ME: sender,
            hostile.OTHER: CANARY,
            hostile.COHORT: self.cohort,
            hostile.SESSION: self.sessions[sender].id,
            hostile.OTHER_SESSION: self.sessions[CANARY].id,
            hostile.SLUG: self.showcases[sender][0],
            hostile.KEY: self.showcases[sender][1],
            hostile.OTHER_SLUG: self.showcases[CANARY][0],
            hostile.NEW_SLUG: new_slug or "project-000000",
        }

    def state(self, key: str) -> Any:
        assert self.hub is not None
        return self.hub.ingest.devices[self.devices[key].ref]

    def boundary_total(self) -> int:
        counted = 0
        for owner in (self.hub, self.bridge):
            boundaries = getattr(owner, "boundaries", None)
            counted += int(getattr(boundaries, "total", 0))
        return counted

    def boundary_failures(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for owner in (self.hub, self.bridge):
            failures = getattr(getattr(owner, "boundaries", None), "failures", {})
            for (surface, error), n in failures.items():
                out[f"{surface}/{error}"] = out.get(f"{surface}/{error}", 0) + n
        return out

    async def wait_for(self, check: Any, what: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not check():
            if time.monotonic() > deadline or (self.task is not None and self.task.done()):
                raise AssertionError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    def query(self, q: str) -> list[dict[str, Any]]:
        return influx_query(self.services.influx_port, self.db, q)

    def _canaries(self) -> None:
        """Every 50 ms, one reading from each canary (receipt-stamped by the hub)."""
        aq, gen = self.devices[f"{CANARY}/canq"], self.devices[f"{CANARY}/cang"]
        n = 0
        while not self.canary_stop.wait(CANARY_PERIOD_S):
            n += 1
            assert aq.client is not None and gen.client is not None
            aq.client.publish(aq.ref.topic("telemetry"), json.dumps({"temperature": 20 + n % 50 / 10}).encode())
            gen.client.publish(
                gen.ref.topic("telemetry"),
                json.dumps({"level": n * 1.0, "count": n % 7, "label": "ok", "on": n % 2 == 0}).encode(),
            )
            self.canary_sent = n

    def _firmware(self, arm: Device) -> Any:
        """Hostile arm firmware: accepts each command, then answers it with the batch's hostile acknowledgements."""

        def on_command(topic: str, payload: bytes) -> None:
            try:
                command_id = str(json.loads(payload)["id"])
            except (ValueError, KeyError, TypeError):
                return
            assert arm.client is not None
            arm.commands_seen += 1
            arm.client.publish(
                arm.ref.topic("ack"), json.dumps({"id": command_id, "status": "accepted"}).encode(), qos=1
            )
            body = dict(self.firmware_acks[arm.commands_seen % len(self.firmware_acks)])
            body["id"] = command_id
            arm.client.publish(arm.ref.topic("ack"), hostile.encode(hostile.dump(body)), qos=1)

        return on_command

    async def pin_attack(self) -> None:
        """Before the canaries start: hostile generic devices send the canaries' field names with other types."""
        ana, ben = self.devices["ana/gen1"], self.devices["ben/gen1"]
        assert ana.client is not None and ben.client is not None
        ana.client.publish(ana.ref.topic("telemetry"), b'{"level": "high", "count": "many", "label": 2.5, "on": 1}', 1)
        ben.client.publish(ben.ref.topic("telemetry"), b"m level=true,count=5i,label=false,on=3i", 1)
        await self.barriers()
        await self.settled()

    async def settled(self, timeout: float = 5.0) -> None:
        """Everything accepted so far is in InfluxDB (or refused by it)."""
        assert self.hub is not None
        hub = self.hub
        with contextlib.suppress(AssertionError):
            await self.wait_for(lambda: not hub.spool.unstored_bytes, "the writer to drain", timeout)

    # Barriers: each sender's last message is one the hub visibly handles, so all before it were handled.

    async def barriers(self, timeout: float = 10.0) -> None:
        assert self.hub is not None
        markers: dict[str, bytes] = {}
        for key, device in self.devices.items():
            if device.client is None or key.startswith(CANARY):
                continue
            marker = f"b{uuid.uuid4().hex[:12]}"
            markers[key] = f'"barrier": "{marker}"'.encode()
            device.client.publish(device.ref.topic("telemetry"), json.dumps({"barrier": marker}).encode(), qos=1)
        serial_marker = f"b{uuid.uuid4().hex[:12]}"
        assert self.serial_port is not None
        self.serial_port.feed(f"\nbarrier={serial_marker}\n".encode())
        markers[f"ana/{SERIAL_DEVICE}"] = f'"barrier": "{serial_marker}"'.encode()
        requests: dict[str, str] = {}
        for learner, app in self.learner_apps.items():
            requests[learner] = request_id = uuid.uuid4().hex
            body = json.dumps({"type": "stop", "request_id": request_id}).encode()
            app.publish(DeviceRef(self.cohort, learner, "aq1").topic("commands/request"), body, qos=1)

        def waiting() -> list[str]:
            keys = [k for k, m in markers.items() if not any(m in e.payload for e in self.state(k).inspector)]
            return keys + [
                f"{learner}'s app"
                for learner, request_id in requests.items()
                if not any(request_id.encode() in p for _, p in self.learner_apps[learner].got)
            ]

        try:
            await self.wait_for(lambda: not waiting(), "every hostile sender's last message to be handled", timeout)
        except AssertionError:
            details = []
            for key in waiting():
                if key in self.devices:
                    device, state = self.devices[key], self.state(key)
                    connected = device.client.client.is_connected() if device.client else "bridge"
                    details.append(f"{key} (connected: {connected}, received by the hub: {state.received})")
                else:
                    details.append(key)
            raise AssertionError(f"the hub never handled the last message of {', '.join(details)}") from None

    # Sending -------------------------------------------------------------------------------------

    def hostile_devices(self, kind: str | None = None) -> list[Device]:
        return [
            d
            for k, d in self.devices.items()
            if not k.startswith(CANARY) and d.client is not None and (kind is None or d.kind == kind)
        ]

    async def send(self, batch: Batch, outcome: Outcome) -> None:
        """Every surface at once: MQTT from threads, HTTP and WebSocket from the loop, serial through the bridge."""
        self.firmware_acks = batch.firmware or [{"status": "done"}]
        devices = self.hostile_devices()
        arms = self.hostile_devices("arm")
        jobs: dict[Client, list[tuple[str, bytes, int, bool]]] = {}

        def add(client: Client | None, topic: str, payload: bytes, qos: int, retain: bool = False) -> None:
            assert client is not None
            jobs.setdefault(client, []).append((topic, payload, qos, retain))

        for i, (payload, qos) in enumerate(batch.telemetry):
            d = devices[i % len(devices)]
            add(d.client, d.ref.topic("telemetry"), payload, qos)
        for i, (name, payload, qos) in enumerate(batch.bare):
            d = devices[(i + 1) % len(devices)]
            add(d.client, d.ref.topic("telemetry") + "/" + name, payload, qos)
        for i, (payload, retain) in enumerate(batch.status):
            d = devices[(i + 2) % len(devices)]
            add(d.client, d.ref.topic("status"), payload, 1, retain)
        for i, payload in enumerate(batch.acks):
            d = arms[i % len(arms)]
            add(d.client, d.ref.topic("ack"), payload, i % 2)
        for i, payload in enumerate(batch.requests):
            learner = HOSTILE[i % 2]
            device = ("arm1", "arm1", "aq1", "gen1")[i % 4]
            add(
                self.learner_apps[learner],
                DeviceRef(self.cohort, learner, device).topic("commands/request"),
                payload,
                i % 2,
            )
        outcome.sent["mqtt"] = sum(len(v) for v in jobs.values())

        def publish_all(client: Client, messages: list[tuple[str, bytes, int, bool]]) -> None:
            for topic, payload, qos, retain in messages:
                client.publish(topic, payload, qos, retain)

        publishing = [asyncio.to_thread(publish_all, c, m) for c, m in jobs.items()]
        assert self.serial_port is not None
        for chunk in batch.serial:
            self.serial_port.feed(chunk)
        outcome.sent["serial"] = len(batch.serial)
        await asyncio.gather(
            *publishing,
            self.send_http(batch, outcome),
            self.send_ws(batch, outcome),
            self.send_mqtt_ws(batch, outcome),
            self.send_learner(batch, outcome),
        )

    async def send_http(self, batch: Batch, outcome: Outcome) -> None:
        assert self.http is not None
        sent = 0
        for i, command in enumerate(batch.http):
            learner = HOSTILE[i % 2]
            other = HOSTILE[(i + 1) % 2]
            target = DeviceRef(self.cohort, learner if i % 5 else other, "arm1")
            path = command.path(target.key)
            query = {"wait": command.wait.encode("utf-8", "replace").decode()} if command.wait is not None else {}
            headers = {"Authorization": f"Bearer {self.tokens[learner]}"}
            if command.content_type:
                headers["Content-Type"] = command.content_type
            if command.idempotency_key is not None:
                headers["Idempotency-Key"] = command.idempotency_key
            try:
                async with self.http.post(self.base + path, params=query, data=command.body, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, ValueError) as err:
                outcome.problems.append(
                    f"HTTP {path[:80]!r}: the request failed ({type(err).__name__}: {str(err)[:100]})"
                )
                continue
            sent += 1
            if status >= 500:
                outcome.problems.append(f"HTTP POST {path[:80]!r} body {command.body[:80]!r}: {status}")
            if target.learner != learner and command.path_device is None and 200 <= status < 300:
                outcome.problems.append(f"HTTP: {learner}'s token commanded {target.key} ({status})")
        for i, csv in enumerate(batch.csv):
            body = csv.replace(CSV_COHORT.encode(), self.csv_cohort.encode())
            headers = {"Authorization": f"Bearer {self.tokens['trainer']}", "Content-Type": "text/csv"}
            async with self.http.post(self.base + "/api/registry/import", data=body, headers=headers) as resp:
                await resp.read()
                sent += 1
                if resp.status >= 500:
                    outcome.problems.append(f"cohort CSV #{i} {body[:120]!r}: {resp.status}")
        outcome.sent["http"] = sent + await self.send_http_telemetry(batch, outcome)

    async def send_http_telemetry(self, batch: Batch, outcome: Outcome) -> int:
        """The batch's first hostile telemetry payloads posted over HTTP (bounded: 12), as the device's own
        account, with a wrong password, or as another learner's device on this one's path. Never a 5xx but 503,
        never a 2xx without the device's own account."""
        assert self.http is not None
        posts = [(p, "") for p, _ in batch.telemetry[:8]] + [(p, f) for f, p, _ in batch.bare[:4]]
        for i, (payload, field_name) in enumerate(posts):
            ref = DeviceRef(self.cohort, HOSTILE[i % 2], "gen1" if i % 4 < 2 else "aq1")
            user = DeviceRef(self.cohort, HOSTILE[(i + 1) % 2], ref.device).key if i % 3 == 2 else ref.key
            password = self.passwords[user] + ("x" if i % 3 == 1 else "")
            quoted = (
                "/" + urllib.parse.quote(field_name.encode("utf-8", "replace").decode(), safe="") if field_name else ""
            )
            path = f"/api/devices/{ref.key}/telemetry{quoted}"
            headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
            try:
                async with self.http.post(self.base + path, data=payload, headers=headers) as resp:
                    await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, ValueError) as err:
                outcome.problems.append(
                    f"HTTP telemetry {path[:80]!r}: failed ({type(err).__name__}: {str(err)[:100]})"
                )
                continue
            if status >= 500 and status != 503:
                outcome.problems.append(f"HTTP telemetry {path[:80]!r} body {payload[:80]!r}: {status}")
            if i % 3 and 200 <= status < 300:
                outcome.problems.append(
                    f"HTTP telemetry {path[:80]!r} as {user} ({'wrong password' if i % 3 == 1 else 'foreign'}): {status}"
                )
        return len(posts)

    async def send_learner(self, batch: Batch, outcome: Outcome) -> None:
        """The learner-facing routes (showcases, kits, diagnoses, replays, data packs) with hostile paths, queries
        and bodies, from ana's and ben's apps at once: never a 5xx, never a 2xx for the canary learner's things,
        never the canary's name in an answer. Then the showcases this batch published are approved and their share
        links fetched (their Markdown rendered safe), and the lab's own showcases and demos are unchanged."""
        requests = [r for drawn in batch.learner for r in drawn]
        self.batches += 1
        published: dict[str, list[tuple[str, str]]] = {learner: [] for learner in HOSTILE}
        # From an address of its own for each batch: showcases limit visits per address (5/s), and this suite
        # wants its visits to reach the handler.
        local = aiohttp.TCPConnector(local_addr=(f"127.0.0.{2 + self.batches % 250}", 0))
        async with aiohttp.ClientSession(connector=local) as http:
            sent = await asyncio.gather(
                *(
                    self.learner_app(http, learner, requests[i :: len(HOSTILE)], published[learner], outcome)
                    for i, learner in enumerate(HOSTILE)
                )
            )
            outcome.sent["learner_http"] = sum(sent)
            await self.check_showcases(http, published, outcome)

    async def learner_app(
        self,
        http: aiohttp.ClientSession,
        sender: str,
        requests: Sequence[hostile.LearnerRequest],
        published: list[tuple[str, str]],
        outcome: Outcome,
    ) -> int:
        """`requests` in turn from one of `sender`'s app tokens; the showcases it published go to `published`."""
        canary_name = f"{self.cohort}/{CANARY}"
        sent = 0
        for request in requests:
            names = self.names(sender, published[-1][0] if published else None)
            url = yarl.URL(self.base + request.url(names), encoded=True)
            headers = self.auth(f"{sender}-app{self.batches % APPS}")
            if request.body is not None:
                headers["Content-Type"] = "application/json"
            try:
                async with http.request(
                    request.method, url, data=request.data(names), headers=headers, allow_redirects=False
                ) as resp:
                    answer = await resp.read()
                    status = resp.status
            except (aiohttp.ClientError, ValueError) as err:
                outcome.problems.append(f"{request.surface} {str(url)[:100]!r}: failed ({type(err).__name__}: {err})")
                continue
            sent += 1
            self.answered.setdefault(request.surface, set()).add(status)
            where = (
                f"{request.surface} {request.method} {str(url.relative())[:100]!r} body {(request.body or b'')[:80]!r}"
            )
            if status >= 500:
                outcome.problems.append(f"{where}: {status} {answer[:200]!r}")
            if 200 <= status < 300 and request.foreign():
                outcome.problems.append(f"{where}: {sender}'s token got {status} for the canary learner's")
            if 200 <= status < 300 and canary_name.encode() in answer:
                outcome.problems.append(f"{where}: {sender}'s token got an answer naming {canary_name}")
            if request.surface == "showcase/publish" and status == 201:
                made = json.loads(answer)
                published.append((made["slug"], made["key"]))
            if request.surface == "showcase/rekey" and status == 200:  # its own: opened with the new key below
                made = json.loads(answer)
                published[:] = [(slug, made["key"] if slug == made["slug"] else key) for slug, key in published]
        return sent

    async def check_showcases(
        self, http: aiohttp.ClientSession, published: dict[str, list[tuple[str, str]]], outcome: Outcome
    ) -> None:
        """The showcases learners published in this batch (up to 6), approved and opened through their share links:
        nothing active from their Markdown. The canary's showcase still opens; no lab showcase was changed."""
        assert self.http is not None
        fresh = [p for learner in HOSTILE for p in published[learner]][:6]
        trainer = self.auth(f"lab-trainer{self.batches % APPS}")
        for slug, _ in fresh:
            url = f"{self.base}/api/showcases/{slug}/approve"
            async with self.http.post(url, json={}, headers=trainer) as resp:
                await resp.read()
                if resp.status == 409:  # revoked later in this batch by its own learner
                    continue
                if resp.status != 200:
                    outcome.problems.append(f"showcase {slug}: the trainer's approval got {resp.status}")
                    continue
        canary_slug, canary_key = self.showcases[CANARY]
        for slug, key in [*fresh, (canary_slug, canary_key)]:
            async with http.get(f"{self.base}/showcase/{slug}", params={"k": key}) as resp:
                page = await resp.text()
                if resp.status == 404 and slug != canary_slug:
                    continue  # revoked by its learner in this batch
                if resp.status != 200:
                    outcome.problems.append(f"showcase {slug} through its share link: {resp.status}")
                    continue
            unsafe = hostile.unsafe_html(page, SHOWCASE_OWN_ELEMENTS)
            if unsafe:
                outcome.problems.append(f"showcase {slug}: the page holds {unsafe[:3]}")
            outcome.sent["showcase_pages"] = outcome.sent.get("showcase_pages", 0) + 1
        async with self.http.get(self.base + "/api/showcases", headers=trainer) as resp:
            answer = await resp.json()
            if resp.status != 200:
                outcome.problems.append(f"the trainer's list of showcases: {resp.status} {str(answer)[:200]}")
            listed = {s["slug"]: s for s in answer.get("showcases", [])}
        for learner, (slug, _) in self.showcases.items():
            shown = listed.get(slug, {})
            if (shown.get("state"), shown.get("public"), shown.get("learner")) != (
                "published",
                False,
                f"{self.cohort}/{learner}",
            ):
                outcome.problems.append(f"{learner}'s showcase was changed: {str(shown)[:300]}")
        assert self.hub is not None
        for learner, session in self.sessions.items():
            if self.hub.registry.session(session.id) != session:
                outcome.problems.append(f"{learner}'s demo {session.id} was changed")

    async def send_ws(self, batch: Batch, outcome: Outcome) -> None:
        assert self.http is not None
        sent = 0
        for query in batch.ws_queries:
            url = f"{self.base}/api/live?" + urllib.parse.urlencode(query)
            try:
                async with self.http.ws_connect(url, protocols=("labhub", f"bearer.{self.tokens['ana-live']}")) as ws:
                    await ws.close()
            except aiohttp.WSServerHandshakeError as err:
                if err.status >= 500:
                    outcome.problems.append(f"WebSocket handshake {query!r}: {err.status}")
            sent += 1
        if batch.ws:
            ana = DeviceRef(self.cohort, "ana", "arm1")
            url = f"{self.base}/api/live?device={ana.key}&device={self.cohort}/ana/gen1"
            ws = await self.http.ws_connect(url, protocols=("labhub", f"bearer.{self.tokens['ana-live']}"))
            try:
                for frame in batch.ws:
                    if ws.closed:  # an oversize message closes it (1009): open another
                        ws = await self.http.ws_connect(url, protocols=("labhub", f"bearer.{self.tokens['ana-live']}"))
                    try:
                        if frame.text is not None:
                            await ws.send_str(frame.text)
                        else:
                            await ws.send_bytes(frame.data or b"")
                    except (ConnectionResetError, aiohttp.ClientError):
                        pass
                    sent += 1
                # The view still works: a reading of a watched device arrives on it.
                if not ws.closed:
                    gen = self.devices["ana/gen1"]
                    assert gen.client is not None
                    gen.client.publish(gen.ref.topic("telemetry"), b'{"ws_probe": 1.5}', 1)
                    deadline = time.monotonic() + 2
                    seen = False
                    while time.monotonic() < deadline and not seen:
                        try:
                            msg = await ws.receive(timeout=max(0.01, deadline - time.monotonic()))
                        except TimeoutError:
                            break
                        if msg.type != aiohttp.WSMsgType.TEXT:
                            break
                        seen = "ws_probe" in msg.data
                    if not seen and not ws.closed:
                        outcome.problems.append(
                            "WebSocket: a live view stopped delivering readings after hostile messages"
                        )
            finally:
                await ws.close()
        outcome.sent["websocket"] = sent

    async def send_mqtt_ws(self, batch: Batch, outcome: Outcome) -> None:
        """Hostile byte streams through /mqtt, some after a real login: the broker judges them (the foreign-points
        check sees what got through); the hub answers no handshake 5xx, and every bridge's task ends."""
        assert self.http is not None
        user, password = self.ws_login
        login = hostile.mqtt_packet(
            0x10,
            b"\x00\x04MQTT\x04\xc2\x00\x3c"
            + b"".join(len(f).to_bytes(2, "big") + f for f in (user.encode(),) * 2 + (password.encode(),)),
        )
        sent = 0
        for stream in batch.mqtt_ws:
            try:
                async with self.http.ws_connect(self.base + "/mqtt", protocols=("mqtt",)) as ws:
                    for message in ([login] if stream.login else []) + list(stream.messages):
                        if ws.closed:
                            break
                        if isinstance(message, str):
                            await ws.send_str(message)
                        else:
                            await ws.send_bytes(message.replace(hostile.MQTT_WS_COHORT.encode(), self.cohort.encode()))
                        sent += 1
            except aiohttp.WSServerHandshakeError as err:
                if err.status >= 500:
                    outcome.problems.append(f"/mqtt handshake: {err.status}")
            except (ConnectionResetError, aiohttp.ClientError):
                pass
        bridges = [t for t in asyncio.all_tasks() if t.get_name() == "mqtt-ws-down"]
        if bridges and (await asyncio.wait(bridges, timeout=5))[1]:
            outcome.problems.append("/mqtt: a bridge's task outlived its WebSocket by 5 s")
        outcome.sent["mqtt_ws"] = sent

    # Checking ------------------------------------------------------------------------------------

    async def run_batch(self, batch: Batch) -> Outcome:
        outcome = Outcome()
        await self.lag.restart()
        started_ns = time.time_ns()
        await self.send(batch, outcome)
        try:
            await self.barriers()
        except AssertionError as err:
            outcome.problems.append(f"intake stalled: {err}")
        await self.check(outcome, started_ns)
        return outcome

    async def check(self, outcome: Outcome, since_ns: int) -> None:
        assert self.hub is not None and self.task is not None
        hub = self.hub
        problems = outcome.problems
        if self.task.done():
            error = self.task.exception() if not self.task.cancelled() else None
            problems.append(f"the hub stopped: {type(error).__name__}: {error}" if error else "the hub stopped")
        if not hub.mqtt.connected.is_set():
            problems.append(f"the hub is not connected to the broker: {hub.mqtt.last_error}")
        if self.bridge is not None and any(t.done() for t in self.tasks):
            problems.append("the serial bridge (or the lag probe) stopped")
        await self.check_canaries(outcome, since_ns)
        await self.settled()
        problems += await asyncio.to_thread(self.foreign_points)
        counted = self.boundary_total()
        records = self.errors.records[self.logged :]
        uncounted = [r for r in records if r.name != "hub.boundary"]
        if len(uncounted) > counted - self.counted:
            for record in uncounted[:5]:
                problems.append(
                    f"error logged but not counted by a boundary: {record.name}: {record.getMessage()[:300]}"
                )
        outcome.boundary_failures = self.boundary_failures()
        self.counted, self.logged = counted, len(self.errors.records)
        outcome.lag_s = self.lag.take()
        if outcome.lag_s >= MAX_LAG_S:
            problems.append(f"the event loop lagged {outcome.lag_s * 1000:.0f} ms (limit {MAX_LAG_S * 1000:.0f} ms)")

    async def check_canaries(self, outcome: Outcome, since_ns: int) -> None:
        """A canary reading sent now is queryable within 1 s, and none of what was stored since `since_ns` has
        a gap over 1 s (the hub stamps receipt time, so a stalled intake shows as a gap)."""
        probe_ns = time.time_ns()
        worst_store = 0.0
        for name, kind in CANARY_DEVICES.items():
            ref = self.devices[f"{CANARY}/{name}"].ref
            measurement = hostile.reading_measurement(kind, ref)
            column = "temperature" if kind == "air_quality" else "level"
            where = f"device = '{name}' AND learner = '{CANARY}' AND cohort = '{self.cohort}'"

            def stored_after(t_ns: int, m: str = measurement, c: str = column, w: str = where) -> list[int]:
                series = self.query(f'SELECT "{c}" FROM "{m}" WHERE {w} AND time >= {t_ns}')
                return [row[0] for row in series[0]["values"]] if series else []

            deadline = time.monotonic() + MAX_STORE_S + CANARY_PERIOD_S
            seen: list[int] = []
            while time.monotonic() < deadline:
                seen = await asyncio.to_thread(stored_after, probe_ns)
                if seen:
                    break
                await asyncio.sleep(0.02)
            store_s = (time.time_ns() - probe_ns) / 1e9
            if not seen:
                state = self.hub.ingest.devices.get(ref) if self.hub else None
                detail = (
                    f"received {state.received}, stored {state.stored}, rejected {dict(state.rejected)}"
                    if state
                    else "unknown to the hub"
                )
                outcome.problems.append(f"canary {ref.key}: nothing stored within {MAX_STORE_S} s ({detail})")
                store_s = float("inf")
            worst_store = max(worst_store, store_s)
            times = [since_ns, *sorted(await asyncio.to_thread(stored_after, since_ns)), probe_ns]
            gap = max(b - a for a, b in itertools.pairwise(times)) / 1e9
            outcome.canary_gap_s = max(outcome.canary_gap_s, gap)
            if gap > MAX_STORE_S:
                outcome.problems.append(f"canary {ref.key}: a gap of {gap:.2f} s in its stored readings")
        outcome.canary_store_s = worst_store

    def foreign_points(self) -> list[str]:
        """Every series in the database belongs to its sender and to a measurement the hub may write."""
        allowed = hostile.allowed_series([(d.ref, d.kind) for d in self.devices.values()])
        keys = [row[0] for s in self.query("SHOW SERIES") for row in s.get("values", [])]
        fields = {s["name"]: [row[0] for row in s.get("values", [])] for s in self.query("SHOW FIELD KEYS")}
        return hostile.foreign_points(keys, fields, allowed)


class Batch:
    """One batch of hostile input for every surface (Hypothesis draws it; its repr stays short)."""

    def __init__(
        self,
        telemetry: list[tuple[bytes, int]],
        bare: list[tuple[str, bytes, int]],
        status: list[tuple[bytes, bool]],
        acks: list[bytes],
        firmware: list[dict[str, Any]],
        requests: list[bytes],
        http: list[hostile.HttpCommand],
        ws: list[hostile.WsFrame],
        ws_queries: list[list[tuple[str, str]]],
        mqtt_ws: list[hostile.MqttWsStream],
        serial: list[bytes],
        csv: list[bytes],
        learner: list[list[hostile.LearnerRequest]],
    ) -> None:
        self.mqtt_ws, self.learner = mqtt_ws, learner
        self.telemetry, self.bare, self.status, self.acks, self.firmware = telemetry, bare, status, acks, firmware
        self.requests, self.http, self.ws, self.ws_queries, self.serial, self.csv = (
            requests,
            http,
            ws,
            ws_queries,
            serial,
            csv,
        )

    def __repr__(self) -> str:
        sizes = {k: len(v) for k, v in vars(self).items()}
        return f"Batch({', '.join(f'{k}={n}' for k, n in sizes.items())})"


qos = st.sampled_from([0, 1])
# Per surface: what Hypothesis draws, and how many of them one batch sends.
PER_BATCH: dict[str, tuple[st.SearchStrategy[Any], int]] = {
    "telemetry": (st.tuples(st.one_of(hostile.telemetry_json, hostile.telemetry_lp), qos), 45),
    "bare": (st.tuples(hostile.telemetry_field, st.one_of(hostile.bare_payload, hostile.random_bytes), qos), 15),
    "status": (st.tuples(hostile.status_payload, st.booleans()), 6),
    "acks": (hostile.ack_payload(), 12),
    "firmware": (hostile.ack_bodies, 5),
    "requests": (hostile.command_payload, 16),
    "http": (hostile.http_commands, 10),
    "ws": (hostile.ws_frames, 6),
    "ws_queries": (hostile.ws_queries, 1),
    "mqtt_ws": (hostile.mqtt_ws_stream(), 3),
    "serial": (hostile.serial_chunk(), 12),
    "csv": (hostile.cohort_csv(CSV_COHORT), 1),
    "learner": (hostile.learner_requests, 1),  # one request to each learner-facing route (hostile.LEARNER_MIX)
}


def draw_batches(count: int, seed: int = 11) -> list[Batch]:
    """`count` batches, the same every run: each surface's payloads are Hypothesis examples for a fixed seed."""
    pools = {name: hostile.draw(strategy, n * count, seed) for name, (strategy, n) in PER_BATCH.items()}
    batches = [
        Batch(**{name: pools[name][i * n : (i + 1) * n] for name, (_, n) in PER_BATCH.items()}) for i in range(count)
    ]
    batches[0].learner.append(hostile.KNOWN_LEARNER_REQUESTS)
    return batches


@pytest.fixture
async def lab(services: Services, broker: Broker) -> AsyncIterator[Lab]:
    lab = Lab(services, broker)
    try:
        await lab.start()
        yield lab
    finally:
        await lab.stop()


def report(outcomes: Sequence[Outcome]) -> str:
    lines = []
    for i, o in enumerate(outcomes):
        lines.append(
            f"batch {i}: sent {o.sent}; lag {o.lag_s * 1000:.0f} ms, canary gap {o.canary_gap_s:.2f} s, "
            f"canary stored in {o.canary_store_s:.2f} s; boundary failures {o.boundary_failures or 'none'}"
        )
    return "\n".join(lines)


async def test_hostile_batches_on_every_surface_break_nothing(lab: Lab) -> None:
    """The CI-sized run: BATCHES batches of Hypothesis-drawn hostile input, each checked (see the module docstring)."""
    started = time.monotonic()
    batches = await asyncio.to_thread(draw_batches, BATCHES)
    drawn = time.monotonic() - started
    outcomes: list[Outcome] = []
    problems: list[str] = []
    # The collector as `labhub` settles it once the hub is up. Without it, a full collection of this test
    # process's heap (the whole suite's, not the hub's) stalled the loop 100-200 ms, which the hub never sees.
    # Imported here, not at collection: with the lab runner imported early, one of test_fuzz's derandomized
    # searches ("topic: names of any characters") stopped finding its counterexample (seen, not explained).
    from hub.ops.lab import settle_gc

    thresholds = gc.get_threshold()
    gc.collect()
    settle_gc()
    try:
        for i, batch in enumerate(batches):
            lab.broker_log_in_bulk(i % 2 == 1)
            outcome = await lab.run_batch(batch)
            outcomes.append(outcome)
            problems += [f"batch {i}: {p}" for p in outcome.problems]
            if lab.task is None or lab.task.done():
                break  # nothing more to learn from a dead hub
    finally:
        gc.unfreeze()
        gc.set_threshold(*thresholds)
    summary = (
        f"{len(outcomes)} batches in {time.monotonic() - started:.1f} s (drawn in {drawn:.1f} s)\n{report(outcomes)}\n"
        + "learner routes answered: "
        + "; ".join(f"{route} {sorted(statuses)}" for route, statuses in sorted(lab.answered.items()))
    )
    print("\n" + summary)
    assert lab.bulk_reads() > 0, "the lab doctor never read the broker's events in bulk"
    assert not problems, "hostile input broke the lab:\n" + "\n".join(problems[:40]) + "\n" + summary
    # The hostile requests reached the learner-facing handlers, not only the parsers in front of them: every
    # route answered a 2xx at least once (but approval, a trainer's), and no request was turned away for its rate.
    unreached = [
        r
        for r in hostile.LEARNER_ROUTES
        if r != "showcase/approve" and not any(200 <= s < 300 for s in lab.answered.get(r, ()))
    ]
    limited = [r for r, statuses in lab.answered.items() if 429 in statuses]
    assert not unreached and not limited, f"never a 2xx: {unreached}; 429s: {limited}; answers: {lab.answered}"


# The known-bad payloads of issue 11, each alone (a minimal reproducer that names itself) ------------------------


@pytest.mark.parametrize(
    ("sender", "channel", "payload"),
    [
        pytest.param("ana/arm1", "telemetry", b'{"x": "\\udc80"}', id="lone-surrogate-on-an-arms-telemetry"),
        pytest.param("ana/gen1", "telemetry", b'{"label": "\\ud800"}', id="lone-surrogate-in-a-generic-string"),
        pytest.param(
            "ana/arm1",
            "ack",
            b'{"id": "x", "status": "done", "pose": {"base": ' + b"9" * 400 + b"}}",
            id="400-digit-pose-in-an-ack",
        ),
        pytest.param("ana/aq1", "telemetry", b'"' + b'\\"' * 8000, id="16KB-of-escaped-quotes"),
        pytest.param("ana/aq1", "telemetry", b'{"pm2_5": ' + b"9" * 5000 + b"}", id="5000-digit-number"),
        pytest.param("ana/gen1", "telemetry", b"m v=1 " + b"9" * 400, id="400-digit-timestamp-in-line-protocol"),
        pytest.param(
            "ana",
            "commands/request",
            b'{"type": "x\\ninjected,cohort=zz,learner=zz,device=zz v=1 1"}',
            id="newline-in-a-command-type-mqtt",
        ),
        pytest.param(
            "ana",
            "http",
            b'{"type": "x\\ninjected,cohort=zz,learner=zz,device=zz v=1 1"}',
            id="newline-in-a-command-type-http",
        ),
        pytest.param(
            "ana", "http", b'{"type": "move", "targets": {"base": ' + b"9" * 400 + b"}}", id="400-digit-target-http"
        ),
        pytest.param("ana/arm1", "status", b"\xed\xa0\x80online", id="surrogate-bytes-in-a-status"),
    ],
)
async def test_a_known_hostile_payload_breaks_nothing(lab: Lab, sender: str, channel: str, payload: bytes) -> None:
    outcome = Outcome()
    await lab.lag.restart()
    started_ns = time.time_ns()
    if channel == "http":
        assert lab.http is not None
        url = f"{lab.base}/api/devices/{lab.cohort}/{sender}/arm1/commands"
        async with lab.http.post(url, data=payload, headers={"Authorization": f"Bearer {lab.tokens[sender]}"}) as resp:
            await resp.read()
            if resp.status >= 500:
                outcome.problems.append(f"HTTP {resp.status}")
    elif channel == "commands/request":
        topic = DeviceRef(lab.cohort, sender, "arm1").topic(channel)
        lab.learner_apps[sender].publish(topic, payload, 1)
    else:
        device = lab.devices[sender]
        assert device.client is not None
        device.client.publish(device.ref.topic(channel), payload, 1)
    try:
        await lab.barriers()
    except AssertionError as err:
        outcome.problems.append(f"intake stalled: {err}")
    await lab.check(outcome, started_ns)
    assert not outcome.problems, "\n".join(outcome.problems)


async def test_one_learners_generic_device_cannot_get_anothers_fields_refused(lab: Lab) -> None:
    """The lab's start already had ana's and ben's generic devices send the canary's field names as other types
    (text, booleans, integers) before the canary's first reading: the canary must be stored all the same."""
    outcome = Outcome()
    await lab.check(outcome, time.time_ns() - int(0.5e9))
    state = lab.state(f"{CANARY}/cang")
    assert not outcome.problems and not state.rejected, (
        "\n".join(outcome.problems) + f"\ncanary rejections: {dict(state.rejected)}"
    )


async def test_a_showcases_hostile_markdown_renders_inert_through_its_share_link(lab: Lab) -> None:
    """The lab's showcases hold every trick of hostile.HOSTILE_MARKDOWN (script, javascript: and data: links,
    raw HTML, handlers): through the share link, each is text or a safe link, never an element or a script URL."""
    assert lab.http is not None
    slug, key = lab.showcases["ana"]
    async with lab.http.get(f"{lab.base}/showcase/{slug}", params={"k": key}) as resp:
        page = await resp.text()
        assert resp.status == 200, page[:300]
    assert hostile.unsafe_html(page, SHOWCASE_OWN_ELEMENTS) == []
    assert "<script" not in page and "<h1>ana&#x27;s &lt;b&gt;project&lt;/b&gt;</h1>" in page
    description = page.split('<section class="description">', 1)[1].split("</section>", 1)[0]
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in description and "&lt;img src=x onerror=alert(1)&gt;" in description
    )
    assert 'href="javascript' not in description.lower() and 'href="data:' not in description


@pytest.mark.parametrize("window", [{"from": "1e300"}, {"to": "-1e300"}, {"from": "0", "to": "1.7976931348623157e308"}])
async def test_a_replay_window_beyond_floats_is_refused_not_a_failure(lab: Lab, window: dict[str, str]) -> None:
    """Unix seconds that are finite as a float but not in nanoseconds (1e300 s): 400 naming the range, as for any
    other time outside 1970–2262, and no boundary failure (it was a 500: OverflowError from round(inf))."""
    assert lab.http is not None
    failures = lab.boundary_total()
    url = f"{lab.base}/api/devices/{lab.cohort}/ana/aq1/replay"
    async with lab.http.get(url, params=window, headers=lab.auth("ana")) as resp:
        answer = await resp.json()
    assert resp.status == 400 and "1970" in answer["error"], answer
    assert lab.boundary_total() == failures
