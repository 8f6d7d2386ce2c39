"""What the HTTP API needs from the rest of the hub, handed to `create_app` by the composition root.

Handlers and the metrics collector see only this: protocols for what they drive (accounts, arm commands, the
database's reads), read-only views of what they show, and callables for what the hub computes (health, stats, a
snapshot of its counters). They never import the runtime nor reach into the hub's parts, so each can be tested
with small fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from devices.arm import ArmProfile
from devices.kinds import DeviceKind
from devices.topics import DeviceRef
from hub.access.accounts import Credential
from hub.access.cohort_csv import ImportLine
from hub.access.records import Token
from hub.access.registry import Registry
from hub.adapters.influx_read import Reader
from hub.boundary import Boundaries
from hub.commands.relay import CommandRecord
from hub.config import HubConfig
from hub.ingest.device_table import InspectorEntry
from hub.kits.settings import KitSource
from hub.web.figures import HubCounters
from hub.web.live import LiveClient


class AccountChanges(Protocol):
    """Registry changes together with their broker accounts (`hub.access.accounts.Accounts`)."""

    async def add_device(
        self, key: str, kind: str, profile: str | None = None, description: str = ""
    ) -> Credential: ...
    async def remove_device(self, key: str) -> None: ...
    async def rotate_device(self, key: str) -> Credential: ...
    async def set_device_enabled(self, key: str, enabled: bool) -> None: ...
    async def add_learner(self, key: str) -> Credential: ...
    async def rotate_learner(self, key: str) -> Credential: ...
    async def set_learner_enabled(self, key: str, enabled: bool) -> None: ...
    async def import_lines(self, lines: Iterable[ImportLine], learner_accounts: bool = True) -> list[Credential]: ...


class DeviceView(Protocol):
    """One device as the hub's table holds it (`hub.ingest.device_table.DeviceState`), read only."""

    @property
    def ref(self) -> DeviceRef: ...
    @property
    def kind(self) -> DeviceKind | None: ...  # None: not registered and the lab is closed
    @property
    def measurement(self) -> str: ...  # where its readings are in InfluxDB
    @property
    def inspector(self) -> Sequence[InspectorEntry]: ...  # its last messages, oldest first
    def summary(self) -> dict[str, object]: ...


class ArmView(Protocol):
    """One arm as the command relay keeps it (`hub.commands.relay.ArmState`), read only."""

    @property
    def profile(self) -> ArmProfile: ...
    @property
    def pose(self) -> Mapping[str, float]: ...  # as its last acknowledgement or reading told
    @property
    def recent(self) -> Sequence[CommandRecord]: ...  # its last commands, oldest first


class Commands(Protocol):
    """Arm commands (`hub.commands.relay.CommandRelay`): checked and sent exactly like MQTT requests."""

    def arm(self, ref: DeviceRef) -> ArmView | None: ...  # None: not a known arm
    def command(self, command_id: str) -> CommandRecord | None: ...  # None: unknown, or too old to remember
    def submit(self, ref: DeviceRef, request: object, source: str, idempotency_key: str | None = None) -> CommandRecord:
        """Check and queue a command. CommandError: refused (nothing sent). OfflineError: failed at once."""
        ...

    async def wait(self, record: CommandRecord, timeout: float) -> CommandRecord:
        """Long-poll: return when the command is finished or after `timeout` seconds."""
        ...


class Diagnoser(Protocol):
    """The lab doctor (`hub.doctor.service.LabDoctor`): a device's diagnosis, and its badge."""

    def report(self, ref: DeviceRef) -> dict[str, object]: ...
    def summary(self, ref: DeviceRef) -> tuple[int, str | None]: ...  # open findings, worst severity
    def shared_address(self, address: str) -> None: ...  # many clients log in from it (the /mqtt bridge's)


class TelemetryIntake(Protocol):
    """Readings posted over HTTP (`hub.web.telemetry.HttpIntake`): the broker's accounts, and MQTT's own path."""

    @property
    def max_payload_bytes(self) -> int: ...
    @property
    def paused(self) -> bool: ...  # intake is paused by backpressure (spool full, InfluxDB behind)
    async def check_account(self, username: str, password: str) -> bool: ...  # AccountsUnavailable: cannot tell
    def post(self, ref: DeviceRef, field_name: str | None, payload: bytes) -> InspectorEntry | None: ...
    async def spooled(self, entry: InspectorEntry) -> None: ...  # its points are on disk


@dataclass(frozen=True, slots=True)
class WebDeps:
    config: HubConfig
    registry: Registry
    accounts: AccountChanges
    commands: Commands
    devices: Mapping[DeviceRef, DeviceView]  # the hub's live table, read only
    reader: Reader  # reads: history, overviews, grades
    boundaries: Boundaries  # where a request's or a live view's failure is counted
    tokens: Callable[[], Mapping[str, Token]]  # SHA-256 of a secret → its token, as the registry has them now
    on_tokens_changed: Callable[[Callable[[], None]], None]  # call this back whenever tokens change
    apply_registry: Callable[[], None]  # after a registry change: the hub follows at once
    flush_evidence: Callable[[float], Awaitable[bool]]  # True once what was accepted is in InfluxDB
    watch: Callable[[frozenset[DeviceRef], frozenset[str]], LiveClient]
    unwatch: Callable[[LiveClient], None]
    health: Callable[[], dict[str, object]]
    stats: Callable[[], dict[str, object]]
    counters: Callable[[], HubCounters]  # what /metrics shows, at one moment
    ca_certificate: bytes | None = None  # LAN mode: the lab CA (PEM) boards and phones trust, served at /ca.crt
    kits: KitSource | None = None  # devices' kits (the broker as boards reach it, the passwords held in clear)
    doctor: Diagnoser | None = None  # the lab doctor's findings and checklist per device
    telemetry: TelemetryIntake | None = None  # POST …/telemetry with the device's broker account; None: not here
    mqtt_bridge: tuple[str, int] | None = None  # /mqtt bridges WebSockets to the broker's lab listener; None: no /mqtt
