"""USB-serial boards without a broker: lines and SDS011 frames into readings, acks and problems with hints, framing
across chunks and through pyserial's loop://, commands going down, and the bounded buffer while no broker answers."""

from __future__ import annotations

import json
import time

import pytest

from devices.serial_protocols import (
    AckLine,
    LineFramer,
    Sds011Framer,
    SerialProblem,
    Telemetry,
    encode_command,
    parse_line,
    sds011_frame,
)
from hub.adapters.serial_port import SerialPort
from hub.bridges.serial_bridge import Bridge

# Framing ----------------------------------------------------------------------------------------------------


def test_lines_are_framed_across_chunks_and_long_lines_are_cut() -> None:
    framer = LineFramer(max_bytes=32)
    assert framer.feed(b"temp=2") == []
    assert framer.feed(b"1.5\r\nhum=4") == [b"temp=21.5"]
    assert framer.feed(b"0\n") == [b"hum=40"]
    out = framer.feed(b"x" * 40)
    assert len(out) == 1 and isinstance(out[0], SerialProblem) and out[0].code == "line_too_long"
    assert framer.feed(b"yyy\nok=1\n") == [b"ok=1"]  # the rest of the long line is skipped, then all is well
    framer.feed(b"half a li")
    framer.reset()  # the cable was pulled
    assert framer.feed(b"ne\nok=2\n") == [b"ne", b"ok=2"]
    assert framer.feed(b"a=1\rb=2\r") == [b"a=1", b"b=2"]  # CR alone ends a line too
    long_line = b"z" * 40 + b"\n"  # complete in one chunk, still too long
    out = framer.feed(long_line + b"ok=3\n")
    assert isinstance(out[0], SerialProblem) and out[0].code == "line_too_long" and out[1:] == [b"ok=3"]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"temp=21.5,hum=40", Telemetry(b'{"temp": 21.5, "hum": 40.0}')),
        (b"temp:21.5 hum:40\r", Telemetry(b'{"temp": 21.5, "hum": 40.0}')),
        (b"pm2_5=12\tpm10=20;door=open", Telemetry(b'{"pm2_5": 12.0, "pm10": 20.0, "door": "open"}')),
        (b"led=true", Telemetry(b'{"led": true}')),
        (b"t=-3.5e1", Telemetry(b'{"t": -35.0}')),
        ("unit=°C,t=21".encode(), Telemetry(b'{"unit": "\\u00b0C", "t": 21.0}')),  # UTF-8 text is text
        (b'{"pm2_5": 12.4}', Telemetry(b'{"pm2_5": 12.4}')),
        (b"{pm2_5: 3}", Telemetry(b"{pm2_5: 3}")),  # broken JSON goes on: the hub explains the mistake
        (b'{"id": "m1", "status": "accepted"}', AckLine(b'{"id": "m1", "status": "accepted"}')),
        (b"", None),
        (b"  \r", None),
    ],
)
def test_a_line_becomes_a_reading_or_an_acknowledgement(line: bytes, expected: object) -> None:
    assert parse_line(line) == expected


@pytest.mark.parametrize(
    ("line", "code"),
    [
        (b"\x00\xff\xfe\x8c\x91\x92garbage", "serial_garbage"),
        (b"Booting sensor...", "not_a_reading"),
        (b"temp=21.5 and then some", "not_a_reading"),
        (b"ets Jun  8 2016 00:22:57", "not_a_reading"),
    ],
)
def test_what_is_not_a_reading_is_a_problem_with_a_hint(line: bytes, code: str) -> None:
    problem = parse_line(line)
    assert isinstance(problem, SerialProblem) and problem.code == code and problem.as_json()["hint"]


def test_commands_go_down_as_one_compact_json_line() -> None:
    assert encode_command(b'{"id": "m1", "type": "stop"}') == b'{"id":"m1","type":"stop"}\n'
    for bad in (b"not json", b"[1, 2]", b'{"a": NaN}', b"[" * 5000):
        with pytest.raises(ValueError):
            encode_command(bad)
    assert isinstance(parse_line(b'{"a":' + b"[" * 5000), Telemetry)  # no RecursionError: the hub will say why


def test_sds011_frames_garbage_and_checksums() -> None:
    good = sds011_frame(12.3, 45.6)
    assert len(good) == 10 and good[:2] == b"\xaa\xc0" and good[-1:] == b"\xab"
    bad = good[:8] + bytes([(good[8] + 1) & 0xFF]) + good[9:]
    framer = Sds011Framer()
    events = framer.feed(b"\x13\x37" + good[:4]) + framer.feed(good[4:] + bad + sds011_frame(1.0, 2.0))
    assert [type(e).__name__ for e in events] == ["SerialProblem", "Telemetry", "SerialProblem", "Telemetry"]
    garbage, first, checksum, second = events
    assert isinstance(garbage, SerialProblem) and garbage.code == "serial_garbage"
    assert isinstance(checksum, SerialProblem) and checksum.code == "checksum_error"
    assert isinstance(first, Telemetry) and json.loads(first.payload) == {"pm2_5": 12.3, "pm10": 45.6}
    assert isinstance(second, Telemetry) and json.loads(second.payload) == {"pm2_5": 1.0, "pm10": 2.0}
    # A frame cut short by the next one: no checksum error, the next frame is read.
    events = framer.feed(good[:6] + sds011_frame(7.0, 8.0))
    assert [json.loads(e.payload) for e in events if isinstance(e, Telemetry)] == [{"pm2_5": 7.0, "pm10": 8.0}]
    assert not any(isinstance(e, SerialProblem) and e.code == "checksum_error" for e in events)
    # A header byte inside garbage does not derail it: the next real frame is found.
    events = framer.feed(b"\xaa\x00\x01" + sds011_frame(5.0, 6.0))
    assert isinstance(events[-1], Telemetry) and json.loads(events[-1].payload) == {"pm2_5": 5.0, "pm10": 6.0}


def test_framing_through_pyserial_loopback() -> None:
    """pyserial's loop:// port: what is written is read back, in whatever chunks the port gives."""
    port = SerialPort("loop://", 9600)
    port.open()
    try:
        port.write(b"\x00\x01" + sds011_frame(8.8, 9.9) + sds011_frame(1.2, 3.4))
        framer = Sds011Framer()
        events = []
        deadline = time.monotonic() + 2
        while len([e for e in events if isinstance(e, Telemetry)]) < 2 and time.monotonic() < deadline:
            events += framer.feed(port.read())
    finally:
        port.close()
    readings = [json.loads(e.payload) for e in events if isinstance(e, Telemetry)]
    assert readings == [{"pm2_5": 8.8, "pm10": 9.9}, {"pm2_5": 1.2, "pm10": 3.4}]


async def test_while_the_broker_is_unreachable_readings_wait_in_a_bounded_buffer() -> None:
    from devices.topics import DeviceRef

    bridge = Bridge(DeviceRef("c", "l", "d"), "loop://", mqtt_port=1, buffer_size=5)  # never connected
    bridge.handle(b"".join(f"n={i}\n".encode() for i in range(8)))
    assert bridge.stats.readings == 8 and bridge.stats.buffered_dropped == 3
    assert [json.loads(p)["n"] for _, p, _, _ in bridge._buffer] == [3.0, 4.0, 5.0, 6.0, 7.0]
