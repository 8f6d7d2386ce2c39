"""The asyncio MQTT adapter through the real broker, on the fast receive path and on stock paho's (its fallback)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator

import paho.mqtt.client as paho
import pytest

from hub.adapters import paho_fastpath
from hub.adapters.mqtt import Message, MqttClient
from hub.adapters.paho_fastpath import FastClient
from tests.conftest import unique
from tests.integration.conftest import Services
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


@pytest.fixture
def fast_path_fails(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The start-up self-check fails, as on a paho whose internals moved: clients are stock paho."""
    monkeypatch.setattr(paho_fastpath, "self_check", lambda: "forced by the test")
    paho_fastpath.fast_path_works.cache_clear()
    with caplog.at_level(logging.WARNING, logger=paho_fastpath.__name__):
        yield
    paho_fastpath.fast_path_works.cache_clear()


async def _session(
    services: Services, client_id: str, root: str, *, manual_ack: bool, resume: bool
) -> tuple[MqttClient, list[Message]]:
    """A persistent session on `root/#`: the messages it got (the first one it got back when `resume`),
    ending with the marker a publisher sends after connecting."""
    received: asyncio.Queue[Message] = asyncio.Queue()
    client = MqttClient(
        "127.0.0.1",
        services.mqtt_port,
        client_id,
        on_message=received.put_nowait,
        subscriptions=[(f"{root}/#", 1)],
        persistent=True,
        manual_ack=manual_ack,
        username=services.hub_auth[0],
        password=services.hub_auth[1],
    )
    task = asyncio.create_task(client.run())
    pub = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    got: list[Message] = []
    try:
        await client.wait_connected(10)
        if not resume:
            await pub.publish(f"{root}/zero", b"0", qos=0)
            await pub.publish(f"{root}/one", b"1", qos=1)
        await pub.publish(f"{root}/marker", b"m", qos=1)
        while not got or got[-1].topic != f"{root}/marker":
            got.append(await asyncio.wait_for(received.get(), 5))
    finally:
        pub.close()
        await client.stop()
        await task
    return client, got


@pytest.mark.parametrize("manual_ack", [False, True])
async def test_on_stock_paho_messages_arrive_and_are_acknowledged(
    services: Services, fast_path_fails: None, caplog: pytest.LogCaptureFixture, manual_ack: bool
) -> None:
    """Acknowledged means not sent again: the session resumes, and the first message back is the next new one.
    Without an acknowledgement (manual acks, none given) the broker sends the QoS 1 message again: the check
    can tell."""
    root, client_id = f"lab/{unique('t')}", unique("fallback")
    client, got = await _session(services, client_id, root, manual_ack=manual_ack, resume=False)
    assert isinstance(client._client, paho.Client) and not isinstance(client._client, FastClient)
    assert "the fast path's check failed: forced by the test" in caplog.text
    assert [(m.topic, m.payload, m.qos) for m in got] == [
        (f"{root}/zero", b"0", 0),
        (f"{root}/one", b"1", 1),
        (f"{root}/marker", b"m", 1),
    ]
    _, again = await _session(services, client_id, root, manual_ack=False, resume=True)
    if manual_ack:  # nothing was acknowledged: both QoS 1 messages come back, marked as sent again
        assert [(m.topic, m.dup) for m in again[:2]] == [(f"{root}/one", True), (f"{root}/marker", True)]
    else:
        assert [(m.topic, m.dup) for m in again] == [(f"{root}/marker", False)]
