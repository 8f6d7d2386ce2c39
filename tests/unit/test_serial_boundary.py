"""The serial bridge's boundary: whatever goes wrong with one line or frame is counted, logged once a minute
per port with control characters escaped, and reading goes on; text from the cable is valid Unicode before
it is published."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import pytest

import hub.bridges.serial_bridge as serial_bridge
from devices.problems import Problem
from devices.serial_protocols import AckLine, SerialProblem, Telemetry, parse_line
from devices.text import has_surrogates
from devices.topics import DeviceRef
from hub.boundary import SERIAL
from hub.bridges.serial_bridge import Bridge
from tests.support import wait_until

HOSTILE = "boom\x1b[31m\nFAKE 12:00:00 ERROR hub: forged line"


@pytest.fixture
async def bridge() -> AsyncIterator[Bridge]:
    """A bridge on pyserial's loop:// port, never connected to a broker (what it publishes stays buffered)."""
    made = Bridge(DeviceRef("c", "l", "d"), "loop://", mqtt_port=1, buffer_size=100)
    yield made
    made._io.shutdown(wait=False)


def published(bridge: Bridge, channel: str) -> list[bytes]:
    return [payload for topic, payload, _, _ in bridge._buffer if topic == bridge.ref.topic(channel)]


def boundary_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "hub.boundary"]


@pytest.fixture
def failing_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    """Handling a line that starts with `boom` raises, as a bug in the bridge would."""
    real = serial_bridge.parse_line

    def parse(line: bytes) -> object:
        if line.startswith(b"boom"):
            raise RuntimeError(HOSTILE)
        return real(line)

    monkeypatch.setattr(serial_bridge, "parse_line", parse)


@pytest.mark.usefixtures("failing_lines")
async def test_a_line_that_breaks_the_bridge_is_counted_logged_once_and_the_rest_goes_through(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    bridge.handle(b"n=1\nboom\nn=2\nboom again\nn=3\n")
    bridge.handle(b"boom\nn=4\n")
    assert [json.loads(p)["n"] for p in published(bridge, "telemetry")] == [1, 2, 3, 4]
    assert bridge.boundaries.failures[(SERIAL, "RuntimeError")] == 3
    records = boundary_records(caplog)
    assert len(records) == 1  # once per port and minute; every failure is counted
    text = records[0].getMessage()
    assert "loop://" in text and "\n" not in text and "\x1b" not in text


async def test_a_framer_that_breaks_starts_afresh_at_the_next_chunk(
    bridge: Bridge, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = bridge._framer.feed
    calls = 0

    def feed(data: bytes) -> list[object]:
        nonlocal calls
        calls += 1
        out = list(real(data))
        if calls == 1:
            raise ValueError(HOSTILE)  # after the framer took the chunk in: its state is suspect
        return out

    monkeypatch.setattr(bridge._framer, "feed", feed)
    bridge.handle(b"half a li")  # lost with the failure, and the framer's partial line with it
    bridge.handle(b"ne\nn=5\n")
    assert [json.loads(p) for p in published(bridge, "telemetry")] == [{"n": 5}]
    assert bridge.stats.problems == 0  # no "half a line" glued from before the failure
    assert bridge.boundaries.failures[(SERIAL, "ValueError")] == 1


@pytest.mark.usefixtures("failing_lines")
async def test_the_reader_keeps_reading_a_real_port_after_a_line_breaks(bridge: Bridge) -> None:
    reader = asyncio.create_task(bridge._reader())
    try:
        await asyncio.wait_for(bridge.port_open.wait(), 5)
        await bridge._port(lambda: bridge.port.write(b"boom\nn=1\nboom\nn=2\n"))
        await wait_until(lambda: bridge.stats.readings == 2, timeout=5, what="both readings after the failures")
        assert bridge.boundaries.failures[(SERIAL, "RuntimeError")] == 2
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def test_serial_problems_are_logged_once_a_minute_per_kind_escaped(
    bridge: Bridge, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    for _ in range(50):
        bridge.handle(b"\x00\xff\xfe\xfd\xfc\xfb\n")  # wrong-baud gibberish, line after line
    bridge._problem(SerialProblem(Problem("port_lost", params={"port": HOSTILE, "detail": HOSTILE})))
    assert bridge.stats.problem_codes == {"serial_garbage": 50, "port_lost": 1}
    lines = [r.getMessage() for r in caplog.records if r.name == "hub.bridges.serial_bridge"]
    assert len(lines) == 2, lines
    assert all("\n" not in line and "\x1b" not in line for line in lines)


@pytest.mark.parametrize(
    "line",
    [
        b'{"note": "caf\xe9 au lait", "t": 21.5}',  # Latin-1 from a sketch: not UTF-8
        b'{"note": "\\ud800 lone", "t": 21.5}',  # a lone surrogate escape: valid JSON, not Unicode
        b'{"\\udfff": 1, "t": 21.5}',  # in a key
        b'{"id": "c1\\ud83d", "status": "done"}',  # an acknowledgement
    ],
)
def test_text_from_the_cable_is_valid_unicode_before_it_is_published(line: bytes) -> None:
    event = parse_line(line)
    assert isinstance(event, Telemetry | AckLine)
    text = event.payload.decode("utf-8")  # strict: raises on anything that is not UTF-8
    body = json.loads(text)
    assert not has_surrogates(json.dumps(body, ensure_ascii=False))
    assert "\ufffd" in json.dumps(body, ensure_ascii=False)


def test_valid_text_from_the_cable_is_published_as_it_came() -> None:
    line = '{"note": "21.5 °C, µg/m³", "t": 21.5}'.encode()
    assert parse_line(line) == Telemetry(line)
    assert parse_line(b'{"pair": "\\ud83d\\ude00"}') == Telemetry(b'{"pair": "\\ud83d\\ude00"}')  # a valid pair
