"""Home Assistant discovery configs, checked against Home Assistant's own MQTT sensor schema, for every kind.

The schema table below is transcribed from Home Assistant's documentation of the MQTT sensor
(home-assistant.io/integrations/sensor.mqtt: configuration variables, and the discovery topic rule
`<discovery_prefix>/<component>/[<node_id>/]<object_id>/config` with ids in [a-zA-Z0-9_-]) and from
home-assistant/core `homeassistant/components/sensor/const.py` (`SensorDeviceClass`, `DEVICE_CLASS_UNITS`,
`SensorStateClass`). It is kept here, apart from the code, so a wrong mapping in the code cannot agree with itself.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from devices.arm import load_profiles
from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.access.dynsec import hub_acls, reader_account
from hub.config import ConfigError, DeviceConfig, load_config, parse_config
from hub.integrations.discovery import plan, wanted_configs
from hub.integrations.homeassistant import (
    NotDiscoverable,
    cohort_filter,
    config_topic,
    device_configs,
    is_ours,
    sensor_fields,
)

PROFILES = load_profiles()
ANA = DeviceRef("demo", "ana", "aq1")

# --- Home Assistant's schema (documented keys; device classes and their units) ---------------------------------
SENSOR_KEYS = {
    "availability", "availability_mode", "availability_template", "availability_topic", "default_entity_id",
    "device", "device_class", "enabled_by_default", "encoding", "entity_category", "entity_picture",
    "expire_after", "force_update", "icon", "json_attributes_template", "json_attributes_topic",
    "last_reset_value_template", "name", "object_id", "options", "origin", "payload_available",
    "payload_not_available", "platform", "qos", "state_class", "state_topic", "suggested_display_precision",
    "unique_id", "unit_of_measurement", "value_template",
}  # fmt: skip
REQUIRED = {"state_topic"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
DEVICE_KEYS = {
    "configuration_url", "connections", "hw_version", "identifiers", "manufacturer", "model", "model_id", "name",
    "serial_number", "suggested_area", "sw_version", "via_device",
}  # fmt: skip
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
STATE_CLASSES = {"measurement", "total", "total_increasing"}
PRESSURE = {"Pa", "hPa", "kPa", "bar", "cbar", "mbar", "mmHg", "inHg", "psi"}
# SensorDeviceClass values, with DEVICE_CLASS_UNITS for the classes a lab field can map to (None: not checked).
DEVICE_CLASSES: dict[str, set[str | None] | None] = {
    "date": None, "enum": None, "timestamp": None, "apparent_power": None, "aqi": {None}, "area": None,
    "atmospheric_pressure": PRESSURE, "battery": {"%"}, "blood_glucose_concentration": None,
    "carbon_monoxide": {"ppm"}, "carbon_dioxide": {"ppm"}, "conductivity": None, "current": None,
    "data_rate": None, "data_size": None, "distance": None, "duration": None, "energy": None,
    "energy_distance": None, "energy_storage": None, "frequency": None, "gas": None, "humidity": {"%"},
    "illuminance": {"lx"}, "irradiance": None, "moisture": {"%"}, "monetary": None, "nitrogen_dioxide": {"µg/m³"},
    "nitrogen_monoxide": {"µg/m³"}, "nitrous_oxide": {"µg/m³"}, "ozone": {"µg/m³"}, "ph": {None},
    "pm1": {"µg/m³"}, "pm10": {"µg/m³"}, "pm25": {"µg/m³"}, "power_factor": None, "power": None,
    "precipitation": None, "precipitation_intensity": None, "pressure": PRESSURE, "reactive_power": None,
    "signal_strength": None, "sound_pressure": None, "speed": None, "sulphur_dioxide": {"µg/m³"},
    "temperature": {"°C", "°F", "K"}, "temperature_delta": None, "volatile_organic_compounds": {"µg/m³"},
    "volatile_organic_compounds_parts": {"ppm", "ppb"}, "voltage": None, "volume": None, "volume_storage": None,
    "volume_flow_rate": None, "water": None, "weight": None, "wind_direction": {"°"}, "wind_speed": None,
}  # fmt: skip
HA_ID = re.compile(r"[a-zA-Z0-9_-]+")
TOPIC = re.compile(r"homeassistant/sensor/(?P<node>[^/]+)/(?P<object>[^/]+)/config")


def check_sensor_config(topic: str, payload: bytes) -> dict[str, Any]:
    """Home Assistant's MQTT sensor schema, as documented: raises AssertionError on any departure."""
    match = TOPIC.fullmatch(topic)
    assert match and HA_ID.fullmatch(match["node"]) and HA_ID.fullmatch(match["object"]), topic
    config = json.loads(payload)
    assert set(config) <= SENSOR_KEYS, set(config) - SENSOR_KEYS
    assert REQUIRED <= set(config)
    for key in ("name", "state_topic", "unique_id", "value_template", "unit_of_measurement", "device_class"):
        assert isinstance(config.get(key, ""), str), key
    assert "+" not in config["state_topic"] and "#" not in config["state_topic"]
    assert config.get("state_class", "measurement") in STATE_CLASSES
    device_class = config.get("device_class")
    if device_class is not None:
        assert device_class in DEVICE_CLASSES, device_class
        units = DEVICE_CLASSES[device_class]
        assert units is None or config.get("unit_of_measurement") in units, (device_class, config)
    for entry in config.get("availability", []):
        assert set(entry) <= AVAILABILITY_KEYS and "topic" in entry
    assert set(config.get("device", {})) <= DEVICE_KEYS
    assert set(config.get("origin", {})) <= ORIGIN_KEYS
    if "device" in config:
        assert config["device"]["identifiers"] and "unique_id" in config  # HA needs a unique_id to attach a device
    return dict(config)


def sample(kind: str) -> list[DeviceConfig]:
    if kind == "arm":
        return [DeviceConfig(DeviceRef("demo", "ana", f"arm-{p}"), "arm", profile=p) for p in PROFILES]
    return [DeviceConfig(ANA, kind)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_gets_valid_configs_or_a_reason(kind: str) -> None:
    for device in sample(kind):
        try:
            configs = device_configs(device, PROFILES)
        except NotDiscoverable as err:
            assert kind == "generic" and "chooses its own fields" in str(err)
            continue
        assert configs, device
        for topic, payload in configs.items():
            config = check_sensor_config(topic, payload)
            assert config["availability"] == [
                {"topic": device.ref.topic("status"), "payload_available": "online", "payload_not_available": "offline"}
            ]
            assert config["device"]["model"] == kind
        if kind == "arm":
            assert {json.loads(p)["value_template"] for p in configs.values()} == {
                "{{ value_json." + joint + " }}" for joint in PROFILES[device.profile or ""].joints
            }


def test_the_air_quality_fields_map_to_home_assistant_classes_and_units() -> None:
    configs = device_configs(DeviceConfig(ANA, "air_quality"), PROFILES)
    got = {
        json.loads(p)["value_template"]: (json.loads(p).get("device_class"), json.loads(p)["unit_of_measurement"])
        for p in configs.values()
    }
    assert got == {
        "{{ value_json.pm1 }}": ("pm1", "µg/m³"),
        "{{ value_json.pm2_5 }}": ("pm25", "µg/m³"),
        "{{ value_json.pm10 }}": ("pm10", "µg/m³"),
        "{{ value_json.co2 }}": ("carbon_dioxide", "ppm"),
        "{{ value_json.eco2 }}": ("carbon_dioxide", "ppm"),
        "{{ value_json.tvoc }}": ("volatile_organic_compounds_parts", "ppb"),
        "{{ value_json.temperature }}": ("temperature", "°C"),
        "{{ value_json.humidity }}": ("humidity", "%"),
        "{{ value_json.pressure }}": ("atmospheric_pressure", "hPa"),
    }


def test_one_config_whole() -> None:
    payload = device_configs(DeviceConfig(ANA, "air_quality"), PROFILES)[
        "homeassistant/sensor/labhub_demo/ana-aq1-pm2_5/config"
    ]
    assert json.loads(payload) == {
        "name": "PM2.5",
        "unique_id": "labhub-demo-ana-aq1-pm2_5",
        "state_topic": "lab/demo/ana/aq1/telemetry",
        "value_template": "{{ value_json.pm2_5 }}",
        "unit_of_measurement": "µg/m³",
        "device_class": "pm25",
        "state_class": "measurement",
        "availability": [
            {"topic": "lab/demo/ana/aq1/status", "payload_available": "online", "payload_not_available": "offline"}
        ],
        "device": {
            "identifiers": ["labhub-demo-ana-aq1"],
            "name": "demo/ana/aq1",
            "model": "air_quality",
            "manufacturer": "LabHub lab",
        },
        "origin": {"name": "LabHub"},
    }


def test_a_field_sent_alone_is_read_from_its_own_topic() -> None:
    configs = device_configs(DeviceConfig(ANA, "air_quality"), PROFILES, per_field={"co2"})
    co2 = check_sensor_config(config_topic(ANA, "co2"), configs[config_topic(ANA, "co2")])
    assert co2["state_topic"] == "lab/demo/ana/aq1/telemetry/co2" and "value_template" not in co2
    pm = json.loads(configs[config_topic(ANA, "pm1")])
    assert pm["state_topic"] == "lab/demo/ana/aq1/telemetry"


@pytest.mark.parametrize(
    ("one", "other"),
    [
        (DeviceRef("c", "a-b", "c"), DeviceRef("c", "a", "b-c")),  # a naive '-' join would make both a-b-c
        (DeviceRef("c", "a_b", "c"), DeviceRef("c", "a", "b_c")),
        (DeviceRef("c", "a-b-c", "d"), DeviceRef("c", "a-b", "c-d")),
        (DeviceRef("x_y", "a", "b"), DeviceRef("x", "y_a", "b")),
    ],
)
def test_names_map_to_home_assistant_ids_one_to_one(one: DeviceRef, other: DeviceRef) -> None:
    a = device_configs(DeviceConfig(one, "air_quality"), PROFILES)
    b = device_configs(DeviceConfig(other, "air_quality"), PROFILES)
    assert not set(a) & set(b)
    ids = [json.loads(p)["unique_id"] for p in [*a.values(), *b.values()]]
    assert len(set(ids)) == len(ids)
    for topic in [*a, *b]:
        assert TOPIC.fullmatch(topic) and is_ours(topic)


def test_the_hub_keeps_exactly_the_wanted_configs_and_leaves_others_alone() -> None:
    devices = [DeviceConfig(ANA, "air_quality"), DeviceConfig(DeviceRef("other", "bo", "aq1"), "air_quality")]
    devices.append(DeviceConfig(DeviceRef("demo", "ana", "own"), "generic"))
    wanted, skipped = wanted_configs(devices, frozenset({"demo"}), PROFILES, {})
    assert {t.split("/")[2] for t in wanted} == {"labhub_demo"} and len(wanted) == 9
    assert list(skipped) == [DeviceRef("demo", "ana", "own")]
    stale = "homeassistant/sensor/labhub_other/bo-aq1-pm1/config"
    foreign = "homeassistant/sensor/zigbee2mqtt/kitchen/config"
    same = config_topic(ANA, "pm1")
    retained = {stale: b"{}", foreign: b"{}", same: wanted[same]}
    changes = plan(wanted, retained)
    assert changes[stale] == b"" and foreign not in changes and same not in changes
    assert len(changes) == 9  # 8 configs to publish, 1 to clear
    assert plan({}, retained) == {stale: b"", same: b""}  # discovery turned off: ours go, others stay


def test_generic_devices_have_no_fields_to_announce() -> None:
    with pytest.raises(NotDiscoverable, match="chooses its own fields"):
        sensor_fields("generic")


def test_the_cohort_key_turns_discovery_on() -> None:
    cfg = parse_config({"cohorts": {"demo": {"home_assistant": True}, "b": {"language": "fr"}}})
    assert cfg.home_assistant == frozenset({"demo"}) and cfg.language("b") == "fr"
    assert parse_config({}).home_assistant == frozenset()
    with pytest.raises(ConfigError, match=r"cohorts\.demo\.home_assistant: expected bool"):
        parse_config({"cohorts": {"demo": {"home_assistant": "yes"}}})
    with pytest.raises(ConfigError, match=r"cohorts\.a/b"):
        parse_config({"cohorts": {"a/b": {"home_assistant": True}}})
    load_config()  # the documented example still parses


def test_a_reader_reads_its_cohort_and_writes_nothing() -> None:
    account = reader_account("demo", "ha", cohort_filter("demo"))
    assert (account.username, account.role) == ("reader.demo.ha", "reader:demo/ha")
    acls = [(a["acltype"], a["topic"], a["allow"]) for a in account.acls]
    assert acls == [
        ("subscribePattern", "lab/demo/#", True),
        ("subscribePattern", "homeassistant/#", True),
        ("publishClientReceive", "lab/demo/+/+/telemetry", True),
        ("publishClientReceive", "lab/demo/+/+/telemetry/+", True),
        ("publishClientReceive", "lab/demo/+/+/status", True),
        ("publishClientReceive", "homeassistant/sensor/labhub_demo/+/config", True),
        ("publishClientSend", "#", False),
    ]
    hub = {(a["acltype"], a["topic"]) for a in hub_acls()}
    assert ("publishClientSend", "homeassistant/#") in hub
