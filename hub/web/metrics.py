"""Prometheus metrics, computed at scrape time from the hub's own counters (nothing is added to the hot path).

prometheus_client renders the exposition format; a custom collector reads one snapshot of the counters
(`hub.web.figures`) per scrape, taken from the same parts as `/api/stats`, so the two views can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from hub.web.deps import WebDeps
from hub.web.figures import HubCounters

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HubCollector(Collector):
    def __init__(self, counters: Callable[[], HubCounters], health: Callable[[], dict[str, object]]) -> None:
        self.counters = counters
        self.health = health

    def collect(self) -> Iterator[Metric]:
        counters = self.counters()
        parts = counters.parts

        def counter(name: str, doc: str, value: float) -> CounterMetricFamily:
            return CounterMetricFamily(f"labhub_{name}", doc, value=value)

        def gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"labhub_{name}", doc, value=value)

        yield counter("readings_received", "Telemetry messages received from devices", parts.received)
        yield counter("readings_stored", "Readings written to InfluxDB", parts.stored)
        rejected = CounterMetricFamily("labhub_readings_rejected", "Readings refused, by reason", labels=["reason"])
        for reason, count in sorted(parts.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected
        yield counter("bad_topics", "Messages on topics outside the contract", parts.bad_topics)
        yield counter("device_errors_sent", "Messages published on devices' errors topics", parts.errors_sent)
        yield counter(
            "device_errors_suppressed", "Error messages not sent (per-device rate limit)", parts.errors_suppressed
        )
        devices = GaugeMetricFamily("labhub_devices", "Devices known to the hub, by presence", labels=["state"])
        devices.add_metric(["online"], parts.devices_online)
        devices.add_metric(["not_online"], parts.devices_known - parts.devices_online)
        yield devices
        yield gauge("queue_points", "Accepted points held in memory for the writer", parts.queue_points)
        yield gauge("spool_bytes", "Accepted readings on disk not yet in InfluxDB", parts.spool_bytes)
        yield gauge("spool_limit_bytes", "Spool size at which intake pauses", parts.spool_limit_bytes)
        yield gauge("spool_oldest_seconds", "Age of the oldest reading not yet in InfluxDB", parts.spool_oldest_s)
        yield counter("spool_replayed", "Points written from the on-disk backlog", parts.spool_replayed)
        yield counter("duplicates", "Redelivered messages recognised as already spooled", parts.duplicates)
        yield gauge("intake_paused", "1 while MQTT intake is paused by backpressure", float(counters.intake_paused))
        yield counter("intake_pauses", "Times intake was paused by backpressure", counters.pauses)
        yield counter("write_batches", "Successful InfluxDB writes", parts.write_batches)
        yield counter("write_retries", "InfluxDB writes retried after a transient failure", parts.write_retries)
        yield counter("write_rejected_points", "Points InfluxDB refused as invalid", parts.write_rejected_points)
        latency = GaugeMetricFamily(
            "labhub_write_latency_seconds", "InfluxDB write latency over recent writes", labels=["quantile"]
        )
        recent = sorted(parts.write_ms)
        if recent:
            for q in (0.5, 0.9, 0.99):
                latency.add_metric([str(q)], recent[min(len(recent) - 1, int(q * len(recent)))] / 1000)
        yield latency
        yield gauge("influxdb_failing", "1 while InfluxDB writes are failing", float(parts.influxdb_failing))
        yield gauge("mqtt_connected", "1 while connected to the broker", float(counters.mqtt_connected))
        yield counter("mqtt_connects", "Successful connections to the broker", counters.mqtt_connects)
        if counters.broker_dropped is not None:
            yield counter(
                "broker_dropped_messages", "Messages the broker says it dropped ($SYS)", counters.broker_dropped
            )
        finished = CounterMetricFamily("labhub_commands", "Arm commands finished, by final state", labels=["state"])
        for state, count in sorted(parts.commands_finished.items()):
            finished.add_metric([state], count)
        yield finished
        active = GaugeMetricFamily(
            "labhub_commands_active", "Arm commands not finished yet, by state", labels=["state"]
        )
        for state, count in parts.commands_active.items():
            active.add_metric([state], count)
        yield active
        yield gauge("websocket_clients", "Live views open (WebSocket clients)", parts.websocket_clients)
        yield counter(
            "websocket_events_dropped",
            "Events dropped for slow WebSocket clients",
            parts.websocket_events_dropped,
        )
        failures = CounterMetricFamily(
            "labhub_input_failures",
            "Units of input whose handling failed inside the hub (caught at their boundary), by surface and error",
            labels=["surface", "error"],
        )
        for (surface, error), count in sorted(parts.input_failures.items()):
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
            parts.retained_ignored,
        )
        yield counter(
            "devices_evicted", "Undeclared devices forgotten when the device table was full", parts.devices_evicted
        )
        yield counter(
            "unreadable_acks",
            "Arm acknowledgements that could not be read (logged once a minute per arm)",
            counters.unreadable_acks,
        )
        yield counter("spool_corrupt_bytes", "Corrupt spool bytes skipped when reading back", parts.spool_corrupt_bytes)
        yield gauge("healthy", "1 when /healthz says ok", float(self.health()["status"] == "ok"))


def registry_for(deps: WebDeps) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HubCollector(deps.counters, deps.health))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)
