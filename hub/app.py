"""The hub service: wires MQTT intake, the point queue, the writer and the HTTP API, and owns their lifecycle.

Every long-lived task starts here, in one TaskGroup; every resource has its cleanup on one exit stack.
Shutdown order matters: stop intake first, then give the writer a bounded time to drain the queue,
then close the HTTP API and the database client. Points still queued then are counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from aiohttp import web

from hub.config import LabConfig
from hub.ingest import Ingest, InspectorEntry
from hub.mqtt import MqttClient
from hub.services import ServiceError
from hub.storage import InfluxV1, PointQueue, StorageError, Writer, make_backend
from hub.topics import subscriptions

log = logging.getLogger(__name__)


@dataclass(slots=True)
class Rates:
    """Counters sampled at the last progress report, to print rates."""

    at: float
    received: int = 0
    stored: int = 0
    rejected: int = 0


class Hub:
    def __init__(self, cfg: LabConfig, report_every_s: float = 10.0) -> None:
        self.cfg = cfg
        self.report_every_s = report_every_s
        self.backend = make_backend(cfg.influx)
        self.queue: PointQueue[InspectorEntry] = PointQueue(
            cfg.hub.queue_max_points, on_full=self._intake_full, on_drained=self._intake_drained
        )
        self.ingest = Ingest(
            cfg.devices,
            enqueue=self.queue.put,
            publish=self._publish_error,
            language=cfg.language,
            open_mode=cfg.hub.open_mode,
            max_payload_bytes=cfg.hub.max_payload_bytes,
            errors_per_second=cfg.hub.errors_per_second,
            inspector_size=cfg.hub.inspector_size,
        )
        self.mqtt = MqttClient(
            cfg.mqtt.host,
            cfg.mqtt.port,
            cfg.mqtt.client_id,
            on_message=self.ingest.handle,
            subscriptions=[(t, 1) for t in subscriptions()],
            keepalive=cfg.mqtt.keepalive,
        )
        self.writer: Writer[InspectorEntry] = Writer(
            self.backend, self.queue, cfg.hub.batch_max_points, self.ingest.on_stored, self.ingest.on_storage_rejected
        )
        self.started = time.time()
        self.pauses = 0
        self._pause_logged = -1e9
        self.lost_at_shutdown = 0
        self.http_port = cfg.hub.http_port
        self.ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._rates = Rates(time.monotonic())

    def stop(self) -> None:
        self._stop.set()

    # Wiring ------------------------------------------------------------------------------------------

    def _publish_error(self, topic: str, payload: bytes) -> None:
        self.mqtt.publish(topic, payload, qos=0)

    def _intake_full(self) -> None:
        self.pauses += 1
        now = time.monotonic()
        if now - self._pause_logged >= 10.0:  # say it loudly, but not a thousand times a minute
            self._pause_logged = now
            log.warning(
                "point queue full (%d points): pausing MQTT intake until InfluxDB catches up (pause #%d)",
                len(self.queue),
                self.pauses,
            )
        self.mqtt.pause_reading()

    def _intake_drained(self) -> None:
        log.debug("point queue drained to %d points: resuming MQTT intake", len(self.queue))
        self.mqtt.resume_reading()

    async def run(self) -> None:
        from hub.web import make_app

        async with contextlib.AsyncExitStack() as stack:
            await self.backend.start()
            stack.push_async_callback(self.backend.close)
            await self._prepare_storage()
            runner = web.AppRunner(make_app(self), access_log=None)
            await runner.setup()
            stack.push_async_callback(runner.cleanup)
            site = web.TCPSite(runner, self.cfg.hub.http_host, self.cfg.hub.http_port)
            try:
                await site.start()
            except OSError as err:
                raise ServiceError(
                    f"hub API cannot listen on {self.cfg.hub.http_host}:{self.cfg.hub.http_port}: {err.strerror} "
                    "(set hub.http_port or --http-port)"
                ) from None
            server = getattr(site, "_server", None)
            if server is not None and server.sockets:
                self.http_port = server.sockets[0].getsockname()[1]
            log.info("hub API on http://%s:%d", self.cfg.hub.http_host, self.http_port)
            async with asyncio.TaskGroup() as tg:
                mqtt_task = tg.create_task(self.mqtt.run(), name="mqtt")
                writer_task = tg.create_task(self.writer.run(), name="writer")
                report_task = tg.create_task(self._report_loop(), name="report")
                try:
                    await self.mqtt.wait_connected(30)
                except TimeoutError:
                    log.warning("not connected to the broker yet (%s); still trying", self.mqtt.last_error)
                self.ready.set()
                await self._stop.wait()
                log.info("stopping: closing MQTT intake, writing what is queued")
                await self.mqtt.stop()
                self.lost_at_shutdown = await self.writer.drain(timeout=10.0)
                if self.lost_at_shutdown:
                    log.error("%d accepted readings could not be written before shutdown", self.lost_at_shutdown)
                for task in (mqtt_task, writer_task, report_task):
                    task.cancel()
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
            types = await self.backend.field_types("generic")
        except StorageError as err:
            log.warning("InfluxDB not ready at start (%s); writes will be retried", err)
            return
        self.ingest.learn_types("generic", types)

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
            f"queue {len(self.queue)}, InfluxDB {'failing: ' + self.writer.stats.last_error if self.writer.stats.last_error else 'ok'}"
        )
        self._rates = Rates(now, totals.received, totals.stored, rejected)
        return line

    # Views -------------------------------------------------------------------------------------------

    def health(self) -> dict[str, object]:
        reasons = []
        if not self.mqtt.connected.is_set():
            reasons.append(f"MQTT broker unreachable: {self.mqtt.last_error or 'connecting'}")
        if self.writer.stats.failing_since is not None:
            reasons.append(
                f"InfluxDB writes failing for {time.time() - self.writer.stats.failing_since:.0f} s: "
                f"{self.writer.stats.last_error}"
            )
        if self.queue.full:
            reasons.append(f"point queue full ({len(self.queue)}): intake paused")
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
            "queue": {
                "points": len(self.queue),
                "limit": self.queue.high_water,
                "peak": self.queue.peak,
                "intake_paused": self.queue.full,
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
            "lost_at_shutdown": self.lost_at_shutdown,
        }
