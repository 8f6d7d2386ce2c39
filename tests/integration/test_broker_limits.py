"""Broker limits by role, against the real mosquitto: one field of telemetry at most, client ids bound to
accounts (no takeover), a bounded lab listener with the hub and admin on their own loopback listener; and
the running influxd's unauthenticated RPC port on loopback only.

These tests use the session's *closed* broker (the rest of the suite shares one in classroom open mode), or a
closed broker of their own where they count connections, and make accounts straight through the security admin on
the internal listener, as `labhub` does.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.access.dynsec import Dynsec, _acl, device_account
from hub.config import MqttConfig
from tests.conftest import unique
from tests.integration.conftest import ClosedLab, Services, start_closed_lab
from tests.support import MqttV5

NOT_AUTHORIZED = 0x87
ACCEPTED = (0x00, 0x10)  # success, or "no matching subscribers" (still accepted)


async def make_device(closed: ClosedLab, key: str) -> tuple[str, str]:
    """A device account (made by the admin over the internal listener): its username and password."""
    password = secrets.token_urlsafe(12)
    async with Dynsec("127.0.0.1", closed.internal_port, closed.secret("mqtt-admin")) as sec:
        await sec.ensure(device_account(DeviceRef.parse(key)), password)
    return key, password


def as_hub(closed: ClosedLab, client_id: str = "") -> MqttV5:
    """A client with the hub's account, on the internal listener."""
    return MqttV5(closed.internal_port, *closed.hub_auth, client_id)


# Telemetry: one field deep ------------------------------------------------------------------------------------


async def test_a_device_publishes_telemetry_one_field_deep_and_nothing_deeper(closed: ClosedLab) -> None:
    ref = DeviceRef(unique("k"), "ana", "aq1")
    device = MqttV5(closed.port, *await make_device(closed, ref.key))
    hub = as_hub(closed)
    try:
        assert await device.accepted() and await hub.accepted()
        assert await hub.asubscribe(f"lab/{ref.cohort}/#") == 1
        deep = ref.topic("telemetry/a/b/c")
        assert await device.apublish(deep, b"1", retain=True) == NOT_AUTHORIZED
        assert await device.apublish(ref.topic("telemetry/x/y"), b"2") == NOT_AUTHORIZED
        assert await device.apublish(ref.topic("telemetry/temperature"), b"21.5") == 0
        assert await device.apublish(ref.topic("telemetry"), b'{"pm2_5": 1}') == 0
        await hub.received(ref.topic("telemetry"), b'{"pm2_5": 1}')  # published last, on the same connection
        assert [t for t, _ in hub.got] == [ref.topic("telemetry/temperature"), ref.topic("telemetry")]
    finally:
        device.close()
        hub.close()
    # Nothing deeper was retained either: a new subscriber to the whole tree gets no copy of it.
    late = as_hub(closed)
    try:
        assert await late.accepted()
        assert await late.asubscribe(f"lab/{ref.cohort}/#") == 1
        marker = ref.topic("status")
        late.client.publish(marker, b"marker", qos=1)
        await late.received(marker, b"marker")  # retained copies come right after the SUBACK, before this
        assert not [t for t, _ in late.got if t.startswith(ref.topic("telemetry/")) and t.count("/") > 5]
    finally:
        late.close()


async def test_old_telemetry_wildcard_rules_are_narrowed_at_broker_start(closed: ClosedLab) -> None:
    role = f"device:{unique('k')}/ana/aq1"
    old = [_acl("publishClientSend", "lab/x/ana/aq1/telemetry"), _acl("publishClientSend", "lab/x/ana/aq1/telemetry/#")]
    async with Dynsec("127.0.0.1", closed.internal_port, closed.secret("mqtt-admin")) as sec:
        await sec.set_role(role, old)
        await sec.configure_lab(open_mode=False)  # what every broker start does
        acls = (await sec.command("getRole", rolename=role))["data"]["role"]["acls"]
    assert sorted(a["topic"] for a in acls) == ["lab/x/ana/aq1/telemetry", "lab/x/ana/aq1/telemetry/+"]


# Client ids ---------------------------------------------------------------------------------------------------


async def test_no_account_can_take_over_another_accounts_client_id(closed: ClosedLab) -> None:
    cohort = unique("k")
    a, b = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    auth_a, auth_b = await make_device(closed, a.key), await make_device(closed, b.key)
    victim = MqttV5(closed.port, *auth_a, client_id="esp32-board")
    hub = as_hub(closed, client_id=f"labhub-hub-{secrets.token_hex(6)}")
    try:
        assert await victim.accepted() and await hub.accepted()
        assert await victim.asubscribe(a.topic("errors")) == 1
        # Another account tries the victim's own id, its username, and the hub's (internal listener) id.
        for spoofed_id in ("esp32-board", a.key, hub.client_id):
            thief = MqttV5(closed.port, *auth_b, client_id=spoofed_id)
            try:
                assert await thief.accepted()
                assert await thief.apublish(b.topic("telemetry"), b'{"pm2_5": 1}') in ACCEPTED  # in, and settled
            finally:
                thief.close()
        # Both are still connected: each answers a round trip through the broker.
        payload = unique("still-here-").encode()
        assert await hub.apublish(a.topic("errors"), payload) == 0
        await victim.received(a.topic("errors"), payload)
        assert not victim.lost.is_set() and not hub.lost.is_set()
    finally:
        victim.close()
        hub.close()


async def test_open_mode_lets_anonymous_clients_in_and_the_hub_on_its_own_listener(services: Services) -> None:
    """The session's broker runs in classroom open mode: anonymous clients cannot be bound to an account, so
    client ids stay free there (README); the hub's account reaches the internal listener."""
    anonymous = MqttV5(services.mqtt_port, None, None)
    hub = MqttV5(MqttConfig(port=services.mqtt_port).hub_port, *services.hub_auth)
    try:
        assert await anonymous.accepted()
        assert await hub.accepted()
    finally:
        anonymous.close()
        hub.close()


# Connections --------------------------------------------------------------------------------------------------


async def test_the_lab_listener_holds_max_connections_and_the_hub_and_admin_still_get_in() -> None:
    broker = await asyncio.to_thread(start_closed_lab, 2)  # start_mosquitto runs its own event loop
    clients: list[MqttV5] = []
    try:
        cohort = unique("k")
        accounts = [await make_device(broker, f"{cohort}/l{i}/aq1") for i in range(3)]
        for account in accounts[:2]:
            clients.append(MqttV5(broker.port, *account))
            assert await clients[-1].accepted()
        clients.append(MqttV5(broker.port, *accounts[2]))
        assert await clients[-1].accepted() is False, "a third client got in on a lab listener of 2"
        # The lab is full; the hub and the security admin use the internal listener.
        hub = as_hub(broker)
        clients.append(hub)
        assert await hub.accepted()
        await make_device(broker, f"{cohort}/late/aq1")
    finally:
        for client in clients:
            client.close()
        await asyncio.to_thread(broker.stop)


@pytest.mark.xfail(
    strict=True,
    reason="mosquitto 2.0.11 counts each closed connection twice against max_connections "
    "(eclipse-mosquitto/mosquitto#1460): every client that leaves raises the limit by one. When the broker "
    "is fixed this passes: remove the marker and the README's caveat.",
)
async def test_max_connections_still_holds_after_clients_come_and_go() -> None:
    broker = await asyncio.to_thread(start_closed_lab, 2)
    clients: list[MqttV5] = []
    try:
        account = await make_device(broker, f"{unique('k')}/ana/aq1")
        for _ in range(3):  # one device reconnecting three times
            comer = MqttV5(broker.port, *account)
            assert await comer.accepted()
            comer.close()
        cohort = unique("k")
        for i in range(3):
            clients.append(MqttV5(broker.port, *await make_device(broker, f"{cohort}/l{i}/aq1")))
        assert [await c.accepted() for c in clients] == [True, True, False]
    finally:
        for client in clients:
            client.close()
        await asyncio.to_thread(broker.stop)


# influxd --------------------------------------------------------------------------------------------------------


def test_the_running_influxd_listens_for_rpc_on_loopback_only(services: Services) -> None:
    conf = (services.state_dir / "influxdb.conf").read_text()
    rpc = re.search(r'^bind-address = "[^"]*:(\d+)"', conf, re.M)
    assert rpc is not None
    port = int(rpc.group(1))
    listening = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            local, state = row.split()[1], row.split()[3]
            address, hex_port = local.rsplit(":", 1)
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                listening.add(address)
    assert listening == {"0100007F"}, listening  # 127.0.0.1, and nothing else (no 0.0.0.0, no ::)
