"""LAN mode's TLS: a lab CA made once, and a server certificate it signs for this machine's names and addresses.

Boards and phones on the classroom network trust the lab CA (served at /ca.crt, its fingerprint in the banner), so
the server certificate can be re-issued whenever the machine's addresses change, without touching them. Everything
lives in `<state_dir>/tls` (private keys 0600 in a 0700 folder). Which names a certificate needs and when to
re-issue it are pure functions; the rest is thin I/O around them, under a file lock (several workers may start
at once). The one importer of `cryptography`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import ipaddress
import logging
import os
import re
import socket
import ssl
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from hub.config import ConfigError, LanConfig
from hub.credentials import private_dir, write_private

log = logging.getLogger(__name__)

TLS_DIR = "tls"
CA_CERT, CA_KEY, SERVER_CERT, SERVER_KEY = "ca.crt", "ca.key", "server.crt", "server.key"
CA_DAYS = 3650
SERVER_DAYS = 397  # phones refuse server certificates valid for too long (iOS: over 825 days)
RENEW_DAYS = 30  # re-issue (or, for the CA, remake) this long before the end
WILDCARDS = frozenset({"", "0.0.0.0", "::", "*"})
DNS_NAME_RE = re.compile(r"(?=.{1,253}$)(?!-)[a-z0-9-]{1,63}(?<!-)(\.(?!-)[a-z0-9-]{1,63}(?<!-))*")
PROBE = ("192.0.2.1", 9)  # TEST-NET-1: a UDP connect picks the outgoing address and sends nothing
NO_LAN = LanConfig()


@dataclass(frozen=True, slots=True)
class CertNames:
    """A server certificate's subjectAltNames: DNS names (lower case) and IP addresses (canonical text)."""

    dns: tuple[str, ...]
    ips: tuple[str, ...]

    def covers(self, other: CertNames) -> bool:
        return set(other.dns) <= set(self.dns) and set(other.ips) <= set(self.ips)


@dataclass(frozen=True, slots=True)
class ServerFacts:
    """What matters of the server certificate on disk for the decision to re-issue it."""

    names: CertNames
    not_after: dt.datetime
    fits: bool  # signed by the lab CA, and its key file holds its private key


@dataclass(frozen=True, slots=True)
class LabTls:
    """The files LAN mode serves with, and what the banner shows."""

    ca_cert: Path
    cert: Path
    key: Path
    fingerprint: str  # SHA-256 of the CA certificate, as `openssl x509 -fingerprint -sha256` writes it
    names: CertNames

    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


@dataclass(frozen=True, slots=True)
class Listener:
    """One place a service listens: TLS on the LAN, or plain (loopback; on the LAN only when asked for)."""

    host: str
    port: int
    tls: bool


# Pure: names, decisions, listeners ---------------------------------------------------------------------------


def is_wildcard(host: str) -> bool:
    return host in WILDCARDS


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None


def dns_name(name: str) -> str | None:
    """`name` as a certificate's DNS name (lower case), or None if it is not a valid host name."""
    name = name.strip().rstrip(".").lower()
    return name if DNS_NAME_RE.fullmatch(name) else None


def certificate_names(hostname: str, addresses: Iterable[str], lan: LanConfig) -> CertNames:
    """The names boards and phones may use to reach this machine: its host name (and `<name>.local`, which mDNS
    answers on most classroom networks), localhost, loopback, its addresses but link-local ones (they need a
    zone), lan.host when it is one address, and lan.names. ConfigError names a bad lan.names entry."""
    dns: list[str] = ["localhost"]
    ips: list[str] = ["127.0.0.1", "::1"]
    own = dns_name(hostname)
    if own is not None:
        dns += [own] if "." in own else [own, f"{own}.local"]
    for text in [*addresses, *([] if is_wildcard(lan.host) else [lan.host])]:
        address = _ip(text)
        if address is not None and not (address.is_link_local or address.is_unspecified or address.is_multicast):
            ips.append(address.compressed)
    for entry in lan.names:
        address = _ip(entry)
        name = dns_name(entry)
        if address is None and name is None:
            raise ConfigError(f"lan.names: {entry[:100]!r} is neither an IP address nor a host name")
        if address is not None:
            ips.append(address.compressed)
        elif name is not None:
            dns.append(name)
    return CertNames(tuple(dict.fromkeys(dns)), tuple(dict.fromkeys(ips)))


def reissue_reason(facts: ServerFacts | None, wanted: CertNames, now: dt.datetime) -> str | None:
    """Why the server certificate must be issued again, or None to keep it. Names it no longer needs (an address
    of a network left) are no reason: clients trust the CA, not this certificate, so only missing ones count."""
    if facts is None:
        return "none yet"
    if not facts.fits:
        return "it does not match the lab CA or its key"
    if facts.not_after - now < dt.timedelta(days=RENEW_DAYS):
        return f"it ends on {facts.not_after:%Y-%m-%d}"
    missing = sorted((set(wanted.dns) - set(facts.names.dns)) | (set(wanted.ips) - set(facts.names.ips)))
    return f"new names: {', '.join(missing)}" if missing else None


def fingerprint(der: bytes) -> str:
    return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())


def listeners(host: str, port: int, lan_port: int, lan: LanConfig) -> list[Listener]:
    """Where a service listens: first the loopback one (`host`:`port`, as without LAN mode), then in LAN mode TLS
    on lan.host:`lan_port`, and with lan.plain the plain port on lan.host too. A wildcard lan.host already takes
    the loopback address: the plain listener then replaces the loopback one (Linux refuses both on one port)."""
    if not lan.enabled:
        return [Listener(host, port, tls=False)]
    if lan.plain and (is_wildcard(lan.host) or lan.host == host):
        return [Listener(lan.host, port, tls=False), Listener(lan.host, lan_port, tls=True)]
    found = [Listener(host, port, tls=False), Listener(lan.host, lan_port, tls=True)]
    return [*found, Listener(lan.host, port, tls=False)] if lan.plain else found


def lan_addresses(names: CertNames, lan: LanConfig) -> list[str]:
    """The addresses to give boards and phones: lan.host if it is one, else the certificate's non-loopback ones
    (IPv4 first: what a board's sketch takes), else the host name."""
    if not is_wildcard(lan.host):
        return [lan.host]
    found = [ip for ip in names.ips if not ipaddress.ip_address(ip).is_loopback]
    found.sort(key=lambda ip: ipaddress.ip_address(ip).version)
    return found or [name for name in names.dns if name != "localhost"][:1]


# I/O: the machine's addresses ----------------------------------------------------------------------------------


def machine_addresses() -> list[str]:
    """This machine's addresses, found without new dependencies: its host name's, the one it reaches out from,
    each interface's IPv4 (Linux ioctl) and global IPv6 (/proc)."""
    found: list[str] = []
    with contextlib.suppress(OSError):
        found += [str(info[4][0]) for info in socket.getaddrinfo(socket.gethostname(), None)]
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(PROBE)
        found.append(probe.getsockname()[0])
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for _, name in socket.if_nameindex():
            with contextlib.suppress(OSError):
                request = struct.pack("256s", name.encode()[:15])
                found.append(socket.inet_ntoa(fcntl.ioctl(sock.fileno(), 0x8915, request)[20:24]))  # SIOCGIFADDR
    with contextlib.suppress(OSError), open("/proc/net/if_inet6") as lines:
        for line in lines:
            fields = line.split()
            if len(fields) >= 4 and fields[3] == "00":  # global scope
                found.append(str(ipaddress.IPv6Address(bytes.fromhex(fields[0]))))
    return list(dict.fromkeys(found))


# I/O: the files ------------------------------------------------------------------------------------------------


def lan_tls(state_dir: Path, lan: LanConfig) -> LabTls | None:
    """The lab's TLS files in LAN mode (see ensure_tls), None without it."""
    return ensure_tls(state_dir, lan) if lan.enabled else None


def ensure_tls(state_dir: Path, lan: LanConfig, now: dt.datetime | None = None) -> LabTls:
    """The lab CA and server certificate in `state_dir/tls`, made on first use; the certificate re-issued (same
    CA) when this machine's names are not all in it or it nears its end; the CA remade (logged: boards need the
    new one) only if it is missing or nears its own end."""
    now = now or dt.datetime.now(dt.UTC)
    folder = private_dir(state_dir / TLS_DIR)
    wanted = certificate_names(socket.gethostname(), machine_addresses(), lan)
    with _locked(folder / ".lock"):
        ca, ca_key = _lab_ca(folder, now)
        facts = _server_facts(folder, ca)
        reason = reissue_reason(facts, wanted, now)
        if reason is not None:
            _issue_server(folder, ca, ca_key, wanted, now)
            log.info("server certificate issued by the lab CA (%s): %s", reason, ", ".join(wanted.dns + wanted.ips))
        names = wanted if reason is not None or facts is None else facts.names
    return LabTls(
        folder / CA_CERT,
        folder / SERVER_CERT,
        folder / SERVER_KEY,
        fingerprint(ca.public_bytes(serialization.Encoding.DER)),
        names,
    )


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _write_public(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    write_private(path, pem.decode())


def _load(folder: Path, cert_name: str, key_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    try:
        cert = x509.load_pem_x509_certificate((folder / cert_name).read_bytes())
        key = serialization.load_pem_private_key((folder / key_name).read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _lab_ca(folder: Path, now: dt.datetime) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    found = _load(folder, CA_CERT, CA_KEY)
    if found is not None and found[0].not_valid_after_utc - now >= dt.timedelta(days=RENEW_DAYS):
        return found
    if found is not None or (folder / CA_CERT).exists():
        log.warning("a new lab CA replaces the old one (ended, ending or unreadable): boards and phones need it again")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"LabHub lab CA ({socket.gethostname()[:40]})")])
    cert = (
        _builder(name, name, key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_usage(cert_sign=True), critical=True)
        .sign(key, hashes.SHA256())
    )
    _write_key(folder / CA_KEY, key)
    _write_public(folder / CA_CERT, cert.public_bytes(serialization.Encoding.PEM))
    return cert, key  # a server certificate of an old CA no longer fits: it is issued again


def _server_facts(folder: Path, ca: x509.Certificate) -> ServerFacts | None:
    found = _load(folder, SERVER_CERT, SERVER_KEY)
    if found is None:
        return None
    cert = found[0]
    try:
        cert.verify_directly_issued_by(ca)
        fits = True
    except (ValueError, TypeError, InvalidSignature):
        fits = False
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return ServerFacts(CertNames((), ()), cert.not_valid_after_utc, False)
    names = CertNames(
        tuple(alt.get_values_for_type(x509.DNSName)),
        tuple(ip.compressed for ip in alt.get_values_for_type(x509.IPAddress)),
    )
    return ServerFacts(names, cert.not_valid_after_utc, fits)


def _issue_server(
    folder: Path, ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, names: CertNames, now: dt.datetime
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    own = next((name for name in names.dns if name != "localhost"), "localhost")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, own[:64])])
    alt = [x509.DNSName(n) for n in names.dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in names.ips]
    cert = (
        _builder(subject, ca.subject, key.public_key(), now, SERVER_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_usage(cert_sign=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(folder / SERVER_KEY, key)
    _write_public(folder / SERVER_CERT, cert.public_bytes(serialization.Encoding.PEM))


def _builder(
    subject: x509.Name, issuer: x509.Name, public: ec.EllipticCurvePublicKey, now: dt.datetime, days: int
) -> x509.CertificateBuilder:
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(hours=1))  # a board's clock a little behind still accepts it
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
    )


def _usage(cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )
