"""The counters snapshot /metrics reads: `PartCounters.of` takes every figure from its part, at one moment."""

from __future__ import annotations

from pathlib import Path

from devices.topics import DeviceRef
from hub.boundary import HTTP, Boundaries
from hub.commands.relay import CommandRelay
from hub.config import ARM_PROFILES, DeviceConfig
from hub.ingest.pipeline import Ingest
from hub.ingest.spool import Spool
from hub.ingest.writer import WriterStats
from hub.web.figures import PartCounters
from hub.web.live import Live

ARM = DeviceRef("demo", "ana", "arm1")


async def test_the_snapshot_takes_each_figure_from_its_part(tmp_path: Path) -> None:
    ingest = Ingest(
        [DeviceConfig(ARM, "arm"), DeviceConfig(DeviceRef("demo", "ben", "aq1"), "air_quality")],
        enqueue=lambda now, digest, key, line, entry: None,
        publish=lambda topic, payload: None,
        language=lambda cohort: "en",
        open_mode=False,
        max_payload_bytes=16384,
        errors_per_second=5.0,
    )
    ingest.devices[ARM].online = True
    totals = ingest.totals
    totals.received, totals.stored, totals.bad_topics, totals.duplicates = 11, 10, 3, 4
    totals.retained_ignored, totals.devices_evicted, totals.errors_sent, totals.errors_suppressed = 5, 6, 7, 8
    totals.rejected["out_of_range"] = 2
    spool: Spool[None] = Spool(tmp_path, 4096, on_full=lambda: None, on_drained=lambda: None)
    spool.committed_end, spool.checkpoint, spool.replayed = 300, 100, 9
    writer = WriterStats(batches=12, retries=13, rejected=14, failing_since=1.0, write_ms=[5.0, 6.0])
    relay = CommandRelay(
        {ARM: ARM_PROFILES["mearm"]},
        publish=lambda topic, payload, qos: None,
        audit=lambda record: None,
        refused=lambda ref, request, err, source: None,
        online=lambda ref: True,
    )
    relay.submit(ARM, {"type": "home"}, "test")
    live = Live()
    live.add(frozenset({ARM})).dropped = 15
    boundaries = Boundaries()
    boundaries.failed(HTTP, "/api/stats", ValueError("x"))
    try:
        parts = PartCounters.of(ingest, spool, writer, relay, live, boundaries)
    finally:
        relay.shutdown()
    assert parts == PartCounters(
        received=11,
        stored=10,
        rejected={"out_of_range": 2},
        bad_topics=3,
        duplicates=4,
        retained_ignored=5,
        devices_evicted=6,
        errors_sent=7,
        errors_suppressed=8,
        devices_known=2,
        devices_online=1,
        queue_points=0,
        spool_bytes=200,
        spool_limit_bytes=4096,
        spool_oldest_s=0.0,
        spool_replayed=9,
        spool_corrupt_bytes=0,
        write_batches=12,
        write_retries=13,
        write_rejected_points=14,
        write_ms=(5.0, 6.0),
        influxdb_failing=True,
        commands_finished={state: 0 for state in relay.counts},
        commands_active={"queued": 0, "sent": 1, "accepted": 0},
        websocket_clients=1,
        websocket_events_dropped=15,
        input_failures={(HTTP, "ValueError"): 1},
    )
