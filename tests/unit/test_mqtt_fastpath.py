"""The lean PUBLISH decoding on its edges, and the self-check that turns it off when paho's internals change."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hub.adapters import paho_fastpath
from hub.adapters.mqtt import READ_BURST, Message, MqttClient
from hub.adapters.paho_fastpath import BufferedSocket, FastClient, fast_path_works, new_client, self_check


@pytest.fixture
def fresh_verdict() -> Iterator[None]:
    """The self-check's verdict is kept per process: forget it before and after a test that changes paho."""
    fast_path_works.cache_clear()
    yield
    fast_path_works.cache_clear()


def _decode(command: int, packet: bytes) -> tuple[MQTTErrorCode, list[Message]]:
    got: list[Message] = []
    client = MqttClient("127.0.0.1", 1, "unit", on_message=got.append)
    paho_client = client._client
    assert isinstance(paho_client, FastClient)
    paho_client._in_packet = {"command": command, "packet": bytearray(packet)}  # type: ignore[typeddict-item]
    return paho_client._handle_publish(), got


def test_publish_packets_are_decoded_with_flags() -> None:
    rc, got = _decode(0x30 | 0x01, b"\x00\x03a/b" + b"payload")
    assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS
    assert got == [Message("a/b", b"payload", 0, True, 0, False)]
    rc, got = _decode(0x30 | 0x08 | 0x02, b"\x00\x01t\x12\x34" + b"x")
    assert got == [Message("t", b"x", 1, False, 0x1234, True)]


def test_truncated_publish_is_a_protocol_error() -> None:
    for packet in (b"", b"\x00", b"\x00\x09ab", b"\x00\x01t\x12"):
        rc, got = _decode(0x32, packet)
        assert rc == MQTTErrorCode.MQTT_ERR_PROTOCOL and got == []


def test_a_topic_that_is_not_utf8_is_dropped() -> None:
    rc, got = _decode(0x30, b"\x00\x02\xff\xfe" + b"x")
    assert rc == MQTTErrorCode.MQTT_ERR_SUCCESS and got == []


BAD_TOPIC_FRAMES = (
    b"\x30\x05\x00\x02\xff\xfex",  # QoS 0, topic b"\xff\xfe"
    b"\x32\x07\x00\x02\xff\xfe\x12\x34y",  # QoS 1, topic b"\xff\xfe", packet id 0x1234
    b"\x32\x0b\x00\x06lab/ok\x00\x05z",  # QoS 1, topic "lab/ok", packet id 5
)


@pytest.mark.parametrize(("manual_ack", "acks"), [(False, [0x1234, 5]), (True, [0x1234])])
def test_on_stock_paho_a_topic_that_is_not_utf8_is_dropped_and_acknowledged(
    manual_ack: bool, acks: list[int], caplog: pytest.LogCaptureFixture
) -> None:
    """The fallback drops such a message as the fast path does, and reads on. The broker never forwards one
    (mosquitto 2.0 disconnects a client that publishes it), so the frames come through a socket pair."""
    got: list[Message] = []
    client = MqttClient("127.0.0.1", 1, "unit", on_message=got.append, manual_ack=manual_ack, fast_path=False)
    stock = client._client
    assert type(stock) is paho.Client
    ours, theirs = socket.socketpair()
    with ours, theirs, caplog.at_level(logging.WARNING):
        ours.setblocking(False)
        theirs.sendall(b"".join(BAD_TOPIC_FRAMES))
        stock._sock = ours
        for _ in BAD_TOPIC_FRAMES:
            client.reads.on_readable()  # the adapter's read path: nothing may escape it
        client._on_writable()  # what paho queued: acknowledgements
        stock._sock = None
        theirs.setblocking(False)
        written = theirs.recv(1024)
    assert got == [Message("lab/ok", b"z", 1, False, 5, False)]
    assert written == b"".join(b"\x40\x02" + mid.to_bytes(2, "big") for mid in acks)
    dropped = [r.getMessage() for r in caplog.records if "whose topic is not UTF-8" in r.getMessage()]
    assert len(dropped) == 2


def test_the_self_check_passes_on_the_installed_paho() -> None:
    assert self_check() is None


def test_the_self_check_fails_when_a_private_method_is_gone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(paho.Client, "_send_puback")
    assert self_check() == "paho has no _send_puback"


def test_the_self_check_fails_when_paho_no_longer_reads_publish_through_handle_publish(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """As if a paho release renamed `_handle_publish`: stock paho still works, the override is never called."""
    stock = paho.Client._handle_publish
    real = paho.Client._packet_handle

    def packet_handle(self: paho.Client) -> MQTTErrorCode:
        if self._in_packet["command"] & 0xF0 == 0x30:
            return stock(self)
        return real(self)

    monkeypatch.setattr(paho.Client, "_packet_handle", packet_handle)
    problem = self_check()  # the first frame is lost in stock paho's path; the second comes through ours
    assert problem is not None and problem.startswith("fast read [('t', b'one', 1, False, 4660, True)] acknowledging")


def test_the_self_check_fails_when_reading_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(self: Any) -> MQTTErrorCode:
        raise KeyError("have_remaining")

    monkeypatch.setattr(paho.Client, "_packet_read", broken)
    assert self_check() == "KeyError: 'have_remaining'"


def test_a_failed_check_gives_stock_paho_and_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_verdict: None
) -> None:
    monkeypatch.setattr(paho_fastpath, "self_check", lambda: "forced")
    options = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": "unit"}
    with caplog.at_level(logging.WARNING, logger=paho_fastpath.__name__):
        clients = [new_client(print, Message, **options) for _ in range(2)]
    assert [type(c) for c in clients] == [paho.Client, paho.Client]
    [record] = caplog.records
    assert "the fast path's check failed: forced" in record.getMessage()


def test_a_passed_check_gives_the_fast_client_unless_asked_for_stock(fresh_verdict: None) -> None:
    options = {"callback_api_version": CallbackAPIVersion.VERSION2, "client_id": "unit"}
    assert type(new_client(print, Message, **options)) is FastClient
    assert type(new_client(print, Message, fast=False, **options)) is paho.Client


def publish_frame(topic: bytes, payload: bytes, qos: int = 0, mid: int = 0, retain: bool = False) -> bytes:
    """A PUBLISH frame as a broker writes it (the remaining length as a varint of 1 to 3 bytes)."""
    body = len(topic).to_bytes(2, "big") + topic + (mid.to_bytes(2, "big") if qos else b"") + payload
    length, size = b"", len(body)
    while True:
        byte, size = size & 0x7F, size >> 7
        length += bytes([byte | (0x80 if size else 0)])
        if not size:
            break
    return bytes([0x30 | qos << 1 | int(retain)]) + length + body


STREAM = (
    publish_frame(b"lab/a/b/c/telemetry", b'{"t": 1}')
    + publish_frame(b"lab/a/b/c/telemetry", b"x" * 300, qos=1, mid=7)  # a two-byte length
    + b"\x40\x02\x00\x09"  # a PUBACK in between: paho's path takes it
    + publish_frame(b"r", b"", retain=True)
    + publish_frame(b"lab/a/b/c/status", b"y" * 20_000, qos=1, mid=8)  # a three-byte length
    + publish_frame(b"\xc3\xa9t\xc3\xa9", b"accents")
    + publish_frame(b"q2", b"exactly once", qos=2, mid=10)  # QoS 2: paho's path (PUBREC, then PUBREL)
    + b"\x62\x02\x00\x0a"
)


def read_stream(fast: bool, stream: bytes, piece: int, pause_after: int = 0) -> list[Message]:
    """Feed `stream` to the adapter's read path in pieces of `piece` bytes (a TCP stream cuts anywhere)."""
    got: list[Message] = []

    def on_message(message: Message) -> None:
        got.append(message)
        if len(got) == pause_after:
            client.pause_reading()

    client = MqttClient("127.0.0.1", 1, "unit", on_message=on_message, manual_ack=True, fast_path=fast)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        client._client._sock = BufferedSocket(ours) if fast else ours
        client.reads.sock = client._client._sock
        for at in range(0, len(stream), piece):
            theirs.sendall(stream[at : at + piece])
            for _ in range(4):  # readiness callbacks, as the event loop would make them
                client.reads.on_readable()
        client._client._sock = None
    return got


@pytest.mark.parametrize("piece", [1, 2, 7, 100, 1_000_000])
def test_frames_cut_anywhere_read_as_stock_paho_reads_them(piece: int) -> None:
    fast = read_stream(True, STREAM, piece)
    assert fast == read_stream(False, STREAM, piece)
    assert [(m.topic, len(m.payload), m.qos, m.retain, m.mid) for m in fast] == [
        ("lab/a/b/c/telemetry", 8, 0, False, 0),
        ("lab/a/b/c/telemetry", 300, 1, False, 7),
        ("r", 0, 0, True, 0),
        ("lab/a/b/c/status", 20_000, 1, False, 8),
        ("été", 7, 0, False, 0),
        ("q2", 12, 2, False, 10),
    ]


def test_the_fast_loop_takes_every_plain_publish_paho_did_not_read_first(monkeypatch: pytest.MonkeyPatch) -> None:
    """paho reads the first frame (its read fills the buffer); the fast loop then takes the other QoS 0/1 ones,
    whatever the length's size, and leaves the PUBACK and the QoS 2 flow to paho."""
    taken: list[int] = []
    real = FastClient.read_publishes

    def spy(self: FastClient[Message], most: int, stop: Any) -> int:
        taken.append(real(self, most, stop))
        return taken[-1]

    monkeypatch.setattr(FastClient, "read_publishes", spy)
    assert len(read_stream(True, STREAM, len(STREAM))) == 6
    assert sum(taken) == 4


def test_the_fast_loop_stops_when_reading_is_paused() -> None:
    frames = b"".join(publish_frame(b"t", bytes([i])) for i in range(10))
    got = read_stream(True, frames, len(frames), pause_after=3)
    assert [m.payload for m in got] == [b"\x00", b"\x01", b"\x02"]


def test_a_malformed_frame_is_left_to_paho_which_refuses_it() -> None:
    """A topic length past the frame's end: the messages before it arrive, none from it, and paho drops the
    connection (MQTT_ERR_PROTOCOL), as on its own path."""
    for bad in (b"\x30\x03\x00\x09t", b"\x32\x04\x00\x01tx", b"\x30\x01\x00", b"\x30\x80\x80\x80\x80\x01t"):
        stream = publish_frame(b"a", b"1") + publish_frame(b"a", b"2") + bad + publish_frame(b"b", b"3")
        for fast in (True, False):
            assert [m.payload for m in read_stream(fast, stream, len(stream))] == [b"1", b"2"]


def test_the_fast_loop_tells_paho_bytes_came_in() -> None:
    """paho's keepalive counts from the last bytes received: a hub busy with messages must not look silent."""
    client = FastClient(CallbackAPIVersion.VERSION2, client_id="unit")
    client.deliver = [].append
    client.make_message = Message
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sock = BufferedSocket(ours)
        sock._buf = publish_frame(b"t", b"1") * 3
        client._sock = sock
        client._last_bytes_received = 0.0
        assert client.read_publishes(10, lambda: False) == 3
        client._sock = None
    assert client._last_bytes_received > 0.0


async def test_reads_left_for_later_are_scheduled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole frames left in the buffer after a burst are read at the next turn, by one pending call: one more
    per readiness event would pile up, each reading a burst, until reading starved every other task."""
    loop = asyncio.get_running_loop()
    got: list[Message] = []
    all_read = asyncio.Event()

    def on_message(message: Message) -> None:
        got.append(message)
        if len(got) == 5 * READ_BURST:
            all_read.set()

    client = MqttClient("127.0.0.1", 1, "unit", on_message=on_message, manual_ack=True)
    scheduled: list[object] = []
    real = loop.call_soon

    def call_soon(callback: Any, *args: Any, **kwargs: Any) -> asyncio.Handle:
        if getattr(callback, "__self__", None) is client.reads:  # the adapter's own reads, not the tasks' steps
            scheduled.append(callback)
        return real(callback, *args, **kwargs)

    monkeypatch.setattr(loop, "call_soon", call_soon)
    ours, theirs = socket.socketpair()
    with ours, theirs:
        sock = BufferedSocket(ours)
        sock._buf = publish_frame(b"t", b"1") * (READ_BURST * 5)
        client._client._sock = client.reads.sock = sock
        client.reads._loop = loop
        for _ in range(3):  # three readiness callbacks before the loop turns
            client.reads.on_readable()
        assert len(got) == 3 * READ_BURST
        assert len(scheduled) == 1
        await asyncio.wait_for(all_read.wait(), 5)  # the loop turns: the pending read runs, schedules the next
        client._client._sock = client.reads.sock = None
    assert len(scheduled) == 2


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_waiting_for_the_connection_stays_cancellable_as_it_comes(turns: int) -> None:
    """Home Assistant discovery waits for the connection in a task the hub cancels when it stops. A cancellation
    that comes as the connection does must end that wait (asyncio.wait_for in Python 3.11 swallowed it, and the
    task, looping on, kept the hub from stopping)."""
    client = MqttClient("127.0.0.1", 1, "unit", on_message=lambda msg: None)
    task = asyncio.create_task(client.wait_connected(60))
    await asyncio.sleep(0)
    client.subscribed.set()
    for _ in range(turns):
        await asyncio.sleep(0)
    if task.done():
        return  # connected before the hub stopped: nothing to cancel
    task.cancel()
    await asyncio.wait([task], timeout=5)
    assert task.cancelled(), "the cancellation was swallowed"
