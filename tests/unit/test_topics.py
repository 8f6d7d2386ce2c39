"""Unit tests for devices.topics: the `lab/<cohort>/<learner>/<device>/<channel>[/<field>]` contract."""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef, ParsedTopic, TopicError, parse_topic, subscriptions

REF = DeviceRef("c1", "alice", "esp32")
SEGMENT_HELP = "is not a valid name: use 1–32 letters, digits, '_' or '-', starting with a letter or digit"


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("lab/c1/alice/esp32/telemetry", ParsedTopic(REF, "telemetry")),
        ("lab/c1/alice/esp32/status", ParsedTopic(REF, "status")),
        ("lab/c1/alice/esp32/errors", ParsedTopic(REF, "errors")),
        ("lab/c1/alice/esp32/ack", ParsedTopic(REF, "ack")),
        ("lab/c1/alice/esp32/commands", ParsedTopic(REF, "commands")),
        ("lab/c1/alice/esp32/commands/request", ParsedTopic(REF, "commands", "request")),
        ("lab/c1/alice/esp32/commands/result", ParsedTopic(REF, "commands", "result")),
        ("lab/c1/alice/esp32/telemetry/temperature", ParsedTopic(REF, "telemetry", "temperature")),
        ("lab/c1/alice/esp32/telemetry/pm2_5", ParsedTopic(REF, "telemetry", "pm2_5")),
        (
            "lab/2024-A/bob_1/node-7/telemetry",
            ParsedTopic(DeviceRef("2024-A", "bob_1", "node-7"), "telemetry"),
        ),
        ("lab/0/1/2/status", ParsedTopic(DeviceRef("0", "1", "2"), "status")),
        (
            "lab/" + "a" * 32 + "/B/c-_/telemetry",
            ParsedTopic(DeviceRef("a" * 32, "B", "c-_"), "telemetry"),
        ),
    ],
)
def test_parse_topic_accepts(topic: str, expected: ParsedTopic) -> None:
    assert parse_topic(topic) == expected


@pytest.mark.parametrize(
    ("topic", "message"),
    [
        # wrong number of levels or wrong root
        ("", "topic '' is not lab/<cohort>/<learner>/<device>/<channel>"),
        ("lab/c/l/d", "topic 'lab/c/l/d' is not lab/<cohort>/<learner>/<device>/<channel>"),
        (
            "lab/c/l/d/telemetry/a/b",
            "topic 'lab/c/l/d/telemetry/a/b' is not lab/<cohort>/<learner>/<device>/<channel>",
        ),
        ("labs/c/l/d/telemetry", "topic 'labs/c/l/d/telemetry' is not lab/<cohort>/<learner>/<device>/<channel>"),
        ("LAB/c/l/d/telemetry", "topic 'LAB/c/l/d/telemetry' is not lab/<cohort>/<learner>/<device>/<channel>"),
        ("/lab/c/l/d/telemetry", "topic '/lab/c/l/d/telemetry' is not lab/<cohort>/<learner>/<device>/<channel>"),
        # bad segments: the first bad one is named
        ("lab/-c/l/d/telemetry", f"'-c' {SEGMENT_HELP}"),
        ("lab/_c/l/d/telemetry", f"'_c' {SEGMENT_HELP}"),
        ("lab/c//d/telemetry", f"'' {SEGMENT_HELP}"),
        ("lab/c/l/d.x/telemetry", f"'d.x' {SEGMENT_HELP}"),
        ("lab/c/l/d x/telemetry", f"'d x' {SEGMENT_HELP}"),
        ("lab/c/l/é/telemetry", f"'é' {SEGMENT_HELP}"),
        ("lab/+/l/d/telemetry", f"'+' {SEGMENT_HELP}"),
        ("lab/c/#/d/telemetry", f"'#' {SEGMENT_HELP}"),
        ("lab/" + "a" * 33 + "/l/d/telemetry", f"'{'a' * 33}' {SEGMENT_HELP}"),
        ("lab/-c/-l/d/telemetry", f"'-c' {SEGMENT_HELP}"),
        ("lab/-c/l/d/metrics", f"'-c' {SEGMENT_HELP}"),
        # channels
        ("lab/c/l/d/metrics", "unknown channel 'metrics' in 'lab/c/l/d/metrics'"),
        ("lab/c/l/d/Telemetry", "unknown channel 'Telemetry' in 'lab/c/l/d/Telemetry'"),
        ("lab/c/l/d/", "unknown channel '' in 'lab/c/l/d/'"),
        (
            "lab/c/l/d/status/x",
            "only telemetry (…/telemetry/<field>) and commands/request|result have a sixth level: 'lab/c/l/d/status/x'",
        ),
        (
            "lab/c/l/d/errors/x",
            "only telemetry (…/telemetry/<field>) and commands/request|result have a sixth level: 'lab/c/l/d/errors/x'",
        ),
        (
            "lab/c/l/d/commands/x",
            "only telemetry (…/telemetry/<field>) and commands/request|result have a sixth level: 'lab/c/l/d/commands/x'",
        ),
        (
            "lab/c/l/d/ack/x",
            "only telemetry (…/telemetry/<field>) and commands/request|result have a sixth level: 'lab/c/l/d/ack/x'",
        ),
    ],
)
def test_parse_topic_rejects(topic: str, message: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(topic)
    assert str(info.value) == message


def test_topic_error_is_a_value_error() -> None:
    assert issubclass(TopicError, ValueError)


@pytest.mark.parametrize("topic", ["lab/c/l/dev\n/telemetry", "lab/c\n/l/d/status"])
def test_parse_topic_rejects_trailing_newline_in_segment(topic: str) -> None:
    with pytest.raises(TopicError):
        parse_topic(topic)


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("c1/alice/esp32", REF),
        ("2024-A/bob_1/node-7", DeviceRef("2024-A", "bob_1", "node-7")),
        ("a" * 32 + "/b/c", DeviceRef("a" * 32, "b", "c")),
    ],
)
def test_device_ref_parse_accepts(key: str, expected: DeviceRef) -> None:
    assert DeviceRef.parse(key) == expected


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("", "device id '' must be cohort/learner/device"),
        ("c1/alice", "device id 'c1/alice' must be cohort/learner/device"),
        ("c1/alice/esp32/extra", "device id 'c1/alice/esp32/extra' must be cohort/learner/device"),
        ("lab/c1/alice/esp32", "device id 'lab/c1/alice/esp32' must be cohort/learner/device"),
        ("c1/alice/-esp32", f"'-esp32' {SEGMENT_HELP}"),
        ("c1//esp32", f"'' {SEGMENT_HELP}"),
        ("c 1/alice/esp32", f"'c 1' {SEGMENT_HELP}"),
        ("c1/alice/" + "d" * 33, f"'{'d' * 33}' {SEGMENT_HELP}"),
    ],
)
def test_device_ref_parse_rejects(key: str, message: str) -> None:
    with pytest.raises(TopicError) as info:
        DeviceRef.parse(key)
    assert str(info.value) == message


def test_device_ref_parse_rejects_trailing_newline() -> None:
    with pytest.raises(TopicError):
        DeviceRef.parse("c1/alice/esp32\n")


def test_device_ref_key() -> None:
    assert REF.key == "c1/alice/esp32"


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ("telemetry", "lab/c1/alice/esp32/telemetry"),
        ("status", "lab/c1/alice/esp32/status"),
        ("errors", "lab/c1/alice/esp32/errors"),
    ],
)
def test_device_ref_topic(channel: str, expected: str) -> None:
    assert REF.topic(channel) == expected


@pytest.mark.parametrize("channel", ["telemetry", "status", "errors"])
def test_device_ref_topic_round_trips_through_parse_topic(channel: str) -> None:
    assert parse_topic(REF.topic(channel)) == ParsedTopic(REF, channel)


def test_device_ref_key_round_trips_through_parse() -> None:
    assert DeviceRef.parse(REF.key) == REF


def test_device_ref_is_hashable_and_frozen() -> None:
    assert {REF: 1}[DeviceRef("c1", "alice", "esp32")] == 1
    with pytest.raises(AttributeError):
        REF.device = "other"  # type: ignore[misc]


def test_subscriptions() -> None:
    assert subscriptions() == [
        "lab/+/+/+/telemetry",
        "lab/+/+/+/telemetry/+",
        "lab/+/+/+/commands/request",
        "lab/+/+/+/status",
        "lab/+/+/+/ack",
    ]
    # Workers share telemetry and requests; each sees every status and every acknowledgement.
    assert subscriptions("g") == [
        "$share/g/lab/+/+/+/telemetry",
        "$share/g/lab/+/+/+/telemetry/+",
        "$share/g/lab/+/+/+/commands/request",
        "lab/+/+/+/status",
        "lab/+/+/+/ack",
    ]
