"""LAN mode's TLS without services: the names a server certificate needs, when to re-issue it, where the listeners
go, the files on disk (a CA kept, a certificate re-issued), the broker's LAN lines and the banner's."""

from __future__ import annotations

import dataclasses
import datetime as dt
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID

from hub.adapters.tls import (
    CertNames,
    Listener,
    ServerFacts,
    certificate_names,
    ensure_tls,
    lan_addresses,
    listeners,
    reissue_reason,
)
from hub.config import ConfigError, LabConfig, LanConfig
from hub.ops.banner import lan_lines
from hub.ops.mosquitto import lan_listener_lines
from hub.ops.services import rendered

NOW = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
LAN = LanConfig(enabled=True)
LOOPBACK = ("127.0.0.1", "::1")


@pytest.mark.parametrize(
    ("hostname", "addresses", "lan", "dns", "ips"),
    [
        ("Lab-PC", [], LAN, ("localhost", "lab-pc", "lab-pc.local"), LOOPBACK),
        ("lab.school.example", [], LAN, ("localhost", "lab.school.example"), LOOPBACK),  # no .local for a full name
        ("bad_name!", [], LAN, ("localhost",), LOOPBACK),
        (  # link-local, unspecified and unreadable addresses are left out; the rest once each, canonical
            "pc",
            [
                "192.168.1.20",
                "fe80::1%eth0",
                "169.254.3.4",
                "0.0.0.0",
                "junk",
                "FD00:0::2",
                "192.168.1.20",
                "127.0.1.1",
            ],
            LAN,
            ("localhost", "pc", "pc.local"),
            (*LOOPBACK, "192.168.1.20", "fd00::2", "127.0.1.1"),
        ),
        ("pc", [], dataclasses.replace(LAN, host="10.0.0.5"), ("localhost", "pc", "pc.local"), (*LOOPBACK, "10.0.0.5")),
        (
            "pc",
            [],
            dataclasses.replace(LAN, names=("hub.lab", "10.1.1.1", "Hub.Lab.")),
            ("localhost", "pc", "pc.local", "hub.lab"),
            (*LOOPBACK, "10.1.1.1"),
        ),
    ],
)
def test_certificate_names(
    hostname: str, addresses: list[str], lan: LanConfig, dns: tuple[str], ips: tuple[str]
) -> None:
    assert certificate_names(hostname, addresses, lan) == CertNames(dns, ips)


def test_a_bad_configured_name_is_refused_with_its_key() -> None:
    with pytest.raises(ConfigError, match=r"lan.names: 'no spaces please'"):
        certificate_names("pc", [], dataclasses.replace(LAN, names=("no spaces please",)))


WANTED = CertNames(("localhost", "pc"), ("127.0.0.1", "192.168.1.20"))
LATER = NOW + dt.timedelta(days=300)


@pytest.mark.parametrize(
    ("facts", "reason"),
    [
        (None, "none yet"),
        (ServerFacts(WANTED, LATER, fits=True), None),
        (ServerFacts(CertNames((*WANTED.dns, "old"), (*WANTED.ips, "10.9.9.9")), LATER, fits=True), None),  # extra
        (ServerFacts(WANTED, LATER, fits=False), "it does not match the lab CA or its key"),
        (ServerFacts(WANTED, NOW + dt.timedelta(days=29), fits=True), "it ends on 2026-03-30"),
        (ServerFacts(WANTED, NOW + dt.timedelta(days=31), fits=True), None),
        (ServerFacts(CertNames(("localhost",), ("127.0.0.1",)), LATER, fits=True), "new names: 192.168.1.20, pc"),
    ],
)
def test_reissue_reason(facts: ServerFacts | None, reason: str | None) -> None:
    assert reissue_reason(facts, WANTED, NOW) == reason


@pytest.mark.parametrize(
    ("lan", "expected"),
    [
        (LanConfig(), [Listener("127.0.0.1", 1883, False)]),
        (LAN, [Listener("127.0.0.1", 1883, False), Listener("0.0.0.0", 8883, True)]),
        (
            dataclasses.replace(LAN, host="10.0.0.5", plain=True),
            [Listener("127.0.0.1", 1883, False), Listener("10.0.0.5", 8883, True), Listener("10.0.0.5", 1883, False)],
        ),
        (  # a wildcard takes loopback too: one plain listener, not two on one port
            dataclasses.replace(LAN, plain=True),
            [Listener("0.0.0.0", 1883, False), Listener("0.0.0.0", 8883, True)],
        ),
    ],
)
def test_listeners(lan: LanConfig, expected: list[Listener]) -> None:
    assert listeners("127.0.0.1", 1883, 8883, lan) == expected


def test_lan_addresses_to_give_boards() -> None:
    names = CertNames(("localhost", "pc", "pc.local"), ("127.0.0.1", "::1", "fd00::2", "192.168.1.20"))
    assert lan_addresses(names, LAN) == ["192.168.1.20", "fd00::2"]
    assert lan_addresses(names, dataclasses.replace(LAN, host="10.0.0.5")) == ["10.0.0.5"]
    assert lan_addresses(CertNames(("localhost", "pc"), LOOPBACK), LAN) == ["pc"]


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def test_the_ca_is_made_once_and_the_server_certificate_reissued_only_when_needed(tmp_path: Path) -> None:
    lan = dataclasses.replace(LAN, host="127.0.0.2")
    tls = ensure_tls(tmp_path, lan, NOW)
    ca, server = _cert(tls.ca_cert), _cert(tls.cert)
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "tls" / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.key.stat().st_mode) == 0o600
    server.verify_directly_issued_by(ca)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ExtendedKeyUsageOID.SERVER_AUTH in server.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert 3649 <= (ca.not_valid_after_utc - NOW).days <= 3650
    assert 365 <= (server.not_valid_after_utc - NOW).days <= 398  # phones refuse longer ones
    alt = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in alt.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", "127.0.0.2"}
    assert "localhost" in alt.get_values_for_type(x509.DNSName)
    assert tls.fingerprint == ca.fingerprint(hashes.SHA256()).hex(":").upper()
    tls.server_context()  # the key fits the certificate

    again = ensure_tls(tmp_path, lan, NOW + dt.timedelta(days=100))  # nothing new: the same files
    assert _cert(again.cert).serial_number == server.serial_number and again.fingerprint == tls.fingerprint

    named = ensure_tls(tmp_path, dataclasses.replace(lan, names=("hub.lab",)), NOW + dt.timedelta(days=100))
    renamed = _cert(named.cert)
    assert renamed.serial_number != server.serial_number and named.fingerprint == tls.fingerprint
    assert "hub.lab" in renamed.extensions.get_extension_for_class(
        x509.SubjectAlternativeName
    ).value.get_values_for_type(x509.DNSName)

    late = ensure_tls(tmp_path, lan, NOW + dt.timedelta(days=480))  # 17 days left: a new one, the same CA
    assert _cert(late.cert).serial_number != renamed.serial_number and late.fingerprint == tls.fingerprint

    (tmp_path / "tls" / "ca.key").unlink()  # the CA's key lost: a new CA, and a certificate it signs
    remade = ensure_tls(tmp_path, lan, NOW + dt.timedelta(days=480))
    assert remade.fingerprint != tls.fingerprint
    _cert(remade.cert).verify_directly_issued_by(_cert(remade.ca_cert))


def test_the_broker_config_is_unchanged_without_lan_mode_and_gets_its_listeners_with_it(tmp_path: Path) -> None:
    values = dict(
        host="127.0.0.1",
        port=1883,
        max_connections=500,
        bind_client_ids="true",
        internal_port=1884,
        internal_max_connections=64,
        data_dir=tmp_path,
        user_line="",
        allow_anonymous="false",
        dynsec_plugin="plugin.so",
    )
    off = rendered("mosquitto.conf.in", lan_listeners=lan_listener_lines([], 500, "true", tmp_path), **values)
    assert "use_username_as_clientid true\n\n# The internal listener" in off
    assert "certfile" not in off
    assert [line for line in off.splitlines() if line.startswith("listener ")] == [
        "listener 1883 127.0.0.1",
        "listener 1884 127.0.0.1",
    ]
    lan = [Listener("10.0.0.5", 8883, True), Listener("10.0.0.5", 1883, False)]
    on = rendered("mosquitto.conf.in", lan_listeners=lan_listener_lines(lan, 500, "true", tmp_path), **values)
    tls_block = (
        f"listener 8883 10.0.0.5\nmax_connections 500\nuse_username_as_clientid true\n"
        f"certfile {tmp_path}/server.crt\nkeyfile {tmp_path}/server.key\n"
    )
    assert tls_block in on
    assert "in clear.\nlistener 1883 10.0.0.5\nmax_connections 500\nuse_username_as_clientid true\n" in on


def test_the_banner_gives_the_lan_addresses_and_the_ca_fingerprint(tmp_path: Path) -> None:
    lan = dataclasses.replace(LAN, host="127.0.0.2", https_port=9443, mqtts_port=9883)
    cfg = LabConfig(state_dir=tmp_path, lan=lan)
    tls = ensure_tls(tmp_path, lan, NOW)
    text = "\n".join(lan_lines(cfg, tls))
    assert "mqtts://127.0.0.2:9883" in text and "https://127.0.0.2:9443/phone" in text
    assert "https://127.0.0.2:9443/ca.crt" in text and tls.fingerprint in text
    assert "WARNING" not in text
    assert "WARNING" in "\n".join(lan_lines(dataclasses.replace(cfg, lan=dataclasses.replace(lan, plain=True)), tls))
    v6 = dataclasses.replace(cfg, lan=dataclasses.replace(lan, host="fd00::2"))
    assert "mqtts://[fd00::2]:9883" in "\n".join(lan_lines(v6, tls))
    assert lan_lines(cfg, None) == []
