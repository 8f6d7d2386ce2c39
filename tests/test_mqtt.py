"""The asyncio MQTT adapter: messages through the real broker, and the lean PUBLISH decoding on its edges."""

from __future__ import annotations

import asyncio

from paho.mqtt.enums import MQTTErrorCode

from hub.adapters.mqtt import Message, MqttClient
from tests.conftest import Services, unique
from tests.support import MqttPublisher


async def test_messages_arrive_with_topic_payload_qos_retain_and_id(services: Services) -> None:
    root = f"lab/{unique('t')}"  # the hub's account may use anything under lab/
    received: asyncio.Queue[Message] = asyncio.Queue()
    user, password = services.hub_auth
    client = MqttClient(
        "127.0.0.1",
        services.mqtt_port,
        unique("adapter"),
        on_message=received.put_nowait,
        subscriptions=[(f"{root}/#", 1)],
        username=user,
        password=password,
    )
    task = asyncio.create_task(client.run())
    pub = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    try:
        await client.wait_connected(10)
        await pub.publish(f"{root}/a", b"zero", qos=0)
        await pub.publish(f"{root}/b/é", b"un", qos=1)
        pub.client.publish(f"{root}/c", b"kept", qos=1, retain=True).wait_for_publish(5)
        got = [await asyncio.wait_for(received.get(), 5) for _ in range(3)]
    finally:
        pub.client.publish(f"{root}/c", b"", qos=1, retain=True).wait_for_publish(5)
        pub.close()
        await client.stop()
        task.cancel()
    assert (got[0].topic, got[0].payload, got[0].qos, got[0].mid) == (f"{root}/a", b"zero", 0, 0)
    assert (got[1].topic, got[1].payload, got[1].qos) == (f"{root}/b/é", b"un", 1)
    assert got[1].mid > 0 and not got[1].dup
    assert got[2].payload == b"kept" and not got[2].retain  # live delivery: retain flag is off for subscribers
    assert client.connects == 1


def _decode(command: int, packet: bytes) -> tuple[MQTTErrorCode, list[Message]]:
    got: list[Message] = []
    client = MqttClient("127.0.0.1", 1, "unit", on_message=got.append)
    paho_client = client._client
    paho_client._in_packet = {"command": command, "packet": bytearray(packet)}
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
