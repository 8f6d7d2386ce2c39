"""The hub's counters at one moment, for /metrics: frozen snapshots made at scrape time (nothing is added to the
hot path), so the collector reads plain numbers and never the parts themselves.

`PartCounters.of` is the one place the web layer reads the parts' own counters (intake, spool, writer, commands,
live views, input failures); the composition root calls it, with the hub's own counters, in `WebDeps.counters`.
A field left at its default reads as a hub that has done nothing yet (what small fakes need).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hub.boundary import Boundaries
from hub.commands.relay import CommandRelay
from hub.ingest.pipeline import Ingest
from hub.ingest.spool import Spool
from hub.ingest.writer import WriterStats
from hub.web.live import Live


@dataclass(frozen=True, slots=True)
class PartCounters:
    """The parts' own counters at one moment."""

    received: int = 0
    stored: int = 0
    rejected: Mapping[str, int] = field(default_factory=dict)  # by reason
    bad_topics: int = 0
    duplicates: int = 0
    retained_ignored: int = 0
    devices_evicted: int = 0
    errors_sent: int = 0
    errors_suppressed: int = 0
    devices_known: int = 0
    devices_online: int = 0
    queue_points: int = 0  # accepted points held in memory for the writer
    spool_bytes: int = 0
    spool_limit_bytes: int = 0
    spool_oldest_s: float = 0.0
    spool_replayed: int = 0
    spool_corrupt_bytes: int = 0
    write_batches: int = 0
    write_retries: int = 0
    write_rejected_points: int = 0
    write_ms: tuple[float, ...] = ()  # recent write durations
    influxdb_failing: bool = False
    commands_finished: Mapping[str, int] = field(default_factory=dict)  # by final state
    commands_active: Mapping[str, int] = field(default_factory=dict)  # by state, every unfinished one named
    websocket_clients: int = 0
    websocket_events_dropped: int = 0
    input_failures: Mapping[tuple[str, str], int] = field(default_factory=dict)  # by (surface, error type)

    @classmethod
    def of(
        cls,
        ingest: Ingest,
        spool: Spool[Any],
        writer: WriterStats,
        relay: CommandRelay,
        live: Live,
        boundaries: Boundaries,
    ) -> PartCounters:
        totals = ingest.totals
        return cls(
            received=totals.received,
            stored=totals.stored,
            rejected=dict(totals.rejected),
            bad_topics=totals.bad_topics,
            duplicates=totals.duplicates,
            retained_ignored=totals.retained_ignored,
            devices_evicted=totals.devices_evicted,
            errors_sent=totals.errors_sent,
            errors_suppressed=totals.errors_suppressed,
            devices_known=len(ingest.devices),
            devices_online=ingest.online_count(),
            queue_points=spool.in_memory(),
            spool_bytes=spool.unstored_bytes,
            spool_limit_bytes=spool.max_bytes,
            spool_oldest_s=spool.oldest_age_s(),
            spool_replayed=spool.replayed,
            spool_corrupt_bytes=spool.corrupt_bytes,
            write_batches=writer.batches,
            write_retries=writer.retries,
            write_rejected_points=writer.rejected,
            write_ms=tuple(writer.write_ms),
            influxdb_failing=writer.failing_since is not None,
            commands_finished=dict(relay.counts),
            commands_active=relay.active(),
            websocket_clients=len(live.clients),
            websocket_events_dropped=live.dropped,
            input_failures=dict(boundaries.failures),
        )


@dataclass(frozen=True, slots=True)
class HubCounters:
    """The hub's own counters at one moment, with its parts'."""

    intake_paused: bool = False
    pauses: int = 0
    broker_dropped: int | None = None  # None: the broker has not said
    unreadable_acks: int = 0
    mqtt_connected: bool = False
    mqtt_connects: int = 0
    loop_lag_s: float = 0.0
    stalled_s: float = 0.0
    stalls: int = 0
    parts: PartCounters = field(default_factory=PartCounters)
