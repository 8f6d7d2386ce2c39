"""Mosquitto 2.0.11's own lines (captured with `log_type all` against the real broker) → broker events."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.doctor import events as ev
from hub.doctor.brokerlog import BrokerLogFollower, BrokerLogParser
from hub.doctor.events import BrokerEvent

T = "1795822881: "
SEEDS = [  # real lines, and client ids made to look like the broker's own words
    T + "Received SUBSCRIBE from a (d0, q0, r1, m0, 'x', ... (1 bytes))",
    T + "\tlab/a/b/c/errors (QoS 1)",
    T
    + "Received PUBLISH from x (d0, q1, r1, m2, 'lab/a/b/c/telemetry', ... (10 bytes)) (d0, q0, r0, m0, 'y', ... (1 bytes))",
    T + "New client connected from 127.0.0.1:1 as a (p2, c1, k60, u'b') (p2, c1, k60).",
    T + "Will message specified (7 bytes) (r1, q1).",
    T + "Sending CONNACK to ::1 (0, 5)",
    T + "Client a b already connected, closing old connection.",
]


def parse(*lines: str) -> list[BrokerEvent]:
    parser = BrokerLogParser()
    return [event for line in lines for event in parser.feed(T + line + "\n")]


def kinds(*lines: str) -> list[tuple[str, str, str, str]]:
    return [(e.kind, e.client, e.username or e.address, e.topic) for e in parse(*lines)]


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (  # wrong password and unknown user print the same: only the address the refusal goes to
            [
                "New connection from 127.0.0.1:36549 on port 32106.",
                "Sending CONNACK to 127.0.0.1 (0, 5)",
                "Client <unknown> disconnected, not authorised.",
            ],
            [(ev.REFUSED, "", "127.0.0.1", "")],
        ),
        (["Sending CONNACK to 127.0.0.7 (0, 135)"], [(ev.REFUSED, "", "127.0.0.7", "")]),  # MQTT 5
        (["Sending CONNACK to demo/ana/aq1 (0, 0)"], []),  # accepted
        (
            ["New client connected from 127.0.0.1:36871 as demo/ana/aq1 (p2, c1, k60, u'demo/ana/aq1')."],
            [(ev.CONNECTED, "demo/ana/aq1", "demo/ana/aq1", "")],
        ),
        (
            ["New client connected from 127.0.0.1:5 as sim-1 (p5, c0, k15)."],  # open mode: anonymous
            [(ev.CONNECTED, "sim-1", "127.0.0.1", "")],
        ),
        (["Client demo/ana/aq1 already connected, closing old connection."], [(ev.COLLISION, "demo/ana/aq1", "", "")]),
        (["Client demo/ana/aq2 has exceeded timeout, disconnecting."], [(ev.TIMEOUT, "demo/ana/aq2", "", "")]),
        (["Client demo/ana/aq2 closed its connection."], [(ev.UNCLEAN_END, "demo/ana/aq2", "", "")]),
        (["Socket error on client demo/ana/aq2, disconnecting."], [(ev.UNCLEAN_END, "demo/ana/aq2", "", "")]),
        (
            ["Received DISCONNECT from demo/ana/aq1", "Client demo/ana/aq1 disconnected."],
            [(ev.CLEAN_END, "demo/ana/aq1", "", "")],
        ),
        (["Client <unknown> disconnected, not authorised."], []),
        (
            [
                "Received PUBLISH from demo/ana/aq1 (d0, q0, r0, m0, 'lab/demo/ana/aq1/telemetry', ... (10 bytes))",
                "Received PUBLISH from demo/ana/aq1 (d0, q0, r0, m1, 'lab/demo/ana/aq1/telemetry', ... (10 bytes))",
            ],
            [(ev.PUBLISHED, "demo/ana/aq1", "", "lab/demo/ana/aq1/telemetry")],  # the first only: the bulk is skipped
        ),
        (
            ["Received PUBLISH from demo/ana/aq1 (d0, q1, r1, m2, 'lab/demo/ana/aq1/telemetry', ... (10 bytes))"],
            [(ev.PUBLISHED, "demo/ana/aq1", "", "lab/demo/ana/aq1/telemetry")],
        ),
        (
            [
                "Denied PUBLISH from demo/ana/aq1 (d0, q1, r0, m3, 'lab/demo/ana/aq2/telemetry', ... (10 bytes))",
                "Sending PUBACK to demo/ana/aq1 (m3, rc135)",
            ],
            [(ev.DENIED_PUBLISH, "demo/ana/aq1", "", "lab/demo/ana/aq2/telemetry")],
        ),
        (
            [
                "Received SUBSCRIBE from demo/ana/aq1",
                "\tlab/demo/ana/aq1/errors (QoS 1)",
                "demo/ana/aq1 1 lab/demo/ana/aq1/errors",
                "Sending SUBACK to demo/ana/aq1",
            ],
            [(ev.SUBSCRIBED, "demo/ana/aq1", "", "lab/demo/ana/aq1/errors")],
        ),
        (
            [
                "Received SUBSCRIBE from demo/ana/aq1",
                "\tlab/demo/ana/aq2/errors (QoS 1)",
                "Sending SUBACK to demo/ana/aq1",
            ],
            [(ev.DENIED_SUBSCRIBE, "demo/ana/aq1", "", "lab/demo/ana/aq2/errors")],
        ),
        (
            [
                "Received SUBSCRIBE from a b",
                "\tlab/x/y/z/errors (QoS 0)",
                "\tlab/x/y/z/commands (QoS 1)",
                "a b 1 lab/x/y/z/commands",
                "Sending SUBACK to a b",
            ],
            [(ev.SUBSCRIBED, "a b", "", "lab/x/y/z/commands"), (ev.DENIED_SUBSCRIBE, "a b", "", "lab/x/y/z/errors")],
        ),
        (["Saving in-memory database to /var/lib/mosquitto//mosquitto.db."], []),
        (["garbage", "", ": :", "Client", "New client connected from nowhere"], []),
    ],
)
def test_lines(lines: list[str], expected: list[tuple[str, str, str, str]]) -> None:
    assert kinds(*lines) == expected


def test_retain_size_and_will() -> None:
    events = parse(
        "New client connected from 127.0.0.1:42041 as demo/ana/aq1 (p2, c1, k60, u'demo/ana/aq1').",
        "Will message specified (7 bytes) (r1, q1).",
        "\tlab/demo/ana/aq1/status",
        "Denied PUBLISH from demo/ana/aq1 (d0, q1, r1, m4, 'lab/demo/ana/aq1/commands', ... (7 bytes))",
        "No will message specified.",
    )
    assert [e.kind for e in events] == [ev.CONNECTED, ev.WILL, ev.DENIED_PUBLISH, ev.WILL]
    assert (events[1].will, events[1].client, events[1].topic) == (True, "demo/ana/aq1", "lab/demo/ana/aq1/status")
    assert events[3].will is False
    assert events[2].retain is True and events[2].size == 7


def test_follower_reads_whole_lines_and_truncates(tmp_path: pytest.TempPathFactory) -> None:
    path = tmp_path / "events.log"  # type: ignore[operator]
    path.write_text("1: old line before the hub\n")
    got: list[BrokerEvent] = []
    follower = BrokerLogFollower(path, got.append, max_bytes=200)
    assert follower.read_new() == []  # starts at the end
    with open(path, "a") as fh:
        fh.write(T + "Client demo/ana/aq2 has exceeded timeout, disconnecting.\n" + T + "Client demo/ana/a")
    follower.feed(follower.read_new())
    assert [e.kind for e in got] == [ev.TIMEOUT]
    with open(path, "a") as fh:
        fh.write("q1 closed its connection.\n" + "x" * 300 + "\n")
    follower.feed(follower.read_new())
    assert [(e.kind, e.client) for e in got][1:] == [(ev.UNCLEAN_END, "demo/ana/aq1")]
    follower.read_new()  # all read, over max_bytes: truncated
    assert path.stat().st_size == 0
    with open(path, "a") as fh:
        fh.write(T + "Client demo/ana/aq3 closed its connection.\n")
    follower.feed(follower.read_new())
    assert got[-1].client == "demo/ana/aq3"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300) | st.sampled_from(SEEDS), max_size=30))
def test_any_lines_never_break_the_parser(lines: list[str]) -> None:
    """Whatever the broker's file holds (a client id with spaces and brackets, a torn line), the parser goes on."""
    parser = BrokerLogParser()
    for line in lines:
        for event in parser.feed(line):
            assert len(event.line) <= 2000 and len(event.topic) <= 2000 and len(event.client) <= 2000


BULK = [  # what a busy lab's log is mostly made of, for clients the parser has seen connect or not
    T + "Received PUBLISH from demo/ana/aq1 (d0, q0, r0, m0, 'lab/demo/ana/aq1/telemetry', ... (117 bytes))",
    T + "Received PUBLISH from demo/ana/aq1 (d0, q1, r1, m3, 'lab/demo/ana/aq1/status', ... (6 bytes))",
    T + "Sending PUBLISH to labhub-hub-1 (d0, q0, r0, m0, 'lab/demo/ana/aq1/telemetry', ... (117 bytes))",
    T + "New client connected from 127.0.0.1:5 as demo/ana/aq1 (p2, c1, k60, u'demo/ana/aq1').",
    T + "Received PUBLISH from c (d (d0, q0, r0, m0, 'lab/x/y/z/telemetry', ... (1 bytes))",
    "Received PUBLISH from demo/ana/aq1 (d0, q0, r0, m0, 'lab/demo/ana/aq1/telemetry', ... (2 bytes))",
    T + "Received PUBACK from demo/ana/aq1 (Mid: 3, RC:0)",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([s.encode() for s in SEEDS + BULK]), max_size=40))
def test_lines_passed_over_undecoded_are_those_the_parser_would_pass_over(lines: list[bytes]) -> None:
    """The follower's fast path (bytes, undecoded) gives exactly the events the plain parser gives."""
    fast, plain = BrokerLogParser(), BrokerLogParser()
    for line in lines:
        assert fast.feed_bytes(line) == plain.feed(line.decode("utf-8", errors="replace"))


def test_a_known_clients_plain_publishes_are_passed_over_and_a_new_connection_is_seen_again() -> None:
    parser = BrokerLogParser()
    connect, publish = BULK[3].encode(), BULK[0].encode()
    assert [e.kind for e in parser.feed_bytes(connect)] == [ev.CONNECTED]
    assert [e.kind for e in parser.feed_bytes(publish)] == [ev.PUBLISHED]  # its first publish names its device
    assert parser.feed_bytes(publish) == []  # the rest are bulk
    assert parser.feed_bytes(BULK[2].encode()) == []
    assert [e.kind for e in parser.feed_bytes(BULK[1].encode())] == [ev.PUBLISHED]  # retained: always
    parser.feed_bytes(connect)  # connected again: its first publish counts again
    assert [e.kind for e in parser.feed_bytes(publish)] == [ev.PUBLISHED]


class Followed:
    """A follower of a fresh events file: `append` writes to the file, then feeds what the follower reads."""

    def __init__(self, path: Path, bulk_from_lines: int) -> None:
        path.write_bytes(b"")
        self.path = path
        self.events: list[BrokerEvent] = []
        self.follower = BrokerLogFollower(path, self.events.append, bulk_from_lines=bulk_from_lines)
        self.follower.read_new()  # starts at the end

    def append(self, data: bytes) -> None:
        with open(self.path, "ab") as fh:
            fh.write(data)
        self.follower.feed(self.follower.read_new())


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=200) | st.sampled_from([s.encode() for s in SEEDS + BULK]), max_size=40))
def test_a_busy_read_passed_over_in_bulk_loses_only_first_plain_publishes(lines: list[bytes]) -> None:
    """Past its threshold the follower drops the traffic's lines in one regex pass: every event the plain parser
    gives comes out the same, but a client's first plain (not retained) publish."""
    lines = [line.replace(b"\n", b" ") for line in lines]
    with tempfile.TemporaryDirectory() as tmp:
        followed = Followed(Path(tmp) / "events.log", bulk_from_lines=0)
        followed.append(b"".join(line + b"\n" for line in lines) + b"1: a partial line")
    assert followed.follower.lines == len(lines) and followed.follower.bulk_reads == (1 if lines else 0)
    plain = BrokerLogParser()
    every = [e for line in lines for e in plain.feed(line.decode("utf-8", errors="replace"))]
    assert followed.events == [e for e in every if not (e.kind == ev.PUBLISHED and ", r1, " not in e.line)]


def test_a_quiet_read_is_parsed_line_by_line_and_a_busy_one_in_bulk(tmp_path: Path) -> None:
    followed = Followed(tmp_path / "events.log", bulk_from_lines=3)
    connect, publish = BULK[3].encode() + b"\n", BULK[0].encode() + b"\n"
    followed.append(connect + publish + publish)  # 3 lines: one by one, the first publish names the device
    assert [e.kind for e in followed.events] == [ev.CONNECTED, ev.PUBLISHED] and followed.follower.bulk_reads == 0
    followed.append(connect + publish * 3 + (T + "Client demo/ana/aq1 closed its connection.\n").encode())
    assert [e.kind for e in followed.events[2:]] == [ev.CONNECTED, ev.UNCLEAN_END]
    assert followed.follower.bulk_reads == 1


def test_a_connects_will_split_across_two_bulk_reads_is_still_seen(tmp_path: Path) -> None:
    """A read ends at a newline: nothing (not even an empty line) comes between its last line and the next read's."""
    followed = Followed(tmp_path / "events.log", bulk_from_lines=0)
    followed.append((BULK[3] + "\n" + T + "Will message specified (7 bytes) (r1, q1).\n").encode())
    followed.append(b"\tlab/demo/ana/aq1/status\n")
    assert [(e.kind, e.topic) for e in followed.events] == [(ev.CONNECTED, ""), (ev.WILL, "lab/demo/ana/aq1/status")]
