"""The hub's condition in words and figures: the health verdict (/healthz), the stats (/api/stats) and the
progress line logged every few seconds. Read-only views over the parts; nothing here changes them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from hub.adapters.mqtt import MqttClient
from hub.boundary import Boundaries
from hub.ingest.durability import Durability
from hub.ingest.pipeline import Ingest
from hub.ingest.writer import WriterStats
from hub.watchdog import Watchdog

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Rates:
    """Counters sampled at the last progress report, to print rates."""

    at: float
    received: int = 0
    stored: int = 0
    rejected: int = 0


@dataclass(frozen=True, slots=True)
class ServiceState:
    """A service the lab runs beside the hub (mosquitto, influxd) as its supervisor sees it: the lab owns these,
    the hub only shows them (health, progress line)."""

    name: str
    up: bool
    restarts: int = 0  # how many times it was restarted after dying
    last_exit: int | None = None  # its last exit code (negative: killed by that signal)
    since: float = 0.0  # time.time() of the last change (up or down)

    def problem(self) -> str | None:
        """Why health is degraded because of this service, if it is."""
        if self.up:
            return None
        return (
            f"{self.name} exited (code {self.last_exit}) {time.time() - self.since:.1f} s ago; "
            f"the lab is restarting it (restart {self.restarts + 1})"
        )

    def summary(self) -> str | None:
        """Its part of the progress line: only once it has died."""
        if self.up and not self.restarts:
            return None
        state = "up" if self.up else "DOWN, restarting"
        return f"{self.name} {state} (restarted {self.restarts}x, last exit code {self.last_exit})"


class Status:
    def __init__(
        self,
        ingest: Ingest,
        durability: Durability,
        writer: WriterStats,
        mqtt: MqttClient,
        watchdog: Watchdog,
        boundaries: Boundaries,
        backend: str,
        services: Callable[[], Sequence[ServiceState]] = tuple,
    ) -> None:
        self._ingest = ingest
        self._durability = durability
        self._spool = durability.spool
        self._writer = writer
        self._mqtt = mqtt
        self._watchdog = watchdog
        self._boundaries = boundaries
        self._backend = backend
        self._services = services  # the lab's services, as its supervisor sees them (none for a hub alone)
        self.started = time.time()
        self.left_at_shutdown = 0  # readings not yet in InfluxDB when the hub stopped (they stay in the spool)
        self._rates = Rates(time.monotonic())

    def health(self) -> dict[str, object]:
        reasons = []
        if not self._mqtt.connected.is_set():
            reasons.append(f"MQTT broker unreachable: {self._mqtt.last_error or 'connecting'}")
        if self._writer.failing_since is not None:
            reasons.append(
                f"InfluxDB writes failing for {time.time() - self._writer.failing_since:.0f} s: "
                f"{self._writer.last_error}"
            )
        if (alarm := self._watchdog.broker_alarm()) is not None:
            reasons.append(alarm)
        if self._spool.full:
            reasons.append(f"spool full ({self._spool.unstored_bytes} bytes waiting for InfluxDB): intake paused")
        if self._spool.behind:
            reasons.append(
                f"InfluxDB is slower than the readings coming in ({self._spool.in_memory()} in memory): intake paused"
            )
        if self._durability.commit_paused:
            reasons.append(f"{self._spool.pending} readings wait for the disk: intake paused")
        reasons += self._watchdog.problems
        services = self._services()
        reasons += [problem for s in services if (problem := s.problem()) is not None]
        health: dict[str, object] = {"status": "degraded" if reasons else "ok", "reasons": reasons}
        if services:
            health["services"] = {
                s.name: {"up": s.up, "restarts": s.restarts, "last_exit": s.last_exit, "since": s.since}
                for s in services
            }
        return health

    def stats(self) -> dict[str, object]:
        totals = self._ingest.totals
        spool = self._spool
        ws = self._writer
        recent = sorted(ws.write_ms)
        return {
            "uptime_s": round(time.time() - self.started, 1),
            "received": totals.received,
            "stored": totals.stored,
            "rejected": dict(totals.rejected),
            "bad_topics": totals.bad_topics,
            "errors_sent": totals.errors_sent,
            "errors_suppressed": totals.errors_suppressed,
            "devices": len(self._ingest.devices),
            "devices_online": self._ingest.online_count(),
            "duplicates": totals.duplicates,
            "spool": {
                "unstored_bytes": spool.unstored_bytes,
                "limit_bytes": spool.max_bytes,
                "oldest_s": round(spool.oldest_age_s(), 3),
                "points_in_memory": spool.in_memory(),
                "commits": spool.commits,
                "replayed": spool.replayed,
                "intake_paused": self._durability.paused,
                "pauses": self._durability.pauses,
                "writer_behind": spool.behind,
            },
            "writer": {
                "backend": self._backend,
                "batches": ws.batches,
                "points": ws.points,
                "retries": ws.retries,
                "rejected_points": ws.rejected,
                "last_batch": ws.last_batch,
                "lingers": ws.lingers,
                "write_ms_p50": recent[len(recent) // 2] if recent else None,
                "write_ms_max": ws.max_write_ms,
                "last_error": ws.last_error,
            },
            "mqtt": {
                "connected": self._mqtt.connected.is_set(),
                "connects": self._mqtt.connects,
                "last_error": self._mqtt.last_error,
            },
            "left_at_shutdown": self.left_at_shutdown,
        }

    def progress_line(self) -> str:
        totals = self._ingest.totals
        now = time.monotonic()
        rejected = sum(totals.rejected.values())
        span = max(1e-6, now - self._rates.at)
        line = (
            f"{totals.stored} stored ({(totals.stored - self._rates.stored) / span:.1f}/s), "
            f"{rejected} rejected (+{rejected - self._rates.rejected}), "
            f"{self._ingest.online_count()}/{len(self._ingest.devices)} devices online, "
            f"spool {self._spool.unstored_bytes // 1024} KiB, "
            f"InfluxDB {'failing: ' + self._writer.last_error if self._writer.last_error else 'ok'}"
        )
        problems = self._watchdog.problems
        failures = self._boundaries.total
        if failures:
            line += f", {failures} inputs failed inside the hub"
        line += "".join(f", {summary}" for s in self._services() if (summary := s.summary()) is not None)
        line += f"; DEGRADED: {'; '.join(problems)}" if problems else ""
        self._rates = Rates(now, totals.received, totals.stored, rejected)
        return line

    async def report(self, every_s: float) -> None:
        while True:
            await asyncio.sleep(every_s)
            log.info("%s", self.progress_line())
