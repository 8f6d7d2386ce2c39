"""The ingest's device table and per-device pacing, without a broker: routes, types, stamps, error replies."""

from __future__ import annotations

import json

import pytest

from devices.kinds import FieldType
from devices.topics import DeviceRef
from hub.adapters.mqtt import Message
from hub.config import DeviceConfig
from hub.ingest.device_table import ERROR_BURST, DeviceTable, IngestTotals, influx_type_of
from hub.ingest.pipeline import Ingest

AQ = DeviceRef("c", "ana", "aq1")


def table(open_mode: bool = False) -> tuple[DeviceTable, IngestTotals]:
    totals = IngestTotals()
    made = DeviceTable(
        [DeviceConfig(AQ, "air_quality")],
        totals=totals,
        language=lambda cohort: "fr" if cohort == "c" else "en",
        open_mode=open_mode,
        errors_per_second=5.0,
        inspector_size=3,
        stamp_stride=1,
        watch=lambda ref: False,
    )
    return made, totals


@pytest.mark.parametrize(
    ("name", "ftype"),
    [
        ("float", FieldType.FLOAT),
        ("integer", FieldType.INTEGER),
        ("unsigned", FieldType.INTEGER),
        ("boolean", FieldType.BOOLEAN),
        ("string", FieldType.STRING),
        ("anything else", FieldType.STRING),
    ],
)
def test_influx_types_map_to_field_types(name: str, ftype: FieldType) -> None:
    assert influx_type_of(name) == ftype


# topic → (device key, channel, field) or None; whether it counts as a bad topic; in open mode?
ROUTES = [
    ("lab/c/ana/aq1/telemetry", ("c/ana/aq1", "telemetry", None), 0, False),
    ("lab/c/ana/aq1/telemetry/pm25", ("c/ana/aq1", "telemetry", "pm25"), 0, False),
    ("lab/c/ana/aq1/status", ("c/ana/aq1", "status", None), 0, False),
    ("lab/c/bob/x/status", None, 0, False),  # a status of no device of this closed lab: ignored, not counted
    ("lab/c/bob/x/telemetry", ("c/bob/x", "telemetry", None), 0, False),  # unknown: answered by the pipeline
    ("lab/c/bob/x/status", ("c/bob/x", "status", None), 0, True),
    ("lab/c/ana", None, 1, False),
    ("elsewhere/c/ana/aq1/telemetry", None, 1, False),
]


@pytest.mark.parametrize(("topic", "route", "bad", "open_mode"), ROUTES)
def test_a_topic_routes_to_its_device(
    topic: str, route: tuple[str, str, str | None] | None, bad: int, open_mode: bool
) -> None:
    devices, totals = table(open_mode)
    found = devices.route(topic)
    assert (None if found is None else (found[0].ref.key, found[1], found[2])) == route
    assert totals.bad_topics == bad
    assert (topic in devices.routes) == (found is not None)


def test_a_new_device_gets_its_cohorts_language_and_kind() -> None:
    devices, _ = table(open_mode=True)
    state = devices.device(DeviceRef("c", "bob", "x"))
    assert state is not None and state.kind is not None
    assert (state.kind.name, state.language, state.declared, state.measurement) == (
        "generic",
        "fr",
        False,
        "generic.c.bob",
    )
    assert devices.device(AQ) is devices.devices[AQ] and devices.devices[AQ].declared


def test_types_influxdb_holds_pin_open_kinds_only() -> None:
    devices, _ = table(open_mode=True)
    bob = devices.device(DeviceRef("c", "bob", "x"))
    assert bob is not None
    devices.learn_types({("generic.c.bob", "t"): "integer", ("air_quality", "pm25"): "string"})
    assert bob.pins == {"t": FieldType.INTEGER} and devices.devices[AQ].pins == {}
    devices.pin("generic.c.bob", "t", FieldType.FLOAT)
    assert bob.pins == {"t": FieldType.FLOAT}


def ingest(
    published: list[dict[str, object]], lines: list[str], clock: list[int], stride: int = 1, offset: int = 0
) -> Ingest:
    return Ingest(
        [DeviceConfig(AQ, "generic")],
        enqueue=lambda now, digest, key, line, entry: lines.append(line),
        publish=lambda topic, payload: published.append(json.loads(payload)),
        language=lambda cohort: "en",
        open_mode=False,
        max_payload_bytes=16384,
        errors_per_second=5.0,
        clock=lambda: clock[0],
        stamp_stride=stride,
        stamp_offset=offset,
    )


@pytest.mark.parametrize(("stride", "offset", "stamps"), [(1, 0, [1000, 1001, 1002]), (3, 1, [1000, 1003, 1006])])
def test_readings_at_one_instant_get_unique_stamps_in_the_workers_class(
    stride: int, offset: int, stamps: list[int]
) -> None:
    lines: list[str] = []
    pipeline = ingest([], lines, [1000], stride, offset)
    for _ in range(3):
        pipeline.handle(Message("lab/c/ana/aq1/telemetry", b'{"t": 1.5}', 0, False))
    assert [int(line.rsplit(" ", 1)[1]) for line in lines] == stamps
    assert all(stamp % stride == offset % stride for stamp in stamps)


def test_error_replies_come_in_a_burst_then_at_their_rate() -> None:
    published: list[dict[str, object]] = []
    clock = [10**12]
    pipeline = ingest(published, [], clock)
    for _ in range(30):
        pipeline.handle(Message("lab/c/ana/aq1/telemetry", b"{", 0, False))
    assert len(published) == ERROR_BURST == 20
    clock[0] += 199_000_000  # 5/s: not yet a token
    pipeline.handle(Message("lab/c/ana/aq1/telemetry", b"{", 0, False))
    assert len(published) == 20
    clock[0] += 1_000_000
    pipeline.handle(Message("lab/c/ana/aq1/telemetry", b"{", 0, False))
    assert len(published) == 21 and published[-1]["suppressed_before"] == 11
    assert pipeline.totals.errors_suppressed == 11 and pipeline.totals.errors_sent == 21
