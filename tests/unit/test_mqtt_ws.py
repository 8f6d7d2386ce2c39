"""MQTT over WebSockets' pure parts: who is admitted (per address, in all, a rate), where a wildcard listener is
reached, and the lab doctor's shared address (a refused login through the bridge is nobody's)."""

from __future__ import annotations

from devices.topics import DeviceRef
from hub.config import HubConfig
from hub.doctor import events as ev
from hub.doctor.engine import Doctor
from hub.doctor.events import BrokerEvent
from hub.pace import RateLimiter
from hub.web.mqtt_ws import Admission, target


def test_admission_caps_each_address_and_the_total_and_frees_on_release() -> None:
    gate = Admission(per_address=2, total=3, rate=RateLimiter(1000.0, 1000.0))
    assert [gate.admit("10.0.0.1", 0.0) for _ in range(3)] == [None, None, "per_address"]
    assert gate.admit("10.0.0.2", 0.0) is None
    assert gate.admit("10.0.0.3", 0.0) == "hub_full"
    gate.release("10.0.0.1")
    assert gate.admit("10.0.0.3", 0.0) is None
    for address in ("10.0.0.1", "10.0.0.2", "10.0.0.3"):
        gate.release(address)
    assert not gate.open


def test_admission_paces_new_connections_per_address() -> None:
    gate = Admission.of(HubConfig(mqtt_ws_per_address=100, mqtt_ws_connects_per_second=1.0))
    answers = [gate.admit("10.0.0.1", 0.0) for _ in range(11)]
    assert answers == [None] * 10 + ["rate"]  # a burst of ten, then one a second
    assert gate.admit("10.0.0.2", 0.0) is None  # another address has its own pace
    assert gate.admit("10.0.0.1", 1.0) is None
    assert sum(gate.open.values()) == 12  # a refused one is not counted as open


def test_a_wildcard_listener_is_reached_on_loopback() -> None:
    assert target("0.0.0.0", 1883) == ("127.0.0.1", 1883)
    assert target("::", 1883) == ("::1", 1883)
    assert target("192.168.1.10", 1883) == ("192.168.1.10", 1883)
    assert target("broker.lan", 1883) == ("broker.lan", 1883)


def test_a_refused_login_from_the_bridges_address_is_put_on_no_device() -> None:
    ana, ben = DeviceRef("demo", "ana", "aq1"), DeviceRef("demo", "ben", "aq1")
    doctor = Doctor()
    doctor.broker(BrokerEvent(ev.CONNECTED, ana.key, ana.key, "127.0.0.1"), 1)
    doctor.shared_address("127.0.0.1")  # the /mqtt bridge connects from there
    doctor.broker(BrokerEvent(ev.CONNECTED, ben.key, ben.key, "127.0.0.1"), 2)  # ben, through the bridge
    assert doctor.broker(BrokerEvent(ev.REFUSED, address="127.0.0.1"), 3) == []
    assert all(not doc.findings for doc in doctor.devices.values())
    assert list(doctor.refused_addresses) == [(3, "127.0.0.1")]
    # Another address still names its device.
    doctor.broker(BrokerEvent(ev.CONNECTED, ana.key, ana.key, "10.0.0.5"), 4)
    assert [c.finding.code for c in doctor.broker(BrokerEvent(ev.REFUSED, address="10.0.0.5"), 5)] == ["wrong_password"]
