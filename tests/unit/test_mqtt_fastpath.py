"""The lean PUBLISH decoding on its edges, and the self-check that turns it off when paho's internals change."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from hub.adapters import paho_fastpath
from hub.adapters.mqtt import Message, MqttClient
from hub.adapters.paho_fastpath import FastClient, fast_path_works, new_client, self_check


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
            client._on_readable()  # the adapter's read path: nothing may escape it
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
    problem = self_check()
    assert problem is not None and problem.startswith("fast read [] acknowledging [4660], expected")


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
