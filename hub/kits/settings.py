"""One device's kit settings: where its board connects, as whom, on which topics, how often.

`KitSettings` is all a renderer sees. `Broker` says where boards reach the lab (over TLS with the lab CA in LAN
mode), `KitSource` turns a device into its settings with the password only when the caller may see it, and
`settings_json` is the one dictionary behind config.json and the QR code, so the two cannot disagree.
"""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devices.diagnoses import FIELD_PERIOD_S, KIND_MIN_PERIOD_S
from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.adapters.tls import LabTls, is_wildcard, lan_addresses, machine_addresses
from hub.config import LabConfig
from hub.credentials import CREDENTIALS_FILE, load_credentials_file

PASSWORD_PLACEHOLDER = "the password your trainer gave you"
WIFI_PLACEHOLDER = ("your-lab-wifi", "your-wifi-password")
DEFAULT_PERIOD_S = 5.0  # a reading every 5 s: well above any classroom sensor's own rate (SDS011 1 s, SCD4x 5 s)
# A plausible value per known field, for the kit's sample payload and its demo readings.
SAMPLES: Mapping[str, float] = {
    "pm1": 8.0,
    "pm2_5": 12.4,
    "pm10": 19.0,
    "co2": 650.0,
    "eco2": 420.0,
    "tvoc": 50.0,
    "temperature": 21.5,
    "humidity": 40.0,
    "pressure": 1013.0,
}
KIND_FIELDS: Mapping[str, tuple[str, ...]] = {
    "air_quality": ("pm2_5", "pm10", "temperature", "humidity"),  # an SDS011 and a BME280: the usual kit
    "generic": ("temperature", "humidity"),
    "arm": ("base",),
}
KIND_SAMPLES: Mapping[str, Mapping[str, float]] = {"arm": {"base": 90.0}}


@dataclass(frozen=True, slots=True)
class Broker:
    """Where boards reach the lab's broker: plain MQTT, or TLS with the lab CA (PEM) in LAN mode."""

    host: str
    port: int
    tls: bool = False
    ca_pem: str | None = None


@dataclass(frozen=True, slots=True)
class KitSettings:
    """Everything one device's kit says. `password` None: the caller may not see it (a placeholder is shown)."""

    ref: DeviceRef
    kind: str
    broker: Broker
    password: str | None
    period_s: float = DEFAULT_PERIOD_S
    sample: tuple[tuple[str, float], ...] = ()
    language: str = "en"
    wifi_ssid: str = ""
    wifi_password: str = ""

    @property
    def username(self) -> str:
        return self.ref.key

    @property
    def client_id(self) -> str:
        """The broker binds client ids to usernames: a board logs in with its username as its client id, so two
        boards flashed with the same kit knock each other off visibly rather than mixing their data."""
        return self.ref.key

    @property
    def password_text(self) -> str:
        return self.password if self.password is not None else PASSWORD_PLACEHOLDER

    @property
    def ssid_text(self) -> str:
        return self.wifi_ssid or WIFI_PLACEHOLDER[0]

    @property
    def wifi_password_text(self) -> str:
        return self.wifi_password or WIFI_PLACEHOLDER[1]

    @property
    def topics(self) -> dict[str, str]:
        return {channel: self.ref.topic(channel) for channel in ("telemetry", "status", "errors", "commands")}

    @property
    def ca_fingerprint(self) -> str | None:
        """SHA-256 of the lab CA, as the banner shows it, to check the CA a board or phone was given."""
        if self.broker.ca_pem is None:
            return None
        der = ssl.PEM_cert_to_DER_cert(self.broker.ca_pem)
        return ":".join(f"{b:02X}" for b in hashlib.sha256(der).digest())

    @property
    def ca_der(self) -> bytes | None:
        return None if self.broker.ca_pem is None else ssl.PEM_cert_to_DER_cert(self.broker.ca_pem)

    @property
    def file_stem(self) -> str:
        """The device's name in file and folder names (`demo-ana-aq1`)."""
        return self.ref.key.replace("/", "-")


def settings_json(s: KitSettings, with_ca: bool = True) -> dict[str, object]:
    """The settings as one JSON object: config.json (with the CA) and the QR code (without: too big to scan)."""
    out: dict[str, object] = {
        "device": s.ref.key,
        "kind": s.kind,
        "host": s.broker.host,
        "port": s.broker.port,
        "tls": s.broker.tls,
        "username": s.username,
        "password": s.password,
        "client_id": s.client_id,
        "topics": s.topics,
        "period_s": s.period_s,
        "sample": dict(s.sample),
    }
    if s.password is None:
        out["password_note"] = PASSWORD_PLACEHOLDER
    if s.broker.tls:
        out["ca_sha256"] = s.ca_fingerprint
        if with_ca:
            out["ca_pem"] = s.broker.ca_pem
    return out


def sample_for(kind: str) -> tuple[tuple[str, float], ...]:
    fields = KIND_FIELDS.get(kind, KIND_FIELDS["generic"])
    values = {**SAMPLES, **KIND_SAMPLES.get(kind, {})}
    return tuple((name, values[name]) for name in fields)


def period_for(kind: str, fields: tuple[str, ...] = ()) -> float:
    """How often the kit's firmware publishes: every DEFAULT_PERIOD_S, or slower when one of its sensors measures
    more slowly (the doctor's catalogue knows them: SDS011 1 s, SCD4x 5 s). Never at the sensor's own limit, where
    a little network jitter would look like publishing too fast."""
    slowest = [KIND_MIN_PERIOD_S.get(kind, 0.0), *(FIELD_PERIOD_S[f][0] for f in fields if f in FIELD_PERIOD_S)]
    return max(DEFAULT_PERIOD_S, *slowest)


def make_settings(
    ref: DeviceRef, kind: str, broker: Broker, password: str | None, language: str = "en", **wifi: str
) -> KitSettings:
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    sample = sample_for(kind)
    period = period_for(kind, tuple(name for name, _ in sample))
    return KitSettings(ref, kind, broker, password, period, sample, language, **wifi)


# The lab's side: its broker as boards see it, its stored passwords --------------------------------------------


def board_address(host: str, addresses: list[str], hostname: str) -> str:
    """The address a board should use for a broker bound to `host`: `host` itself, or for a wildcard the
    machine's first non-loopback IPv4 address (then any other), else its host name."""
    if not is_wildcard(host):
        return host
    usable = [a for a in addresses if not ipaddress.ip_address(a.split("%", 1)[0]).is_loopback]
    usable.sort(key=lambda a: ipaddress.ip_address(a.split("%", 1)[0]).version)
    return usable[0] if usable else hostname


def broker_for(cfg: LabConfig, tls: LabTls | None, host: str | None = None, port: int | None = None) -> Broker:
    """Where boards reach this lab: in LAN mode (`tls`) its TLS listener with the lab CA, else the lab listener.
    `host`/`port` override the address (a name the classroom knows the server by)."""
    if tls is not None:
        found = host or lan_addresses(tls.names, cfg.lan)[0]
        return Broker(found, port or cfg.lan.mqtts_port, True, tls.ca_pem().decode())
    found = host or board_address(cfg.mqtt.host, machine_addresses() if is_wildcard(cfg.mqtt.host) else [], "")
    return Broker(found or socket.gethostname(), port or cfg.mqtt.port)


@dataclass(frozen=True, slots=True)
class KitSource:
    """Kits for a running lab's devices: its broker as boards see it, its languages, the passwords it holds in
    clear (declared and simulated devices, in the state dir's credentials file; the registry keeps digests)."""

    broker: Broker
    credentials_file: Path
    languages: Mapping[str, str]

    @classmethod
    def for_lab(cls, cfg: LabConfig, tls: LabTls | None, host: str | None = None, port: int | None = None) -> KitSource:
        return cls(broker_for(cfg, tls, host, port), cfg.state_dir / CREDENTIALS_FILE, dict(cfg.languages))

    def stored_password(self, ref: DeviceRef) -> str | None:
        return load_credentials_file(self.credentials_file).get(ref.key)

    def settings(
        self, ref: DeviceRef, kind: str, reveal: bool, extra: Mapping[str, str] | None = None, **wifi: str
    ) -> KitSettings:
        """`reveal`: the caller may see the password; it is shown if the lab holds it (or `extra` has it)."""
        password = None
        if reveal:
            password = (extra or {}).get(ref.key) or self.stored_password(ref)
        return make_settings(ref, kind, self.broker, password, self.languages.get(ref.cohort, "en"), **wifi)
