"""The hub service: wires MQTT intake, the disk spool, the writer and the HTTP API, and owns their lifecycle.

Every long-lived task starts here, in one TaskGroup; every resource has its cleanup on one exit stack.
The path of a reading: MQTT → ingest (validate, encode) → spool (group commit, fsync) → acknowledge the
QoS 1 message to the broker → writer → InfluxDB → checkpoint. A SIGKILL anywhere loses nothing: what was
not acknowledged comes again from the broker's persistent session, what was spooled is replayed.
Shutdown order: pause intake, commit and acknowledge what is in hand, disconnect, let the writer drain
memory for a bounded time; anything left stays in the spool for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from devices.arm import CommandError, decode_ack
from devices.kinds import ARM
from devices.text import json_has_surrogates
from devices.topics import DeviceRef, TopicError, parse_topic, subscriptions
from devices.validate import FieldValue
from hub.access.accounts import Accounts
from hub.access.credentials import read_secret, save_credentials
from hub.access.dynsec import DynsecError
from hub.access.records import Token
from hub.access.registry import Registry
from hub.adapters.influx import InfluxV1, StorageError, make_backend
from hub.adapters.mqtt import Message, MqttClient
from hub.boundary import MQTT, Boundaries
from hub.commands.audit import CommandAudit, text_of
from hub.commands.relay import CommandRecord, CommandRelay, OfflineError
from hub.config import ARM_PROFILES, DEFAULT_ARM_PROFILE, DeviceConfig, LabConfig, MqttConfig
from hub.ingest.device_table import DeviceState, InspectorEntry
from hub.ingest.pipeline import Ingest
from hub.ingest.spool import AUDIT_KEY, Spool
from hub.ingest.writer import Writer
from hub.ops.services import ServiceError
from hub.web.deps import HubCounters, WebDeps
from hub.web.live import Live, LiveClient
from hub.web.server import serve

log = logging.getLogger(__name__)

BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"
MAX_PENDING_COMMIT = 200_000
REGISTRY_POLL_S = 0.5  # how soon a registry change (a CLI command) reaches the hub
COMMIT_EVERY_S = 0.002  # records waiting for an fsync before intake pauses (a stalled disk)
WATCH_EVERY_S = 0.1  # the watchdog's tick: how late it wakes is the event loop's lag
LAG_WINDOW_S = 5.0  # the lag reported is the worst of this window
LAG_DEGRADED_S = 0.5  # worse than this, /healthz says degraded: every device's answers wait that long
STALL_S = 2.0  # messages waiting and none handled for this long: intake is stalled


def source_of(topic: str) -> str:
    """Who sent a message, for the boundary's log: the device part of its topic (escaped when logged)."""
    return "/".join(topic.split("/", 4)[:4])


def presence_of(state: DeviceState) -> dict[str, object]:
    return {
        "online": state.online,
        "present": state.present,
        "last_seen_ns": state.last_seen_ns or None,
        "rate_per_s": round(state.rate_per_s, 2),
    }


@dataclass(slots=True)
class Watchdog:
    """What the watchdog measured: the event loop's lag, and whether intake moves."""

    lag_s: float = 0.0  # the worst lag over the last LAG_WINDOW_S
    stalled_s: float = 0.0  # how long messages have waited with none handled (0: intake moves)
    stalls: int = 0  # times intake was found stalled

    @property
    def problems(self) -> list[str]:
        out = []
        if self.lag_s > LAG_DEGRADED_S:
            out.append(f"event loop lagging: {self.lag_s * 1000:.0f} ms")
        if self.stalled_s >= STALL_S:
            out.append(f"intake stalled: messages waiting, none handled for {self.stalled_s:.0f} s")
        return out


@dataclass(slots=True)
class Rates:
    """Counters sampled at the last progress report, to print rates."""

    at: float
    received: int = 0
    stored: int = 0
    rejected: int = 0


class AckSlot:
    """One QoS 1 message waiting for its PUBACK."""

    __slots__ = ("mid", "qos", "ready")

    def __init__(self, mid: int, qos: int, ready: bool) -> None:
        self.mid = mid
        self.qos = qos
        self.ready = ready


class Hub:
    """One hub worker. With `workers` > 1, workers share telemetry through an MQTT shared subscription; each
    has its own client id, spool and HTTP port (http_port + worker)."""

    def __init__(self, cfg: LabConfig, report_every_s: float = 10.0, worker: int = 0, workers: int = 1) -> None:
        if workers > 1:
            cfg = dataclasses.replace(
                cfg,
                mqtt=dataclasses.replace(cfg.mqtt, client_id=f"{cfg.mqtt.client_id}-{worker}"),
                hub=dataclasses.replace(cfg.hub, http_port=cfg.hub.http_port + worker if cfg.hub.http_port else 0),
            )
        self.worker = worker
        self.workers = workers
        self.cfg = cfg
        self.report_every_s = report_every_s
        influx_password = (
            read_secret(cfg.secret_file(cfg.influx.password_file, "influx-hub")) if cfg.influx.username else None
        )
        self.backend = make_backend(cfg.influx, influx_password)
        self.boundaries = Boundaries()  # failures of single inputs, by surface and error type
        self.live = Live()
        spool_dir = cfg.state_dir / "spool" / cfg.mqtt.client_id
        self.spool: Spool[InspectorEntry] = Spool(
            spool_dir,
            cfg.hub.spool_max_bytes,
            on_full=self._intake_full,
            on_drained=self._intake_drained,
            memory_points=cfg.hub.queue_max_points,
        )
        self.ingest = Ingest(
            cfg.devices,
            enqueue=self._spool_append,
            is_duplicate=self.spool.seen,
            publish=self._publish_error,
            language=cfg.language,
            open_mode=cfg.hub.open_mode,
            max_payload_bytes=cfg.hub.max_payload_bytes,
            errors_per_second=cfg.hub.errors_per_second,
            inspector_size=cfg.hub.inspector_size,
            stamp_stride=workers,
            stamp_offset=worker,
            on_reading=self._on_reading,
            watch=lambda ref: self.live.watched(ref),
            refresh=lambda: self.apply_registry(),
            audit=self._audit,
            on_rejected=lambda state, problem: self.live.rejection(state.ref, problem),
            clear_retained=lambda topic: self.mqtt.publish(topic, b"", qos=1, retain=True),
        )
        self.registry = Registry(cfg.registry_path)
        self.accounts = Accounts.for_lab(cfg, self.registry)
        self.tokens: dict[str, Token] = {}  # SHA-256 of a token → who it speaks for
        self.token_listeners: list[Callable[[], None]] = []  # told when tokens change (open WebSockets)
        self._registry_version: tuple[int, int] | None = None
        password = read_secret(cfg.secret_file(cfg.mqtt.password_file, "mqtt-hub")) if cfg.mqtt.username else None
        self.mqtt = MqttClient(
            cfg.mqtt.hub_host,
            cfg.mqtt.hub_port,
            self._client_id(cfg),
            on_message=self._on_message,
            on_failure=lambda msg, err: self.boundaries.failed(MQTT, source_of(msg.topic), err),
            on_connect=self._on_connect,
            subscriptions=[(t, 1) for t in subscriptions("labhub" if workers > 1 else None)] + [(BROKER_DROPPED, 0)],
            keepalive=cfg.mqtt.keepalive,
            persistent=True,
            manual_ack=True,
            username=cfg.mqtt.username if password else None,
            password=password,
        )
        command_audit = CommandAudit(self._audit)
        self.relay = CommandRelay(
            {d.ref: ARM_PROFILES[d.profile or DEFAULT_ARM_PROFILE] for d in cfg.devices if d.kind == "arm"},
            publish=lambda topic, payload, qos: self.mqtt.publish(topic, payload, qos=qos),
            audit=command_audit.finished,
            refused=command_audit.refused,
            online=lambda ref: state.online if (state := self.ingest.devices.get(ref)) else None,
            rate_per_s=cfg.hub.commands_per_second,
        )
        self.relay.listeners.append(self._publish_command_result)
        self.relay.listeners.append(lambda record: self.live.command(record.device, record.as_json()))
        self.writer: Writer[InspectorEntry] = Writer(
            self.backend, self.spool, cfg.hub.batch_max_points, self.ingest.on_stored, self.ingest.on_storage_rejected
        )
        self.unreadable_acks = 0
        self.broker_dropped: int | None = None
        self.broker_drop_alarm_until = 0.0
        self._acks: deque[AckSlot] = deque()
        self._entry_acks: dict[int, AckSlot] = {}  # id(entry) → its message's ack, until committed
        self.started = time.time()
        self.pauses = 0
        self._pause_logged = -1e9
        self._commit_paused = False
        self.left_at_shutdown = 0
        self.http_port = cfg.hub.http_port
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()  # run() has finished: spool closed, connections gone
        self._stop = asyncio.Event()
        self._rates = Rates(time.monotonic())
        self.watchdog = Watchdog()

    def stop(self) -> None:
        self._stop.set()

    async def flush_evidence(self, timeout: float) -> bool:
        """Before grading: True once what the hub has accepted so far is in InfluxDB; False after `timeout`."""
        await self._commit_once()
        deadline = time.monotonic() + timeout
        while self.spool.unstored_bytes and time.monotonic() < deadline:  # noqa: ASYNC110 (bounded poll of the writer)
            await asyncio.sleep(0.02)
        return not self.spool.unstored_bytes

    def _audit(self, key: str, line: str) -> None:
        """Evidence (commands, rejections, presence) goes to InfluxDB through the spool, like readings."""
        self.spool.append(time.time_ns(), 0, AUDIT_KEY + key, line, None)

    @staticmethod
    def _client_id(cfg: LabConfig) -> str:
        """The default client id gets a random suffix kept in the state dir: Mosquitto lets any account take
        over a client id (disconnecting its owner), so a learner must not be able to guess the hub's."""
        if not cfg.mqtt.client_id.startswith(MqttConfig().client_id):
            return cfg.mqtt.client_id
        path = cfg.state_dir / "hub-client-id"
        try:
            suffix = path.read_text().strip()
        except FileNotFoundError:
            suffix = secrets.token_hex(6)
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # a secret: private
            with os.fdopen(fd, "w") as fh:
                fh.write(suffix + "\n")
        return f"{cfg.mqtt.client_id}-{suffix}"

    # Wiring ------------------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        """The boundary of one MQTT message: whatever happens inside is counted and logged, and a QoS 1
        message is settled (acknowledged in turn once its readings are committed, or at once when there
        is nothing to commit or its handling failed), so nothing is redelivered forever."""
        topic = msg.topic
        if topic[:1] == "$":
            with self.boundaries.guard(MQTT, "$SYS"):
                self._broker_stat(msg)
            return
        slot = None
        if msg.qos:
            slot = AckSlot(msg.mid, msg.qos, False)
            self._acks.append(slot)
        entry = None
        try:
            if topic.endswith("/ack") or topic.endswith("/commands/request"):
                self._command_message(msg)
            else:
                entry = self.ingest.handle(msg)
        except Exception as err:  # the boundary: one message's failure stops here
            self.boundaries.failed(MQTT, source_of(topic), err)
            entry = None
        if slot is not None:
            if entry is not None:
                self._entry_acks[id(entry)] = slot
            else:
                slot.ready = True  # nothing to wait for: acknowledge in turn
                self._flush_acks()

    def _on_reading(self, state: DeviceState, fields: dict[str, FieldValue], time_ns: int) -> None:
        if state.kind is ARM:
            self.relay.on_pose(state.ref, {k: v for k, v in fields.items() if type(v) is float})
        if self.live.watched(state.ref):
            self.live.reading(state.ref, fields, time_ns)

    def watch(self, devices: frozenset[DeviceRef], cohorts: frozenset[str] = frozenset()) -> LiveClient:
        """A live view of some devices, or of whole cohorts (a WebSocket): readings, presence, rejections and
        command events."""
        client = self.live.add(devices, cohorts)
        for ref in self._watched_by(client):
            state = self.ingest.devices[ref]
            state.watched = True
            client.push({"type": "presence", "device": ref.key, **presence_of(state)})
        return client

    def _watched_by(self, client: LiveClient) -> list[DeviceRef]:
        return [ref for ref in self.ingest.devices if ref in client.devices or ref.cohort in client.cohorts]

    def unwatch(self, client: LiveClient) -> None:
        self.live.remove(client)
        for ref in self._watched_by(client):
            state = self.ingest.devices[ref]
            state.watched = state.kind is ARM or self.live.watched(ref)

    async def _presence_loop(self) -> None:
        """Every second: message rates, and presence from the last will plus an inactivity timeout."""
        timeout_ns = int(self.cfg.hub.presence_timeout_s * 1e9)
        previous: dict[DeviceRef, int] = {}
        last = time.monotonic()
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            now, now_ns = time.monotonic(), time.time_ns()
            span = max(1e-3, now - last)
            last = now
            for ref, state in list(self.ingest.devices.items()):
                received = state.received
                state.rate_per_s = 0.7 * state.rate_per_s + 0.3 * (received - previous.get(ref, received)) / span
                previous[ref] = received
                present = state.online is not False and now_ns - state.last_seen_ns < timeout_ns
                if present != state.present:
                    state.present = present
                    if not present and state.online is not False:
                        log.info("%s: nothing heard for %.0f s", ref.key, self.cfg.hub.presence_timeout_s)
                    self.live.presence(ref, presence_of(state))
                elif tick % 5 == 0 and self.live.watched(ref):  # rates for live views, every 5 s
                    self.live.presence(ref, presence_of(state))

    def _command_message(self, msg: Message) -> None:
        """An arm's acknowledgement, or a command request from an MQTT app (validated exactly like HTTP ones)."""
        try:
            parsed = parse_topic(msg.topic)
        except TopicError:
            return
        if parsed.channel == "ack":
            try:
                self.relay.on_ack(parsed.ref, decode_ack(msg.payload))
            except ValueError as err:
                self.unreadable_acks += 1
                self.boundaries.warn(parsed.ref.key, "%s: unreadable acknowledgement: %s", parsed.ref.key, err)
            return
        request_id = None
        try:
            request = json.loads(msg.payload)
            if json_has_surrogates(request):
                raise ValueError("not valid Unicode")
            if isinstance(request, dict) and request.get("request_id") is not None:
                request_id = text_of(request["request_id"])[:64]
            self.relay.submit(parsed.ref, request, "mqtt", request_id=request_id)
        except CommandError as err:
            body = {"request_id": request_id, "state": "refused", "error": err.as_json()}
            self.mqtt.publish(parsed.ref.topic("commands/result"), json.dumps(body).encode(), qos=0)
        except (ValueError, RecursionError):
            body = {
                "request_id": None,
                "state": "refused",
                "error": {"code": "malformed", "message": "a command request is a JSON object of valid UTF-8 text"},
            }
            self.mqtt.publish(parsed.ref.topic("commands/result"), json.dumps(body).encode(), qos=0)
        except OfflineError:
            pass  # its `failed` result has been published like every other transition

    def _publish_command_result(self, record: CommandRecord) -> None:
        self.mqtt.publish(record.device.topic("commands/result"), json.dumps(record.as_json()).encode(), qos=0)

    def _broker_stat(self, msg: Message) -> None:
        """The broker's own count of messages it dropped (queue or in-flight limits): any increase is an alarm."""
        if msg.topic != BROKER_DROPPED:
            return
        try:
            dropped = int(msg.payload)
        except ValueError:
            return
        if self.broker_dropped is not None and dropped > self.broker_dropped:
            self.broker_drop_alarm_until = time.monotonic() + 60.0
            log.error(
                "ALARM: the broker dropped %d messages (%d in all): a client's queue or in-flight limit was hit",
                dropped - self.broker_dropped,
                dropped,
            )
        self.broker_dropped = dropped

    def _on_connect(self) -> None:
        # Message ids of an earlier connection mean nothing now; the broker sends those messages again.
        self._acks.clear()
        self._entry_acks.clear()

    def _flush_acks(self) -> None:
        """PUBACKs go out in the order the messages came (MQTT 3.1.1, 4.6), each once its message is safe."""
        acks = self._acks
        while acks and acks[0].ready:
            slot = acks.popleft()
            self.mqtt.ack(slot.mid, slot.qos)

    def _spool_append(self, received_ns: int, digest: int, key: str, line: str, entry: InspectorEntry) -> None:
        self.spool.append(received_ns, digest, key, line, entry)
        if self.spool.pending >= MAX_PENDING_COMMIT and not self._commit_paused:
            self._commit_paused = True
            log.warning("%d readings wait for the disk: pausing MQTT intake", self.spool.pending)
            self.mqtt.pause_reading()

    async def _commit_loop(self) -> None:
        """Group commit: everything that arrived during the previous fsync goes in the next one."""
        last = 0.0
        while True:
            await self.spool.wait_pending()
            # At most one fsync per COMMIT_EVERY_S: a fast disk would otherwise turn each handful of
            # readings into its own thread hop and fsync. Idle, a reading is committed at once.
            wait = last + COMMIT_EVERY_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            last = time.monotonic()
            await self._commit_once()

    async def _commit_once(self) -> None:
        """Commit what is pending, then acknowledge the messages it came from."""
        for entry in await self.spool.commit():
            if entry is not None:
                self.ingest.on_spooled(entry)
                slot = self._entry_acks.pop(id(entry), None)
                if slot is not None:
                    slot.ready = True
        self._flush_acks()
        if self._commit_paused and self.spool.pending < MAX_PENDING_COMMIT // 2:
            self._commit_paused = False
            if not self.spool.full:
                self.mqtt.resume_reading()

    def _publish_error(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=0)

    def _intake_full(self) -> None:
        self.pauses += 1
        now = time.monotonic()
        if now - self._pause_logged >= 10.0:  # say it loudly, but not a thousand times a minute
            self._pause_logged = now
            log.warning(
                "spool full (%d bytes waiting for InfluxDB): pausing MQTT intake, the broker holds new readings "
                "(pause #%d)",
                self.spool.unstored_bytes,
                self.pauses,
            )
        self.mqtt.pause_reading()

    def _intake_drained(self) -> None:
        log.info("spool below its limit (%d bytes): resuming MQTT intake", self.spool.unstored_bytes)
        if not self._commit_paused:
            self.mqtt.resume_reading()

    # Registry ----------------------------------------------------------------------------------------

    async def _import_config(self) -> None:
        """The config's declared devices join the registry, each with its own broker account; new passwords
        go to the state dir's credentials file (its path is logged, never a password)."""
        if self.worker != 0:
            return  # worker 0 imports; the others follow the registry
        try:
            made = await self.accounts.import_config(self.cfg.devices)
        except DynsecError as err:
            log.warning("declared devices not synced to the broker's accounts: %s", err)
            return
        if made:
            path = save_credentials(self.cfg.state_dir, {c.username: c.password for c in made})
            log.info("%d declared devices got broker accounts; their passwords are in %s", len(made), path)

    def apply_registry(self) -> None:
        """Kinds, arms and API tokens as the registry has them now (called whenever it changes)."""
        version = self.registry.version()
        if version == self._registry_version:
            return
        self._registry_version = version
        declared = {d.ref: d for d in self.cfg.devices}
        for record in self.registry.devices():
            declared[record.ref] = DeviceConfig(record.ref, record.kind, False, record.profile)
        removed = self.ingest.table.declare(declared.values())
        if self.worker == 0:
            for ref in removed:  # the broker forgets a removed device's retained status
                self.mqtt.publish(ref.topic("status"), b"", qos=1, retain=True)
        self.relay.set_arms(
            {ref: ARM_PROFILES[d.profile or DEFAULT_ARM_PROFILE] for ref, d in declared.items() if d.kind == "arm"}
        )
        disabled = {learner.key for learner in self.registry.learners() if not learner.enabled}
        self.tokens = {
            digest: token
            for digest, token in self.registry.active_tokens()
            if not (token.role == "learner" and token.scope in disabled)  # a disabled learner's apps stop too
        }
        for listener in self.token_listeners:
            listener()

    async def _registry_loop(self) -> None:
        while True:
            await asyncio.sleep(REGISTRY_POLL_S)
            self.apply_registry()

    async def run(self) -> None:
        async with contextlib.AsyncExitStack() as stack:
            stack.callback(self.registry.close)
            await self._import_config()
            self.apply_registry()
            self.spool.open()
            stack.callback(self.spool.close)
            await self.backend.start()
            stack.push_async_callback(self.backend.close)
            await self._prepare_storage()

            def counters() -> HubCounters:
                return HubCounters(
                    intake_paused=self.health_paused(),
                    pauses=self.pauses,
                    broker_dropped=self.broker_dropped,
                    unreadable_acks=self.unreadable_acks,
                    mqtt_connected=self.mqtt.connected.is_set(),
                    mqtt_connects=self.mqtt.connects,
                    devices_online=self.ingest.online_count(),
                    loop_lag_s=self.watchdog.lag_s,
                    stalled_s=self.watchdog.stalled_s,
                    stalls=self.watchdog.stalls,
                )

            deps = WebDeps(
                config=self.cfg.hub,
                registry=self.registry,
                accounts=self.accounts,
                relay=self.relay,
                devices=self.ingest.devices,
                backend=self.backend,
                boundaries=self.boundaries,
                live=self.live,
                totals=self.ingest.totals,
                writer=self.writer.stats,
                spool=self.spool,
                tokens=lambda: self.tokens,
                on_tokens_changed=self.token_listeners.append,
                apply_registry=self.apply_registry,
                flush_evidence=self.flush_evidence,
                watch=self.watch,
                unwatch=self.unwatch,
                health=self.health,
                stats=self.stats,
                counters=counters,
            )
            try:
                self.http_port = await serve(deps, self.cfg.hub.http_host, self.cfg.hub.http_port, stack)
            except OSError as err:
                raise ServiceError(
                    f"hub API cannot listen on {self.cfg.hub.http_host}:{self.cfg.hub.http_port}: {err.strerror} "
                    "(set hub.http_port or --http-port)"
                ) from None
            log.info("hub API on http://%s:%d", self.cfg.hub.http_host, self.http_port)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.mqtt.run(), name="mqtt"),
                    tg.create_task(self._commit_loop(), name="spool-commit"),
                    tg.create_task(self.writer.run(), name="writer"),
                    tg.create_task(self._report_loop(), name="report"),
                    tg.create_task(self._presence_loop(), name="presence"),
                    tg.create_task(self._registry_loop(), name="registry"),
                    tg.create_task(self._watchdog_loop(), name="watchdog"),
                ]
                try:
                    await self.mqtt.wait_connected(30)
                except TimeoutError:
                    log.warning("not connected to the broker yet (%s); still trying", self.mqtt.last_error)
                self.ready.set()
                await self._stop.wait()
                log.info("stopping: pausing intake, committing and acknowledging what is in hand")
                self.mqtt.pause_reading()
                await self._commit_once()
                await self.mqtt.stop()
                self.left_at_shutdown = await self.writer.drain(timeout=10.0)
                if self.left_at_shutdown:
                    log.warning(
                        "%d readings not yet in InfluxDB stay in the spool; they are written at the next start",
                        self.left_at_shutdown,
                    )
                self.relay.shutdown()
                await self.spool.commit()
                for task in tasks:
                    task.cancel()
        self.stopped.set()
        log.info(
            "hub stopped: %d readings stored, %d rejected",
            self.ingest.totals.stored,
            sum(self.ingest.totals.rejected.values()),
        )

    async def _prepare_storage(self) -> None:
        """Create the v1 database and learn the field types it holds; if InfluxDB is down, the writer retries."""
        if not isinstance(self.backend, InfluxV1):
            return
        try:
            await self.backend.ensure_database()
            types = await self.backend.field_types()
        except StorageError as err:
            log.warning("InfluxDB not ready at start (%s); writes will be retried", err)
            return
        self.ingest.table.learn_types(types)

    async def _watchdog_loop(self) -> None:
        """Event-loop lag (how late a timer fires) and intake stalls (bytes wait, no message is handled)."""
        window: deque[tuple[float, float]] = deque()
        handled, moved_at = self.mqtt.handled, time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(WATCH_EVERY_S)
            now = time.monotonic()
            window.append((now, max(0.0, now - before - WATCH_EVERY_S)))
            while window[0][0] < now - LAG_WINDOW_S:
                window.popleft()
            self.watchdog.lag_s = max(lag for _, lag in window)
            idle = self.mqtt.paused or not self.mqtt.connected.is_set() or not self.mqtt.waiting()
            if self.mqtt.handled != handled or idle:
                handled, moved_at = self.mqtt.handled, now
                self.watchdog.stalled_s = 0.0
                continue
            was_stalled = self.watchdog.stalled_s >= STALL_S
            self.watchdog.stalled_s = now - moved_at
            if self.watchdog.stalled_s >= STALL_S and not was_stalled:
                self.watchdog.stalls += 1
                log.error(
                    "intake stalled: %d bytes wait from the broker, no message handled for 2 s", self.mqtt.waiting()
                )

    async def _report_loop(self) -> None:
        while True:
            await asyncio.sleep(self.report_every_s)
            log.info("%s", self.progress_line())

    def progress_line(self) -> str:
        totals = self.ingest.totals
        now = time.monotonic()
        rejected = sum(totals.rejected.values())
        span = max(1e-6, now - self._rates.at)
        line = (
            f"{totals.stored} stored ({(totals.stored - self._rates.stored) / span:.1f}/s), "
            f"{rejected} rejected (+{rejected - self._rates.rejected}), "
            f"{self.ingest.online_count()}/{len(self.ingest.devices)} devices online, "
            f"spool {self.spool.unstored_bytes // 1024} KiB, "
            f"InfluxDB {'failing: ' + self.writer.stats.last_error if self.writer.stats.last_error else 'ok'}"
        )
        problems = self.watchdog.problems
        failures = self.boundaries.total
        if failures:
            line += f", {failures} inputs failed inside the hub"
        line += f"; DEGRADED: {'; '.join(problems)}" if problems else ""
        self._rates = Rates(now, totals.received, totals.stored, rejected)
        return line

    # Views -------------------------------------------------------------------------------------------

    def health_paused(self) -> bool:
        return self.spool.full or self._commit_paused

    def health(self) -> dict[str, object]:
        reasons = []
        if not self.mqtt.connected.is_set():
            reasons.append(f"MQTT broker unreachable: {self.mqtt.last_error or 'connecting'}")
        if self.writer.stats.failing_since is not None:
            reasons.append(
                f"InfluxDB writes failing for {time.time() - self.writer.stats.failing_since:.0f} s: "
                f"{self.writer.stats.last_error}"
            )
        if time.monotonic() < self.broker_drop_alarm_until:
            reasons.append(f"the broker dropped messages in the last minute ({self.broker_dropped} in all)")
        if self.spool.full:
            reasons.append(f"spool full ({self.spool.unstored_bytes} bytes waiting for InfluxDB): intake paused")
        if self._commit_paused:
            reasons.append(f"{self.spool.pending} readings wait for the disk: intake paused")
        reasons += self.watchdog.problems
        return {"status": "degraded" if reasons else "ok", "reasons": reasons}

    def stats(self) -> dict[str, object]:
        totals = self.ingest.totals
        ws = self.writer.stats
        recent = sorted(ws.write_ms)
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "received": totals.received,
            "stored": totals.stored,
            "rejected": dict(totals.rejected),
            "bad_topics": totals.bad_topics,
            "errors_sent": totals.errors_sent,
            "errors_suppressed": totals.errors_suppressed,
            "devices": len(self.ingest.devices),
            "devices_online": self.ingest.online_count(),
            "duplicates": totals.duplicates,
            "spool": {
                "unstored_bytes": self.spool.unstored_bytes,
                "limit_bytes": self.spool.max_bytes,
                "oldest_s": round(self.spool.oldest_age_s(), 3),
                "points_in_memory": self.spool.in_memory(),
                "commits": self.spool.commits,
                "replayed": self.spool.replayed,
                "intake_paused": self.health_paused(),
                "pauses": self.pauses,
            },
            "writer": {
                "backend": self.backend.name,
                "batches": ws.batches,
                "points": ws.points,
                "retries": ws.retries,
                "rejected_points": ws.rejected,
                "last_batch": ws.last_batch,
                "write_ms_p50": recent[len(recent) // 2] if recent else None,
                "write_ms_max": ws.max_write_ms,
                "last_error": ws.last_error,
            },
            "mqtt": {
                "connected": self.mqtt.connected.is_set(),
                "connects": self.mqtt.connects,
                "last_error": self.mqtt.last_error,
            },
            "left_at_shutdown": self.left_at_shutdown,
        }
