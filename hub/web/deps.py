"""What the HTTP API needs from the rest of the hub, handed to `create_app` by the composition root.

Handlers and the metrics collector see only this: the parts they read or drive, and callables for what the hub
computes. They never import the runtime nor reach into the hub object, so each can be tested with fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from devices.topics import DeviceRef
from hub.access.accounts import Credential
from hub.access.cohort_csv import ImportLine
from hub.access.records import Token
from hub.access.registry import Registry
from hub.adapters.influx import InfluxV1, InfluxV2
from hub.boundary import Boundaries
from hub.commands.relay import CommandRelay
from hub.config import HubConfig
from hub.ingest.device_table import DeviceState, IngestTotals
from hub.ingest.spool import Spool
from hub.ingest.writer import WriterStats
from hub.web.live import Live, LiveClient


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


@dataclass(frozen=True, slots=True)
class HubCounters:
    """The hub's own counters at one moment (the parts' own counters are read from the parts)."""

    intake_paused: bool
    pauses: int
    broker_dropped: int | None  # None: the broker has not said
    unreadable_acks: int
    mqtt_connected: bool
    mqtt_connects: int
    devices_online: int
    loop_lag_s: float
    stalled_s: float
    stalls: int


@dataclass(frozen=True, slots=True)
class WebDeps:
    config: HubConfig
    registry: Registry
    accounts: AccountChanges
    relay: CommandRelay
    devices: Mapping[DeviceRef, DeviceState]  # the hub's live table (read only here)
    backend: InfluxV1 | InfluxV2  # reads: history, overviews, grades
    boundaries: Boundaries
    live: Live
    totals: IngestTotals
    writer: WriterStats
    spool: Spool[Any]
    tokens: Callable[[], Mapping[str, Token]]  # SHA-256 of a secret → its token, as the registry has them now
    on_tokens_changed: Callable[[Callable[[], None]], None]  # call this back whenever tokens change
    apply_registry: Callable[[], None]  # after a registry change: the hub follows at once
    flush_evidence: Callable[[float], Awaitable[bool]]  # True once what was accepted is in InfluxDB
    watch: Callable[[frozenset[DeviceRef], frozenset[str]], LiveClient]
    unwatch: Callable[[LiveClient], None]
    health: Callable[[], dict[str, object]]
    stats: Callable[[], dict[str, object]]
    counters: Callable[[], HubCounters]
