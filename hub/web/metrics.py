"""Prometheus metrics, computed at scrape time from the hub's own counters (nothing is added to the hot path).

prometheus_client renders the exposition format; a custom collector reads the same state as
`/api/stats`, so the two views can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hub.web.deps import WebDeps

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, deps: WebDeps) -> None:
        self.deps = deps

    def collect(self) -> Iterator[Metric]:
        deps = self.deps
        counters = deps.counters()
        totals = deps.totals
        writer = deps.writer

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"labhub_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"labhub_{name}", doc, value=value)

        yield counter("readings_received", "Telemetry messages received from devices", totals.received)
        yield counter("readings_stored", "Readings written to InfluxDB", totals.stored)
        rejected = CounterMetricFamily("labhub_readings_rejected", "Readings refused, by reason", labels=["reason"])
        for reason, count in sorted(totals.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield counter("bad_topics", "Messages on topics outside the contract", totals.bad_topics)
        yield counter("device_errors_sent", "Messages published on devices' errors topics", totals.errors_sent)
        yield counter(
            "device_errors_suppressed", "Error messages not sent (per-device rate limit)", totals.errors_suppressed
        )
        devices = GaugeMetricFamily("labhub_devices", "Devices known to the hub, by presence", labels=["state"])
        devices.add_metric(["online"], counters.devices_online)
        devices.add_metric(["not_online"], len(deps.devices) - counters.devices_online)
        yield devices
        spool = deps.spool
        yield gauge("queue_points", "Accepted points held in memory for the writer", spool.in_memory())
        yield gauge("spool_bytes", "Accepted readings on disk not yet in InfluxDB", spool.unstored_bytes)
        yield gauge("spool_limit_bytes", "Spool size at which intake pauses", spool.max_bytes)
        yield gauge("spool_oldest_seconds", "Age of the oldest reading not yet in InfluxDB", spool.oldest_age_s())
        yield counter("spool_replayed", "Points written from the on-disk backlog", spool.replayed)
        yield counter("duplicates", "Redelivered messages recognised as already spooled", totals.duplicates)
        yield gauge("intake_paused", "1 while MQTT intake is paused by backpressure", float(counters.intake_paused))
        yield counter("intake_pauses", "Times intake was paused by backpressure", counters.pauses)
        yield counter("write_batches", "Successful InfluxDB writes", writer.batches)
        yield counter("write_retries", "InfluxDB writes retried after a transient failure", writer.retries)
        yield counter("write_rejected_points", "Points InfluxDB refused as invalid", writer.rejected)
        latency = GaugeMetricFamily(
            "labhub_write_latency_seconds", "InfluxDB write latency over recent writes", labels=["quantile"]
        )
        recent = sorted(writer.write_ms)
        if recent:
            for q in (0.5, 0.9, 0.99):
                latency.add_metric([str(q)], recent[min(len(recent) - 1, int(q * len(recent)))] / 1000)
        yield latency
        yield gauge("influxdb_failing", "1 while InfluxDB writes are failing", float(writer.failing_since is not None))
        yield gauge("mqtt_connected", "1 while connected to the broker", float(counters.mqtt_connected))
        yield counter("mqtt_connects", "Successful connections to the broker", counters.mqtt_connects)
        if counters.broker_dropped is not None:
            yield counter(
                "broker_dropped_messages", "Messages the broker says it dropped ($SYS)", counters.broker_dropped
            )
        finished = CounterMetricFamily("labhub_commands", "Arm commands finished, by final state", labels=["state"])
        for state, count in sorted(deps.relay.counts.items()):
            finished.add_metric([state], count)
        yield finished
        active = GaugeMetricFamily(
            "labhub_commands_active", "Arm commands not finished yet, by state", labels=["state"]
        )
        states: dict[str, int] = {"queued": 0, "sent": 0, "accepted": 0}
        for record in deps.relay.by_id.values():
            if record.state.value in states:
                states[record.state.value] += 1
        for state, count in states.items():
            active.add_metric([state], count)
        yield active
        yield gauge("websocket_clients", "Live views open (WebSocket clients)", len(deps.live.clients))
        yield counter(
            "websocket_events_dropped",
            "Events dropped for slow WebSocket clients",
            deps.live.dropped,
        )
        failures = CounterMetricFamily(
            "labhub_input_failures",
            "Units of input whose handling failed inside the hub (caught at their boundary), by surface and error",
            labels=["surface", "error"],
        )
        for (surface, error), count in sorted(deps.boundaries.failures.items()):
            failures.add_metric([surface, error], count)
        yield failures
        yield gauge("loop_lag_seconds", "Worst event-loop lag over the last 5 s", counters.loop_lag_s)
        yield gauge(
            "intake_stalled",
            "1 while messages wait and none is handled (2 s or more)",
            float(counters.stalled_s >= 2),
        )
        yield counter("intake_stalls", "Times intake was found stalled", counters.stalls)
        yield counter(
            "retained_telemetry_ignored",
            "Stored copies of telemetry the broker sent again (not stored twice)",
            totals.retained_ignored,
        )
        yield counter(
            "devices_evicted", "Undeclared devices forgotten when the device table was full", totals.devices_evicted
        )
        yield counter(
            "unreadable_acks",
            "Arm acknowledgements that could not be read (logged once a minute per arm)",
            counters.unreadable_acks,
        )
        yield counter("spool_corrupt_bytes", "Corrupt spool bytes skipped when reading back", spool.corrupt_bytes)
        yield gauge("healthy", "1 when /healthz says ok", float(deps.health()["status"] == "ok"))


def registry_for(deps: WebDeps) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(deps))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
