"""The lab's configuration: one TOML file parsed once into frozen dataclasses.

Errors name the file, the key and what was expected. Command-line overrides are applied with
`dataclasses.replace` by the CLI, never by mutating a loaded config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from importlib.resources import files
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from devices.arm import DEFAULT_PROFILE, load_profiles
from devices.feedback import LANGUAGES
from devices.kinds import check_kind
from devices.serial_protocols import PROTOCOLS
from devices.topics import DeviceRef, TopicError, check_segment
from hub.credentials import read_secret, secret_path
from hub.retention import cohort_retention

CONFIG_DIR = Path(str(files("labhub_config")))  # the repo's config/, installed with the code (see setup.py)
ARM_PROFILES = load_profiles()
DEFAULT_ARM_PROFILE = DEFAULT_PROFILE
EXAMPLE_CONFIG = CONFIG_DIR / "labhub.toml"  # the packaged example: the demo lab, used when no other config is found
CONFIG_NAME = "labhub.toml"


class ConfigError(ValueError):
    """A config file that cannot be used as written."""


class ServiceError(RuntimeError):
    """A service of the lab (the broker, the database, the hub's own listeners) could not start as configured."""


INTERNAL_HOST = "127.0.0.1"  # the broker's internal listener (hub and security admin) is on loopback only


@dataclass(frozen=True, slots=True)
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 1883  # the lab listener: devices, bridges and learners' apps
    launch: bool = True
    # The internal listener, on 127.0.0.1 only, for the hub and the security admin: the lab listener's limits
    # (max_connections, client id = username) never lock them out. 0: port + 1. For a broker labhub does not
    # launch and that has one listener only, set it to `port` (the hub then connects to host:port).
    internal_port: int = 0
    max_connections: int = 500  # clients at once on the lab listener (each device, bridge and app is one)
    client_id: str = "labhub-hub"
    keepalive: int = 60
    username: str = "labhub-hub"  # the hub's own broker account ("" to connect anonymously)
    password_file: str = ""  # default: <state_dir>/secrets/mqtt-hub (created by `labhub up`)
    admin_password_file: str = ""  # the broker's security admin; default: <state_dir>/secrets/mqtt-admin

    @property
    def hub_port(self) -> int:
        """Where the hub and the security admin connect: the internal listener."""
        return self.internal_port or self.port + 1

    @property
    def hub_host(self) -> str:
        """Loopback for the internal listener; `host` when the broker has one listener (internal_port = port)."""
        return self.host if self.hub_port == self.port else INTERNAL_HOST


@dataclass(frozen=True, slots=True)
class InfluxConfig:
    backend: str = "v1"  # "v1": InfluxDB 1.x HTTP API; "v2": InfluxDB 2.x/3.x through influxdb-client
    url: str = "http://127.0.0.1:8086"
    database: str = "labhub"  # v1; v2/3.x reads: the database mapped to the bucket (default: the bucket's name)
    launch: bool = True
    rpc_port: int = 8089  # influxd's backup/RPC port, moved off the usual 8088
    org: str = ""  # v2
    bucket: str = ""  # v2
    token: str = ""  # v2
    timeout_s: float = 10.0
    username: str = ""  # v1 with auth: the hub's own user (`labhub up` makes one: labhub_hub)
    password_file: str = ""  # v1 with auth: default <state_dir>/secrets/influx-hub


@dataclass(frozen=True, slots=True)
class HubConfig:
    http_host: str = "127.0.0.1"
    http_port: int = 8080
    open_mode: bool = False  # classroom mode: anonymous MQTT clients allowed, unknown devices stored as `generic`
    max_payload_bytes: int = 16384
    batch_max_points: int = 10000
    write_linger_ms: float = 10.0  # a slow stream is read (and written) every this often, not per reading
    slow_write_linger_ms: float = 200.0  # under 100 points/s, InfluxDB is written at most this often (0: per reading)
    queue_max_points: int = 100_000  # points held in memory for the writer; beyond, they wait on disk only
    spool_max_bytes: int = 1 << 30  # accepted readings waiting for InfluxDB on disk; past it intake pauses
    errors_per_second: float = 5.0  # per device, burst of 20; the rest is counted as suppressed
    presence_timeout_s: float = 30.0  # a device silent for this long is shown as absent
    commands_per_second: float = 20.0  # per arm: slider moves beyond this are coalesced (latest wins)
    inspector_size: int = 50
    registry: str = ""  # the registry's SQLite file; default <state_dir>/registry.sqlite3
    allowed_origins: tuple[str, ...] = ()  # web origins allowed to call the API from a browser (CORS)
    api_requests_per_second: float = 20.0  # per token, with a burst of twice that; beyond: 429
    mqtt_ws_per_address: int = 50  # MQTT-over-WebSocket bridges (/mqtt) open at once from one client address
    mqtt_ws_max: int = 2000  # /mqtt bridges open at once in all (each holds two sockets)
    mqtt_ws_connects_per_second: float = 5.0  # /mqtt connections a second per client address, bursts of 10x
    telemetry_posts_per_second: float = 5.0  # HTTP telemetry posts a second per device, bursts of twice that


@dataclass(frozen=True, slots=True)
class LanConfig:
    """The classroom network: devices and phones reach the lab through TLS listeners; loopback ones stay."""

    enabled: bool = False  # `labhub up --lan` sets it too
    host: str = "0.0.0.0"  # the address the LAN listeners bind (all of the machine's by default)
    mqtts_port: int = 8883  # MQTT over TLS, with the lab CA's server certificate
    https_port: int = 8443  # the dashboard, the API and the phone page over TLS
    plain: bool = False  # also plain MQTT (mqtt.port) and HTTP (hub.http_port) on the LAN: passwords in clear
    names: tuple[str, ...] = ()  # more names or addresses for the server certificate (its own are found)


@dataclass(frozen=True, slots=True)
class DeviceConfig:
    ref: DeviceRef
    kind: str
    simulate: bool = False
    profile: str | None = None  # arms: a profile from config/arms


@dataclass(frozen=True, slots=True)
class SerialConfig:
    """A USB-serial board bridged to a lab device (`labhub serial-bridge`, and `labhub up`)."""

    port: str
    device: DeviceRef
    protocol: str = "lines"
    baud: int = 0  # 0: the protocol's usual rate (lines 115200, sds011 9600)


@dataclass(frozen=True, slots=True)
class SimConfig:
    period_s: float = 1.0
    extra_air: int = 0  # more simulated air-quality sensors in cohort `sim`, beyond the declared ones


@dataclass(frozen=True, slots=True)
class LabConfig:
    state_dir: Path
    mqtt: MqttConfig = MqttConfig()
    influx: InfluxConfig = InfluxConfig()
    hub: HubConfig = HubConfig()
    languages: Mapping[str, str] = field(default_factory=dict)  # cohort → "en" | "fr"
    home_assistant: frozenset[str] = frozenset()  # cohorts whose devices are announced to Home Assistant
    retention: Mapping[str, str] = field(default_factory=dict)  # cohort → how long its raw points are kept ("90d")
    devices: tuple[DeviceConfig, ...] = ()
    sim: SimConfig = SimConfig()
    serial: tuple[SerialConfig, ...] = ()
    lan: LanConfig = LanConfig()

    def language(self, cohort: str) -> str:
        return self.languages.get(cohort, "en")

    @property
    def registry_path(self) -> Path:
        return Path(self.hub.registry) if self.hub.registry else self.state_dir / "registry.sqlite3"

    def secret_file(self, configured: str, name: str) -> Path:
        """`configured`, or the lab's own file `secrets/<name>` in the state directory."""
        return Path(configured) if configured else secret_path(self.state_dir, name)

    def influx_password(self) -> str | None:
        """The hub's InfluxDB 1.x password, read from its file when the config names a user (2.x uses a token)."""
        return read_secret(self.secret_file(self.influx.password_file, "influx-hub")) if self.influx.username else None


def default_state_dir() -> Path:
    """Root keeps services' data under /var/lib (the broker drops to its own user and must reach it)."""
    if os.geteuid() == 0:
        return Path("/var/lib/labhub")
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "labhub"


def user_config_path(env: Mapping[str, str] = os.environ, root: bool | None = None) -> Path:
    """Where `labhub init` writes the lab's editable config, and where the lab looks for it."""
    if os.geteuid() == 0 if root is None else root:
        return Path("/etc/labhub") / CONFIG_NAME
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "labhub" / CONFIG_NAME


def find_config(given: Path | None, env: Mapping[str, str] = os.environ, root: bool | None = None) -> Path:
    """The config a command uses: `--config`, else $LABHUB_CONFIG, else the one `labhub init` wrote (root:
    /etc/labhub, others: $XDG_CONFIG_HOME/labhub), else the packaged example (the demo lab)."""
    if given is not None:
        return given
    if env.get("LABHUB_CONFIG"):
        return Path(env["LABHUB_CONFIG"])
    written = user_config_path(env, root)
    return written if written.is_file() else EXAMPLE_CONFIG


# LABHUB_<NAME> → (section, key): ports and the state directory, for a service manager or a container.
ENV_OVERRIDES = {
    "LABHUB_STATE_DIR": ("", "state_dir"),
    "LABHUB_MQTT_PORT": ("mqtt", "port"),
    "LABHUB_HTTP_PORT": ("hub", "http_port"),
    "LABHUB_INFLUX_PORT": ("influx", "port"),
    "LABHUB_INFLUX_RPC_PORT": ("influx", "rpc_port"),
    "LABHUB_MQTTS_PORT": ("lan", "mqtts_port"),
    "LABHUB_HTTPS_PORT": ("lan", "https_port"),
}


def env_overrides(cfg: LabConfig, env: Mapping[str, str] = os.environ) -> LabConfig:
    """`cfg` with the LABHUB_* variables set in `env` applied (the command line's options apply after them)."""
    for name, (section, key) in ENV_OVERRIDES.items():
        raw = env.get(name, "").strip()
        if not raw:
            continue
        if key == "state_dir":
            cfg = replace(cfg, state_dir=Path(os.path.expanduser(raw)))
            continue
        if not raw.isdigit() or not 1 <= int(raw) <= 65535:
            raise ConfigError(f"${name}: expected a TCP port (1–65535), got {raw!r}")
        cfg = with_port(cfg, section, key, int(raw))
    return cfg


def with_port(cfg: LabConfig, section: str, key: str, port: int) -> LabConfig:
    """`cfg` with one port changed (`influx.port` is the port of the InfluxDB URL)."""
    if section == "influx" and key == "port":
        url = urlparse(cfg.influx.url)
        return replace(cfg, influx=replace(cfg.influx, url=url._replace(netloc=f"{url.hostname}:{port}").geturl()))
    return replace(cfg, **{section: replace(getattr(cfg, section), **{key: port})})


def load_config(path: Path = EXAMPLE_CONFIG) -> LabConfig:
    """Read and check a lab config file."""
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}") from None
    return parse_config(data, str(path))


def parse_config(data: Mapping[str, Any], where: str = "<config>") -> LabConfig:
    known = {"state_dir", "mqtt", "influx", "hub", "cohorts", "devices", "sim", "serial", "lan"}
    _no_unknown(data, known, where, "")
    state = data.get("state_dir")
    state_dir = Path(os.path.expanduser(_typed(state, str, where, "state_dir"))) if state else default_state_dir()
    languages: dict[str, str] = {}
    home_assistant: set[str] = set()
    for cohort, table in _typed(data.get("cohorts", {}), dict, where, "cohorts").items():
        lang = _typed(table, dict, where, f"cohorts.{cohort}").get("language", "en")
        if lang not in LANGUAGES:
            raise ConfigError(f"{where}: cohorts.{cohort}.language: expected one of {LANGUAGES}, got {lang!r}")
        languages[cohort] = lang
        if _typed(table.get("home_assistant", False), bool, where, f"cohorts.{cohort}.home_assistant"):
            home_assistant.add(_cohort_name(cohort, where))
    devices = [_device(entry, where, key) for key, entry in _entries(data, "devices", _DEVICE_KEYS, where)]
    serial: list[SerialConfig] = []
    for key, entry in _entries(data, "serial", _SERIAL_KEYS, where):
        bridge = _serial(entry, where, key)
        if any(other.device == bridge.device or other.port == bridge.port for other in serial):
            raise ConfigError(f"{where}: {key}: {bridge.device.key} or {bridge.port} is bridged twice")
        serial.append(bridge)
    return LabConfig(
        state_dir=state_dir,
        mqtt=_check_mqtt(_section(MqttConfig, data, "mqtt", where), where),
        influx=_check_influx(
            _section(InfluxConfig, data, "influx", where), where, "database" in data.get("influx", {})
        ),
        hub=_section(HubConfig, data, "hub", where),
        languages=languages,
        home_assistant=frozenset(home_assistant),
        retention=cohort_retention(data, where, ConfigError),
        devices=tuple(devices),
        sim=_section(SimConfig, data, "sim", where),
        serial=tuple(serial),
        lan=_check_lan(_section(LanConfig, data, "lan", where), where),
    )


_DEVICE_KEYS = {"id", "kind", "simulate", "profile"}
_SERIAL_KEYS = {"port", "device", "protocol", "baud"}


def _entries(data: Mapping[str, Any], name: str, known: set[str], at: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """The tables of an array (`[[devices]]`), each with its key for error messages (`devices[0]`)."""
    for i, entry in enumerate(_typed(data.get(name, []), list, at, name)):
        key = f"{name}[{i}]"
        table = _typed(entry, dict, at, key)
        _no_unknown(table, known, at, key + ".")
        yield key, table


def _device(entry: Mapping[str, Any], where: str, key: str) -> DeviceConfig:
    ref = _device_ref(entry, "id", where, key)
    kind = _typed(entry.get("kind", "generic"), str, where, key + ".kind")
    profile = _typed(entry["profile"], str, where, key + ".profile") if "profile" in entry else None
    try:
        profile = check_kind(kind, profile, ARM_PROFILES, DEFAULT_ARM_PROFILE)
    except ValueError as err:
        raise ConfigError(f"{where}: {key}: {err}") from None
    simulate = _typed(entry.get("simulate", False), bool, where, key + ".simulate")
    return DeviceConfig(ref, kind, simulate, profile)


def _serial(entry: Mapping[str, Any], where: str, key: str) -> SerialConfig:
    ref = _device_ref(entry, "device", where, key)
    protocol = _typed(entry.get("protocol", "lines"), str, where, key + ".protocol")
    if protocol not in PROTOCOLS:
        raise ConfigError(f"{where}: {key}.protocol: expected one of {PROTOCOLS}, got {protocol!r}")
    port = _typed(entry.get("port"), str, where, key + ".port")
    baud = _typed(entry.get("baud", 0), int, where, key + ".baud")
    if baud < 0:
        raise ConfigError(f"{where}: {key}.baud: expected a positive rate (or 0 for the protocol's usual one)")
    return SerialConfig(port, ref, protocol, baud)


def _device_ref(entry: Mapping[str, Any], name: str, where: str, key: str) -> DeviceRef:
    try:
        return DeviceRef.parse(_typed(entry.get(name), str, where, f"{key}.{name}"))
    except TopicError as err:
        raise ConfigError(f"{where}: {key}.{name}: {err}") from None


def _cohort_name(cohort: str, where: str) -> str:
    try:
        check_segment(cohort)
    except TopicError as err:
        raise ConfigError(f"{where}: cohorts.{cohort}: {err}") from None
    return cohort


def _check_mqtt(cfg: MqttConfig, where: str) -> MqttConfig:
    for key in ("port", "internal_port"):
        value = getattr(cfg, key)
        if not (key == "internal_port" and value == 0) and not 1 <= value <= 65535:
            raise ConfigError(f"{where}: mqtt.{key}: expected a TCP port (1–65535), got {value}")
    if cfg.hub_port > 65535:
        raise ConfigError(f"{where}: mqtt.internal_port: port + 1 is not a TCP port: set internal_port")
    if cfg.max_connections < 1:
        raise ConfigError(f"{where}: mqtt.max_connections: expected at least 1, got {cfg.max_connections}")
    return cfg


def _check_influx(cfg: InfluxConfig, where: str, database_given: bool = True) -> InfluxConfig:
    if cfg.backend not in ("v1", "v2"):
        raise ConfigError(f"{where}: influx.backend: expected 'v1' or 'v2', got {cfg.backend!r}")
    if cfg.backend == "v2" and not (cfg.org and cfg.bucket):
        raise ConfigError(f"{where}: influx: the v2 backend needs org and bucket (and a token)")
    if cfg.backend == "v2" and not database_given:  # reads: the database mapped to the bucket, by default its name
        return replace(cfg, database=cfg.bucket)
    return cfg


def _check_lan(cfg: LanConfig, where: str) -> LanConfig:
    for key in ("mqtts_port", "https_port"):
        if not 1 <= getattr(cfg, key) <= 65535:
            raise ConfigError(f"{where}: lan.{key}: expected a TCP port (1–65535), got {getattr(cfg, key)}")
    return cfg


def _section(cls: Any, data: Mapping[str, Any], name: str, where: str) -> Any:
    table = _typed(data.get(name, {}), dict, where, name)
    defaults = cls()
    kwargs = {}
    for key, value in table.items():
        if key not in cls.__dataclass_fields__:  # not hasattr: properties are not keys
            raise ConfigError(f"{where}: {name}.{key}: unknown key (known: {', '.join(cls.__slots__)})")
        expected = type(getattr(defaults, key))
        if expected is tuple:
            items = _typed(value, list, where, f"{name}.{key}")
            kwargs[key] = tuple(_typed(item, str, where, f"{name}.{key}[]") for item in items)
            continue
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        kwargs[key] = _typed(value, expected, where, f"{name}.{key}")
        if expected is float and not 0 <= value < float("inf"):  # rates, timeouts, lingers (NaN fails too)
            raise ConfigError(f"{where}: {name}.{key}: expected a finite number ≥ 0, got {value!r}")
    return cls(**kwargs)


def _typed(value: Any, expected: type, where: str, key: str) -> Any:
    if isinstance(value, bool) and expected is not bool:
        raise ConfigError(f"{where}: {key}: expected {expected.__name__}, got a boolean")
    if not isinstance(value, expected):
        raise ConfigError(f"{where}: {key}: expected {expected.__name__}, got {type(value).__name__} {value!r}")
    return value


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str, prefix: str) -> None:
    for key in table:
        if key not in known:
            raise ConfigError(f"{where}: {prefix}{key}: unknown key (known: {', '.join(sorted(known))})")
