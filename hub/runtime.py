"""The hub service: wires MQTT intake, the disk spool, the writer and the HTTP API, and owns their lifecycle.

Every long-lived task starts here, in one TaskGroup; every resource has its cleanup on one exit stack.
The path of a reading: MQTT → ingest (validate, encode) → spool (group commit, fsync) → acknowledge the
QoS 1 message to the broker → writer → InfluxDB → checkpoint. A SIGKILL anywhere loses nothing: what was
not acknowledged comes again from the broker's persistent session, what was spooled is replayed (the promise
is kept by `hub.ingest.durability`). The jobs are the parts' own; this module builds them and runs them.
Shutdown order: pause intake, commit and acknowledge what is in hand, disconnect, let the writer drain
memory for a bounded time; anything left stays in the spool for the next start."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections.abc import Callable, Sequence

from devices.kinds import ARM
from devices.topics import DeviceRef, subscriptions
from devices.validate import FieldValue
from hub.access.accounts import Accounts
from hub.access.dynsec import DynsecError
from hub.access.records import Token
from hub.access.registry import Registry
from hub.adapters.influx import StorageError, lab_backend
from hub.adapters.mqtt import Message, MqttClient
from hub.adapters.tls import LabTls, lan_tls
from hub.boundary import MQTT, Boundaries, source_of
from hub.commands.audit import CommandAudit
from hub.commands.messages import CommandMessages
from hub.commands.relay import CommandRelay
from hub.config import ARM_PROFILES, DEFAULT_ARM_PROFILE, DeviceConfig, LabConfig, MqttConfig, ServiceError
from hub.credentials import hub_client_id, read_secret, save_credentials
from hub.doctor.service import LabDoctor
from hub.ingest.device_table import DeviceState, InspectorEntry
from hub.ingest.durability import Durability
from hub.ingest.pipeline import Ingest
from hub.ingest.presence import Presence
from hub.ingest.spool import Spool
from hub.ingest.writer import Writer
from hub.integrations.discovery import home_assistant
from hub.kits.settings import KitSource
from hub.status import ServiceState, Status
from hub.watchdog import BROKER_DROPPED, Watchdog, slow_step
from hub.web.deps import WebDeps
from hub.web.figures import HubCounters, PartCounters
from hub.web.live import Live, LiveClient
from hub.web.server import serve
from hub.web.telemetry import HttpIntake

log = logging.getLogger(__name__)

REGISTRY_POLL_S = 0.5  # how soon a registry change (a CLI command) reaches the hub


class Hub:
    """One hub worker. With `workers` > 1, workers share telemetry through an MQTT shared subscription; each
    has its own client id, spool and HTTP port (http_port + worker)."""

    def __init__(
        self,
        cfg: LabConfig,
        report_every_s: float = 10.0,
        worker: int = 0,
        workers: int = 1,
        services: Callable[[], Sequence[ServiceState]] = tuple,  # the lab's services, shown by health and progress
    ) -> None:
        if workers > 1:
            cfg = dataclasses.replace(
                cfg,
                mqtt=dataclasses.replace(cfg.mqtt, client_id=f"{cfg.mqtt.client_id}-{worker}"),
                hub=dataclasses.replace(cfg.hub, http_port=cfg.hub.http_port + worker if cfg.hub.http_port else 0),
                lan=dataclasses.replace(cfg.lan, https_port=cfg.lan.https_port + worker if cfg.lan.https_port else 0),
            )
        self.worker = worker
        self.workers = workers
        self.cfg = cfg
        self.report_every_s = report_every_s
        self.backend = lab_backend(cfg)
        self.boundaries = Boundaries()  # failures of single inputs, by surface and error type
        self.live = Live()
        self.watchdog = Watchdog()
        self.registry = Registry(cfg.registry_path)
        self.accounts = Accounts.for_lab(cfg, self.registry)
        self.tokens: dict[str, Token] = {}  # SHA-256 of a token → who it speaks for
        self.token_listeners: list[Callable[[], None]] = []  # told when tokens change (open WebSockets)
        self._registry_version: tuple[int, int] | None = None
        password = read_secret(cfg.secret_file(cfg.mqtt.password_file, "mqtt-hub")) if cfg.mqtt.username else None
        self.mqtt = MqttClient(
            cfg.mqtt.hub_host,
            cfg.mqtt.hub_port,
            hub_client_id(cfg.mqtt.client_id, MqttConfig().client_id, cfg.state_dir),
            on_message=self._on_message,
            on_failure=lambda msg, err: self.boundaries.failed(MQTT, source_of(msg.topic), err),
            on_connect=lambda: self.durability.forget_acks(),
            subscriptions=[(t, 1) for t in subscriptions("labhub" if workers > 1 else None)] + [(BROKER_DROPPED, 0)],
            keepalive=cfg.mqtt.keepalive,
            persistent=True,
            manual_ack=True,
            username=cfg.mqtt.username if password else None,
            password=password,
            read_linger_s=cfg.hub.write_linger_ms / 1000,
            may_linger=lambda: not self.relay.in_flight,
        )
        spool_dir = cfg.state_dir / "spool" / cfg.mqtt.client_id
        self.durability = Durability(
            spool_dir,
            cfg.hub.spool_max_bytes,
            cfg.hub.queue_max_points,
            self.mqtt,
            commit_every_s=cfg.hub.write_linger_ms / 2000,
        )
        self.spool: Spool[InspectorEntry] = self.durability.spool
        self.doctor = LabDoctor.of_lab(cfg, worker, self._publish, self.durability.audit, lambda: self.ingest.devices)
        self.ingest = Ingest(
            cfg.devices,
            enqueue=self.durability.append,
            is_duplicate=self.spool.seen,
            publish=self._publish,
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
            audit=self.durability.audit,
            on_rejected=lambda state, problem: self.live.rejection(state.ref, problem),
            clear_retained=lambda topic: self.mqtt.publish(topic, b"", qos=1, retain=True),
            observe=self.doctor.observe,
        )
        command_audit = CommandAudit(self.durability.audit)
        self.relay = CommandRelay(
            {d.ref: ARM_PROFILES[d.profile or DEFAULT_ARM_PROFILE] for d in cfg.devices if d.kind == "arm"},
            publish=self._send_command,
            audit=command_audit.finished,
            refused=command_audit.refused,
            online=lambda ref: state.online if (state := self.ingest.devices.get(ref)) else None,
            rate_per_s=cfg.hub.commands_per_second,
        )
        self.commands = CommandMessages(self.relay, self._publish, self.boundaries.warn)
        self.relay.listeners.append(self.commands.publish_result)
        self.relay.listeners.append(lambda record: self.live.command(record.device, record.as_json()))
        self.writer: Writer[InspectorEntry] = Writer(
            self.backend,
            self.spool,
            cfg.hub.batch_max_points,
            self.ingest.on_stored,
            self.ingest.on_storage_rejected,
            linger_s=cfg.hub.slow_write_linger_ms / 1000,
        )
        self.presence = Presence(
            self.ingest.devices, cfg.hub.presence_timeout_s, announce=self.live.presence, watched=self.live.watched
        )
        self.status = Status(
            self.ingest,
            self.durability,
            self.writer.stats,
            self.mqtt,
            self.watchdog,
            self.boundaries,
            self.backend.name,
            services,
        )
        self.http_port = cfg.hub.http_port
        self.tls: LabTls | None = None  # LAN mode: the lab CA and this machine's certificate
        self.ready = asyncio.Event()
        self.stopped = asyncio.Event()  # run() has finished: spool closed, connections gone
        self._stop = asyncio.Event()

    def stop(self) -> None:
        self._stop.set()

    async def flush_evidence(self, timeout: float) -> bool:
        """Before grading: True once what the hub has accepted so far is in InfluxDB; False after `timeout`."""
        self.writer.hurry(timeout)
        return await self.durability.flush_evidence(timeout)

    # Wiring ------------------------------------------------------------------------------------------

    def _on_message(self, msg: Message) -> None:
        """The boundary of one MQTT message: whatever happens inside is counted and logged, and a QoS 1
        message is settled (acknowledged in turn once its readings are committed, or at once when there
        is nothing to commit or its handling failed), so nothing is redelivered forever."""
        topic = msg.topic
        if topic[:1] == "$":
            with self.boundaries.guard(MQTT, "$SYS"):
                self.watchdog.broker_stat(topic, msg.payload)
            return
        slot = self.durability.receive(msg)
        entry = None
        try:
            if topic.endswith("/ack") or topic.endswith("/commands/request"):
                self.commands.handle(msg)
            else:
                entry = self.ingest.handle(msg)
        except Exception as err:  # the boundary: one message's failure stops here
            self.boundaries.failed(MQTT, source_of(topic), err)
            entry = None
        if slot is not None:
            self.durability.settle(slot, entry)

    def _send_command(self, topic: str, payload: bytes, qos: int) -> bool:
        self.mqtt.read_now()  # its acknowledgement is read as soon as it comes, not after a linger
        return self.mqtt.publish(topic, payload, qos=qos)

    def _on_reading(self, state: DeviceState, fields: dict[str, FieldValue], time_ns: int) -> None:
        if state.kind is ARM:
            self.relay.on_pose(state.ref, {k: v for k, v in fields.items() if type(v) is float})
        if self.live.watched(state.ref):
            self.live.reading(state.ref, fields, time_ns)

    def watch(self, devices: frozenset[DeviceRef], cohorts: frozenset[str] = frozenset()) -> LiveClient:
        """A live view of some devices or whole cohorts (a WebSocket): readings, presence, rejections, commands."""
        client = self.live.add(devices, cohorts)
        for ref in self._watched_by(client):
            state = self.ingest.devices[ref]
            state.watched = True
            client.push({"type": "presence", "device": ref.key, **state.presence()})
        return client

    def _watched_by(self, client: LiveClient) -> list[DeviceRef]:
        return [ref for ref in self.ingest.devices if ref in client.devices or ref.cohort in client.cohorts]

    def unwatch(self, client: LiveClient) -> None:
        self.live.remove(client)
        for ref in self._watched_by(client):
            state = self.ingest.devices[ref]
            state.watched = state.kind is ARM or self.live.watched(ref)

    def _publish(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=0)

    # Registry ----------------------------------------------------------------------------------------

    async def _import_config(self) -> None:
        """Declared devices join the registry, each with a broker account; new passwords go to the credentials file."""
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
        self.tokens = dict(self.registry.active_tokens())
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
                parts = PartCounters.of(
                    self.ingest, self.spool, self.writer.stats, self.relay, self.live, self.boundaries
                )
                return HubCounters(
                    intake_paused=self.durability.paused,
                    pauses=self.durability.pauses,
                    broker_dropped=self.watchdog.broker_dropped,
                    unreadable_acks=self.commands.unreadable_acks,
                    mqtt_connected=self.mqtt.connected.is_set(),
                    mqtt_connects=self.mqtt.connects,
                    loop_lag_s=self.watchdog.lag_s,
                    stalled_s=self.watchdog.stalled_s,
                    stalls=self.watchdog.stalls,
                    parts=parts,
                )

            self.tls = await asyncio.to_thread(lan_tls, self.cfg.state_dir, self.cfg.lan)
            deps = WebDeps(
                config=self.cfg.hub,
                registry=self.registry,
                accounts=self.accounts,
                commands=self.relay,
                devices=self.ingest.devices,
                reader=self.backend,
                boundaries=self.boundaries,
                tokens=lambda: self.tokens,
                on_tokens_changed=self.token_listeners.append,
                apply_registry=self.apply_registry,
                flush_evidence=self.flush_evidence,
                watch=self.watch,
                unwatch=self.unwatch,
                health=self.health,
                stats=self.stats,
                counters=counters,
                ca_certificate=self.tls.ca_pem() if self.tls else None,
                kits=KitSource.for_lab(self.cfg, self.tls),
                doctor=self.doctor,
                telemetry=HttpIntake.of_hub(self.ingest, self.durability, self.cfg.state_dir),
                mqtt_bridge=(self.cfg.mqtt.host, self.cfg.mqtt.port),
            )
            try:
                self.http_port = await serve(deps, stack, self.cfg.lan, self.tls)
            except OSError as err:
                raise ServiceError(
                    f"hub API cannot listen on {err.filename}: {err.strerror} "
                    "(set hub.http_port or --http-port; in LAN mode lan.https_port or lan.host)"
                ) from None
            log.info("hub API on http://%s:%d", self.cfg.hub.http_host, self.http_port)
            async with asyncio.TaskGroup() as tg:
                tasks = [
                    tg.create_task(self.mqtt.run(), name="mqtt"),
                    tg.create_task(self.durability.run(), name="spool-commit"),
                    tg.create_task(self.writer.run(), name="writer"),
                    tg.create_task(self.status.report(self.report_every_s), name="report"),
                    tg.create_task(self.presence.run(), name="presence"),
                    tg.create_task(self._registry_loop(), name="registry"),
                    tg.create_task(self.watchdog.run(self.mqtt), name="watchdog"),
                    tg.create_task(self.doctor.run(), name="doctor"),
                    tg.create_task(home_assistant(self.cfg, self.registry, self.worker), name="home-assistant"),
                ]
                try:
                    await self.mqtt.wait_connected(30)
                except TimeoutError:
                    log.warning("not connected to the broker yet (%s); still trying", self.mqtt.last_error)
                self.ready.set()
                await self._stop.wait()
                log.info("stopping: pausing intake, committing and acknowledging what is in hand")
                self.mqtt.pause_reading()
                with slow_step("committing what is in hand to the spool"):
                    await self.durability.commit_once()
                with slow_step("disconnecting from the broker"):
                    await self.mqtt.stop()
                with slow_step("writing what is in memory to InfluxDB"):
                    left = self.status.left_at_shutdown = await self.writer.drain(timeout=10.0)
                if left:
                    log.warning(
                        "%d readings not yet in InfluxDB stay in the spool; they are written at the next start", left
                    )
                self.relay.shutdown()
                with slow_step("committing the spool"):
                    await self.spool.commit()
                for task in tasks:
                    task.cancel()
        self.stopped.set()
        totals = self.ingest.totals
        log.info("hub stopped: %d readings stored, %d rejected", totals.stored, sum(totals.rejected.values()))

    async def _prepare_storage(self) -> None:
        """Create the database (1.x) and learn the field types it holds; if InfluxDB is down, the writer retries."""
        try:
            await self.backend.ensure_database()
            types = await self.backend.field_types()
        except StorageError as err:
            log.warning("InfluxDB not ready at start (%s); writes will be retried", err)
            return
        self.ingest.table.learn_types(types)

    # Views -------------------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        return self.status.health()

    def stats(self) -> dict[str, object]:
        return self.status.stats()
