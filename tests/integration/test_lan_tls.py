"""LAN mode, end to end: a closed broker and a hub whose LAN listeners are bound to 127.0.0.2, "the LAN address"
(Linux routes all of 127/8 to loopback), the plain ones on 127.0.0.1 as always.

Boards publish over TLS with the lab CA (mosquitto_pub, paho) and their readings land in InfluxDB; a client that
does not trust the lab CA fails the handshake; the API answers over HTTPS and serves the CA itself; the plain
ports are closed on the LAN address unless lan.plain opens them (with a warning in the log).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.topics import DeviceRef
from hub.config import DeviceConfig, HubConfig, InfluxConfig, LabConfig, LanConfig, MqttConfig
from hub.credentials import load_credentials
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port
from tests.conftest import make_state_dir, unique
from tests.integration.conftest import HubFactory, Services
from tests.support import influx_count, wait_until

LAN_HOST = "127.0.0.2"
BOARD = DeviceRef("lan", "ana", "aq1")
TIMEOUT_S = 20


@dataclass
class LanLab:
    state: Path
    port: int  # the lab listener's plain MQTT port (loopback; on the LAN address only with lan.plain)
    lan: LanConfig
    http_port: int
    broker: Service

    @property
    def ca(self) -> Path:
        return self.state / "tls" / "ca.crt"

    def config(self, services: Services) -> LabConfig:
        name = unique()
        return LabConfig(
            state_dir=self.state,
            mqtt=MqttConfig(port=self.port, launch=False, client_id=f"hub-{name}"),
            influx=InfluxConfig(url=services.influx_url, database=name, launch=False),
            hub=HubConfig(http_port=self.http_port, open_mode=False),
            devices=(DeviceConfig(BOARD, "air_quality"),),
            lan=self.lan,
        )


def lan_lab(plain: bool) -> Iterator[LanLab]:
    state = make_state_dir("labhub-lan-")
    port, http_port = free_port(), free_port()
    lan = LanConfig(enabled=True, host=LAN_HOST, mqtts_port=free_port(), https_port=free_port(), plain=plain)
    broker = start_mosquitto(state, port=port, open_mode=False, lan=lan)
    try:
        yield LanLab(state, port, lan, http_port, broker)
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def secure() -> Iterator[LanLab]:
    yield from lan_lab(plain=False)


@pytest.fixture(scope="module")
def with_plain() -> Iterator[LanLab]:
    yield from lan_lab(plain=True)


async def run(*argv: str) -> tuple[int, bytes, str]:
    """A command line's exit code, stdout and stderr, without blocking the hub's loop."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL
    )
    out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT_S)
    assert proc.returncode is not None
    return proc.returncode, out, err.decode(errors="replace")


def accepts(host: str, port: int) -> bool:
    """Does anything listen on host:port? (A refused connection: nothing does.)"""
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex((host, port)) == 0


def paho_tls_publish(lab: LanLab, username: str, password: str, payload: bytes) -> None:
    """Connect with paho over TLS (the lab CA, host name checked), publish at QoS 1, wait for the PUBACK."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=username)
    client.username_pw_set(username, password)
    client.tls_set(ca_certs=str(lab.ca))
    connected, acked = threading.Event(), threading.Event()
    client.on_connect = lambda c, u, f, reason, p: connected.set() if not reason.is_failure else None
    client.on_publish = lambda c, u, mid, reason, p: acked.set()
    client.connect(LAN_HOST, lab.lan.mqtts_port)
    client.loop_start()
    try:
        assert connected.wait(TIMEOUT_S), "paho did not connect over TLS"
        client.publish(BOARD.topic("telemetry"), payload, qos=1)
        assert acked.wait(TIMEOUT_S), "no PUBACK over TLS"
    finally:
        client.disconnect()
        client.loop_stop()


async def board_password(hub_state: Path) -> str:
    """The password `labhub up` gave the declared board (the hub writes it on its first start)."""
    found: str = await wait_until(lambda: load_credentials(hub_state).get(BOARD.key), what="the board's password")
    return found


async def test_boards_publish_over_tls_with_the_lab_ca_and_untrusting_clients_fail_the_handshake(
    secure: LanLab, services: Services, start_hub: HubFactory
) -> None:
    cfg = secure.config(services)
    await start_hub(config=cfg)
    password = await board_password(secure.state)
    db = cfg.influx.database

    def stored() -> int:
        return influx_count(services.influx_port, db, "air_quality", "pm2_5")

    mqtts = ["-h", LAN_HOST, "-p", str(secure.lan.mqtts_port), "-u", BOARD.key, "-P", password, "-q", "1"]
    publish = [*mqtts, "-t", BOARD.topic("telemetry"), "-m", '{"pm2_5": 12}']
    code, _, err = await run("mosquitto_pub", "--cafile", str(secure.ca), *publish)
    assert code == 0, err
    await wait_until(lambda: stored() == 1, TIMEOUT_S, "the reading sent over TLS")

    # Without the lab CA: the system's public CAs do not vouch for the lab's certificate; no TLS at all fails too.
    code, _, err = await run("mosquitto_pub", "--capath", "/etc/ssl/certs", *publish)
    assert code != 0 and "TLS" in err, err
    code, _, err = await run("mosquitto_pub", *publish)
    assert code != 0, err
    with pytest.raises(ssl.SSLCertVerificationError):
        with socket.create_connection((LAN_HOST, secure.lan.mqtts_port), timeout=5) as raw:
            ssl.create_default_context().wrap_socket(raw, server_hostname=LAN_HOST).close()

    await asyncio.to_thread(paho_tls_publish, secure, BOARD.key, password, b'{"pm2_5": 13}')
    await wait_until(lambda: stored() == 2, TIMEOUT_S, "the reading paho sent over TLS")
    assert stored() == 2  # the refused clients stored nothing


async def test_the_api_answers_over_https_serves_the_lab_ca_and_plain_ports_stay_off_the_lan(
    secure: LanLab, services: Services, start_hub: HubFactory
) -> None:
    hub = await start_hub(config=secure.config(services))
    https = f"https://{LAN_HOST}:{secure.lan.https_port}"
    code, out, err = await run("curl", "-sS", "--max-time", "10", "--cacert", str(secure.ca), f"{https}/healthz")
    assert code == 0, err
    assert b'"status"' in out
    code, out, err = await run("curl", "-sS", "--max-time", "10", "--cacert", str(secure.ca), f"{https}/ca.crt")
    assert code == 0, err
    assert out == secure.ca.read_bytes() and out.startswith(b"-----BEGIN CERTIFICATE-----")
    code, _, err = await run("curl", "-sS", "--max-time", "10", f"{https}/healthz")  # the system's CAs only
    assert code == 60, err  # curl: the peer's certificate cannot be authenticated

    # The loopback listeners stay; the plain ones are not on the LAN address.
    assert accepts("127.0.0.1", secure.port) and accepts("127.0.0.1", hub.http_port)
    assert not accepts(LAN_HOST, secure.port)
    assert not accepts(LAN_HOST, hub.http_port)


async def test_plain_ports_open_on_the_lan_only_when_asked_for_with_a_warning(
    with_plain: LanLab, services: Services, start_hub: HubFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="hub.web.server"):
        hub = await start_hub(config=with_plain.config(services))
    assert any("plain HTTP on the LAN" in r.getMessage() for r in caplog.records), caplog.text
    assert "plain MQTT (lan.plain)" in (with_plain.state / "mosquitto.conf").read_text()
    assert accepts(LAN_HOST, with_plain.port) and accepts("127.0.0.1", with_plain.port)
    code, out, err = await run("curl", "-sS", "--max-time", "10", f"http://{LAN_HOST}:{hub.http_port}/healthz")
    assert code == 0 and b'"status"' in out, err
    password = await board_password(with_plain.state)
    topic = BOARD.topic("telemetry")
    plain = ["-h", LAN_HOST, "-p", str(with_plain.port), "-u", BOARD.key, "-P", password, "-t", topic, "-m", "{}"]
    code, _, err = await run("mosquitto_pub", *plain)
    assert code == 0, err


def test_a_plain_lan_listener_on_every_address_replaces_the_loopback_one() -> None:
    """lan.host 0.0.0.0 with lan.plain: one plain listener takes loopback and the LAN (Linux refuses both)."""
    lan = dataclasses.replace(LanConfig(enabled=True, plain=True), mqtts_port=free_port())
    state = make_state_dir("labhub-lan-any-")
    port = free_port()
    try:
        broker = start_mosquitto(state, port=port, open_mode=False, lan=lan)
        try:
            assert accepts("127.0.0.1", port) and accepts(LAN_HOST, port) and accepts(LAN_HOST, lan.mqtts_port)
        finally:
            broker.stop()
    finally:
        shutil.rmtree(state, ignore_errors=True)
