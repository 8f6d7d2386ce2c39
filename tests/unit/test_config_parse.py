"""The lab config, parsed once: a whole file into whole values, and every mistake named by file, key and expectation."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.config import (
    ConfigError,
    DeviceConfig,
    HubConfig,
    InfluxConfig,
    LabConfig,
    MqttConfig,
    SerialConfig,
    SimConfig,
    load_config,
    parse_config,
)
from hub.credentials import secret_path

ABC = DeviceRef("a", "b", "c")


def test_a_whole_config_becomes_frozen_values() -> None:
    cfg = parse_config(
        {
            "state_dir": "/srv/lab",
            "mqtt": {"host": "0.0.0.0", "port": 2883, "max_connections": 40},
            "influx": {"backend": "v2", "org": "o", "bucket": "b", "timeout_s": 5},
            "hub": {"open_mode": True, "errors_per_second": 2, "allowed_origins": ["https://lab.example"]},
            "cohorts": {"demo": {"language": "fr"}, "night": {}},
            "devices": [
                {"id": "demo/ana/aq1", "kind": "air_quality", "simulate": True},
                {"id": "demo/ana/arm1", "kind": "arm"},
                {"id": "demo/ben/x"},
            ],
            "sim": {"period_s": 2},
            "serial": [{"port": "/dev/ttyUSB0", "device": "demo/ana/aq1", "protocol": "sds011"}],
        }
    )
    assert cfg == LabConfig(
        state_dir=Path("/srv/lab"),
        mqtt=MqttConfig(host="0.0.0.0", port=2883, max_connections=40),
        influx=InfluxConfig(backend="v2", org="o", bucket="b", database="b", timeout_s=5.0),
        hub=HubConfig(open_mode=True, errors_per_second=2.0, allowed_origins=("https://lab.example",)),
        languages={"demo": "fr", "night": "en"},
        devices=(
            DeviceConfig(DeviceRef("demo", "ana", "aq1"), "air_quality", True, None),
            DeviceConfig(DeviceRef("demo", "ana", "arm1"), "arm", False, "mearm"),  # the default profile
            DeviceConfig(DeviceRef("demo", "ben", "x"), "generic", False, None),
        ),
        sim=SimConfig(period_s=2.0),
        serial=(SerialConfig("/dev/ttyUSB0", DeviceRef("demo", "ana", "aq1"), "sds011", 0),),
    )
    assert isinstance(cfg.hub.errors_per_second, float) and isinstance(cfg.sim.period_s, float)
    assert (cfg.language("demo"), cfg.language("other")) == ("fr", "en")
    assert (cfg.mqtt.hub_host, cfg.mqtt.hub_port) == ("127.0.0.1", 2884)  # the internal listener, on loopback
    assert cfg.registry_path == Path("/srv/lab/registry.sqlite3")
    assert cfg.secret_file("", "mqtt-hub") == Path("/srv/lab/secrets/mqtt-hub")
    assert cfg.secret_file("", "x") == secret_path(cfg.state_dir, "x")  # one place for the lab's secrets
    assert cfg.secret_file("/etc/lab/hub.pw", "mqtt-hub") == Path("/etc/lab/hub.pw")


def test_one_listener_brokers_and_a_registry_elsewhere() -> None:
    cfg = parse_config({"state_dir": "/srv/lab", "mqtt": {"host": "b.example", "internal_port": 1883}})
    assert (cfg.mqtt.hub_host, cfg.mqtt.hub_port) == ("b.example", 1883)
    assert parse_config({"hub": {"registry": "/r.db"}}).registry_path == Path("/r.db")


TCP_PORT = "expected a TCP port (1–65535), got"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"nope": 1}, "nope: unknown key (known: cohorts, devices, hub, influx, lan, mqtt, serial, sim, state_dir)"),
        ({"state_dir": 3}, "state_dir: expected str, got int 3"),
        ({"cohorts": []}, "cohorts: expected dict, got list []"),
        ({"cohorts": {"x": 1}}, "cohorts.x: expected dict, got int 1"),
        ({"cohorts": {"x": {"language": "de"}}}, "cohorts.x.language: expected one of ('en', 'fr'), got 'de'"),
        ({"devices": {}}, "devices: expected list, got dict {}"),
        ({"devices": [1]}, "devices[0]: expected dict, got int 1"),
        (
            {"devices": [{"id": "a/b/c", "colour": 1}]},
            "devices[0].colour: unknown key (known: id, kind, profile, simulate)",
        ),
        ({"devices": [{"id": "a/b"}]}, "devices[0].id: device id 'a/b' must be cohort/learner/device"),
        ({"devices": [{}]}, "devices[0].id: expected str, got NoneType None"),
        ({"devices": [{"id": "a/b/c", "kind": "toaster"}]}, "devices[0]: kind 'toaster' is not one of"),
        ({"devices": [{"id": "a/b/c", "kind": "arm", "profile": 3}]}, "devices[0].profile: expected str, got int 3"),
        (
            {"devices": [{"id": "a/b/c", "kind": "arm", "profile": "robotron"}]},
            "devices[0]: arm profile 'robotron' is not one of",
        ),
        ({"devices": [{"id": "a/b/c", "simulate": "yes"}]}, "devices[0].simulate: expected bool, got str 'yes'"),
        (
            {"devices": [{"id": "a/b/c"}, {"id": "a/b/d", "simulate": 1}]},
            "devices[1].simulate: expected bool, got int 1",
        ),
        ({"serial": {}}, "serial: expected list, got dict {}"),
        (
            {"serial": [{"port": "x", "device": "a/b/c", "speed": 1}]},
            "serial[0].speed: unknown key (known: baud, device, port, protocol)",
        ),
        (
            {"serial": [{"port": "x", "device": "a/b/c", "protocol": "modbus"}]},
            "serial[0].protocol: expected one of ('lines', 'sds011'), got 'modbus'",
        ),
        (
            {"serial": [{"port": "x", "device": "a/b"}]},
            "serial[0].device: device id 'a/b' must be cohort/learner/device",
        ),
        ({"serial": [{"device": "a/b/c"}]}, "serial[0].port: expected str, got NoneType None"),
        (
            {"serial": [{"port": "x", "device": "a/b/c", "baud": -1}]},
            "serial[0].baud: expected a positive rate (or 0 for the protocol's usual one)",
        ),
        ({"serial": [{"port": "x", "device": "a/b/c", "baud": True}]}, "serial[0].baud: expected int, got a boolean"),
        (
            {"serial": [{"port": "x", "device": "a/b/c"}, {"port": "y", "device": "a/b/c"}]},
            "serial[1]: a/b/c or y is bridged twice",
        ),
        (
            {"serial": [{"port": "x", "device": "a/b/c"}, {"port": "x", "device": "a/b/d"}]},
            "serial[1]: a/b/d or x is bridged twice",
        ),
        ({"mqtt": []}, "mqtt: expected dict, got list []"),
        ({"mqtt": {"port": 0}}, f"mqtt.port: {TCP_PORT} 0"),
        ({"mqtt": {"port": 65536}}, f"mqtt.port: {TCP_PORT} 65536"),
        ({"mqtt": {"internal_port": 70000}}, f"mqtt.internal_port: {TCP_PORT} 70000"),
        ({"mqtt": {"port": 65535}}, "mqtt.internal_port: port + 1 is not a TCP port: set internal_port"),
        ({"mqtt": {"port": "1883"}}, "mqtt.port: expected int, got str '1883'"),
        ({"mqtt": {"max_connections": 0}}, "mqtt.max_connections: expected at least 1, got 0"),
        ({"mqtt": {"hub_port": 1}}, "mqtt.hub_port: unknown key (known: host, port, launch, internal_port,"),
        ({"influx": {"backend": "v3"}}, "influx.backend: expected 'v1' or 'v2', got 'v3'"),
        ({"influx": {"backend": "v2", "org": "o"}}, "influx: the v2 backend needs org and bucket (and a token)"),
        ({"influx": {"timeout_s": "1"}}, "influx.timeout_s: expected float, got str '1'"),
        ({"hub": {"open_mode": 1}}, "hub.open_mode: expected bool, got int 1"),
        ({"hub": {"max_payload_bytes": True}}, "hub.max_payload_bytes: expected int, got a boolean"),
        ({"hub": {"allowed_origins": "x"}}, "hub.allowed_origins: expected list, got str 'x'"),
        ({"hub": {"allowed_origins": [1]}}, "hub.allowed_origins[]: expected str, got int 1"),
        ({"sim": {"extra_air": 1.5}}, "sim.extra_air: expected int, got float 1.5"),
        ({"hub": {"slow_write_linger_ms": -1}}, "hub.slow_write_linger_ms: expected a finite number ≥ 0, got -1.0"),
        ({"hub": {"slow_write_linger_ms": float("inf")}}, "hub.slow_write_linger_ms: expected a finite number ≥ 0"),
        ({"hub": {"write_linger_ms": float("nan")}}, "hub.write_linger_ms: expected a finite number ≥ 0, got nan"),
        ({"influx": {"timeout_s": -0.5}}, "influx.timeout_s: expected a finite number ≥ 0, got -0.5"),
    ],
)
def test_a_mistake_names_the_file_the_key_and_what_was_expected(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(data, "lab.toml")
    assert str(refused.value).startswith(f"lab.toml: {message}")


def test_a_file_that_cannot_be_read_or_is_not_toml(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as refused:
        load_config(missing)
    assert str(refused.value) == f"{missing}: cannot read: No such file or directory"
    bad = tmp_path / "bad.toml"
    bad.write_text("[mqtt\nport = 1\n")
    with pytest.raises(ConfigError) as refused:
        load_config(bad)
    assert str(refused.value).startswith(f"{bad}: not valid TOML: ")
    good = tmp_path / "lab.toml"
    good.write_text('state_dir = "/srv/lab"\n[mqtt]\nport = 2883\n')
    assert load_config(good) == LabConfig(state_dir=Path("/srv/lab"), mqtt=MqttConfig(port=2883))
    good.write_text("[mqtt]\nport = true\n")
    with pytest.raises(ConfigError) as refused:
        load_config(good)
    assert str(refused.value) == f"{good}: mqtt.port: expected int, got a boolean"


def test_config_errors_name_the_file_and_the_key(tmp_path: Path) -> None:
    bad = tmp_path / "lab.toml"
    bad.write_text('[mqtt]\nport = "1883"\n')
    with pytest.raises(ConfigError, match=r"lab\.toml: mqtt\.port: expected int, got str \'1883\'"):
        load_config(bad)
    bad.write_text("[hub]\nopen_mod = true\n")
    with pytest.raises(ConfigError, match=r"hub\.open_mod: unknown key"):
        load_config(bad)
    bad.write_text('[[devices]]\nid = "demo/ana"\n')
    with pytest.raises(ConfigError, match=r"devices\[0\]\.id: .*cohort/learner/device"):
        load_config(bad)
    bad.write_text("[mqtt\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match=r"cohorts\.x\.language"):
        parse_config({"cohorts": {"x": {"language": "de"}}})


def test_shipped_config_is_valid_and_declares_the_demo_fleet() -> None:
    cfg = load_config()
    assert cfg.mqtt.port == 1883 and cfg.influx.url == "http://127.0.0.1:8086" and cfg.hub.http_port == 8080
    assert cfg.influx.rpc_port != 8088 and cfg.influx.database == "labhub"
    assert any(d.ref.key == "demo/ana/aq1" and d.kind == "air_quality" and d.simulate for d in cfg.devices)
    assert cfg.hub.open_mode is False  # anonymous clients refused unless a trainer opens the lab
    assert json.dumps(cfg.language("demo_fr")) == '"fr"'
    assert os.path.basename(str(cfg.state_dir)) == "labhub"


def test_serial_entries_are_read_from_the_config(tmp_path: Path) -> None:
    cfg = parse_config(
        {
            "serial": [
                {"port": "/dev/ttyUSB0", "device": "demo/ana/pm1", "protocol": "sds011"},
                {"port": "loop://", "device": "demo/ana/uno"},
            ]
        }
    )
    assert [(s.port, s.device.key, s.protocol, s.baud) for s in cfg.serial] == [
        ("/dev/ttyUSB0", "demo/ana/pm1", "sds011", 0),
        ("loop://", "demo/ana/uno", "lines", 0),
    ]
    with pytest.raises(ConfigError, match=r"serial\[0\]\.protocol"):
        parse_config({"serial": [{"port": "x", "device": "a/b/c", "protocol": "modbus"}]})
    with pytest.raises(ConfigError, match=r"serial\[0\]\.device"):
        parse_config({"serial": [{"port": "x", "device": "a/b"}]})


def test_the_mqtt_config_knows_the_internal_listener() -> None:
    assert (MqttConfig().hub_host, MqttConfig().hub_port) == ("127.0.0.1", 1884)
    lan = parse_config({"mqtt": {"host": "192.0.2.10", "port": 1883, "internal_port": 2883, "max_connections": 40}})
    assert (lan.mqtt.hub_host, lan.mqtt.hub_port, lan.mqtt.max_connections) == ("127.0.0.1", 2883, 40)
    single = parse_config({"mqtt": {"host": "broker.example", "port": 1883, "internal_port": 1883, "launch": False}})
    assert (single.mqtt.hub_host, single.mqtt.hub_port) == ("broker.example", 1883)  # a broker with one listener
    for bad in ({"hub_port": 1}, {"max_connections": 0}, {"internal_port": 70000}, {"port": 65535}):
        with pytest.raises(ConfigError):
            parse_config({"mqtt": bad})
