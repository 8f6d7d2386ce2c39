"""Home Assistant MQTT discovery: the retained `config` message of each sensor a declared device has. Pure.

One sensor per field of a device's kind, with the kind's unit and Home Assistant's `device_class` for it, and
availability from the device's own retained `status` ("online" / the last will "offline"), so Home Assistant
shows a lab's devices without a firmware change. Fields are known in advance only for fixed kinds and arms
(their profile's joints); a `generic` device chooses its own fields and gets no sensors.

Topics are `homeassistant/sensor/<node_id>/<object_id>/config`, where Home Assistant allows only
`[a-zA-Z0-9_-]` in both: the node is the cohort (`labhub_<cohort>`, so one broker rule covers a cohort's
configs), the object is learner, device and field joined by `-`, a `-` inside a name being doubled. Names
never start with `-`, so the mapping is one-to-one: no two sensors share a topic or a unique_id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from devices.arm import ArmProfile
from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.access.dynsec import DISCOVERY_PREFIX
from hub.config import DeviceConfig

NODE_PREFIX = "labhub_"  # + the cohort: a cohort name is already made of HA's allowed characters
MANUFACTURER = "LabHub lab"
ONLINE, OFFLINE = "online", "offline"  # what devices put on their retained status topic (and last will)
HA_ID_RE = re.compile(r"[a-zA-Z0-9_-]+")  # Home Assistant's rule for node_id and object_id

# Home Assistant's sensor device class for each field of the lab's kinds (HA's SensorDeviceClass values).
DEVICE_CLASSES: Mapping[str, str] = MappingProxyType(
    {
        "pm1": "pm1",
        "pm2_5": "pm25",
        "pm10": "pm10",
        "co2": "carbon_dioxide",
        "eco2": "carbon_dioxide",  # an SGP30's estimate, in ppm like a real CO2 sensor's
        "tvoc": "volatile_organic_compounds_parts",  # ppb: HA's `volatile_organic_compounds` is µg/m³
        "temperature": "temperature",
        "humidity": "humidity",
        "pressure": "atmospheric_pressure",  # hPa from a BME280: the air's pressure
    }
)
# Units spelled differently in Home Assistant (its humidity class accepts "%" only).
HA_UNITS: Mapping[str, str] = MappingProxyType({"%RH": "%"})
LABELS: Mapping[str, str] = MappingProxyType(
    {"pm1": "PM1", "pm2_5": "PM2.5", "pm10": "PM10", "co2": "CO2", "eco2": "eCO2", "tvoc": "TVOC"}
)
JOINT_UNIT = "°"  # arms report joint angles in degrees (as commanded)


class NotDiscoverable(ValueError):
    """A device whose sensors cannot be announced; the message says why."""


@dataclass(frozen=True, slots=True)
class SensorField:
    """What Home Assistant is told about one field."""

    name: str
    unit: str | None
    device_class: str | None


def node_id(cohort: str) -> str:
    return NODE_PREFIX + cohort


def cohort_filter(cohort: str) -> str:
    """The topic filter of every discovery config of a cohort (a reader's broker rule)."""
    return f"{DISCOVERY_PREFIX}/sensor/{node_id(cohort)}/+/config"


def is_ours(topic: str) -> bool:
    """A discovery config this lab's hub publishes (any cohort's)."""
    parts = topic.split("/")
    return len(parts) == 5 and parts[:2] == [DISCOVERY_PREFIX, "sensor"] and parts[2].startswith(NODE_PREFIX)


def _escape(name: str) -> str:
    return name.replace("-", "--")


def object_id(ref: DeviceRef, field: str) -> str:
    return f"{_escape(ref.learner)}-{_escape(ref.device)}-{_escape(field)}"


def config_topic(ref: DeviceRef, field: str) -> str:
    return f"{DISCOVERY_PREFIX}/sensor/{node_id(ref.cohort)}/{object_id(ref, field)}/config"


def device_identifier(ref: DeviceRef) -> str:
    return f"labhub-{_escape(ref.cohort)}-{_escape(ref.learner)}-{_escape(ref.device)}"


def sensor_fields(kind: str, profile: ArmProfile | None = None) -> tuple[SensorField, ...]:
    """The sensors of a kind; NotDiscoverable when its fields are not known before the device sends them."""
    if kind == "arm":
        if profile is None:
            raise NotDiscoverable("an arm without a profile: its joints are unknown")
        return tuple(SensorField(joint, JOINT_UNIT, None) for joint in profile.joints if HA_ID_RE.fullmatch(joint))
    spec = KINDS.get(kind)
    if spec is None:
        raise NotDiscoverable(f"unknown kind {kind!r}")
    if spec.open_fields:
        raise NotDiscoverable(f"a {kind} device chooses its own fields: none are known to announce")
    return tuple(
        SensorField(f.name, HA_UNITS.get(f.unit, f.unit) or None, DEVICE_CLASSES.get(f.name))
        for f in spec.fields.values()
    )


def sensor_config(ref: DeviceRef, kind: str, field: SensorField, per_field: bool = False) -> dict[str, object]:
    """One sensor's discovery config. `per_field`: the device sends this field alone on `telemetry/<field>`
    (a bare value); otherwise it is read from the JSON object on `telemetry`."""
    telemetry = ref.topic("telemetry")
    config: dict[str, object] = {
        "name": LABELS.get(field.name, field.name.replace("_", " ").capitalize()),
        "unique_id": f"{device_identifier(ref)}-{_escape(field.name)}",
        "state_topic": f"{telemetry}/{field.name}" if per_field else telemetry,
        "state_class": "measurement",
        "availability": [{"topic": ref.topic("status"), "payload_available": ONLINE, "payload_not_available": OFFLINE}],
        "device": {
            "identifiers": [device_identifier(ref)],
            "name": ref.key,
            "model": kind,
            "manufacturer": MANUFACTURER,
        },
        "origin": {"name": "LabHub"},
    }
    if not per_field:
        config["value_template"] = "{{ value_json." + field.name + " }}"
    if field.unit is not None:
        config["unit_of_measurement"] = field.unit
    if field.device_class is not None:
        config["device_class"] = field.device_class
    return config


def device_configs(
    device: DeviceConfig, profiles: Mapping[str, ArmProfile], per_field: Iterable[str] = ()
) -> dict[str, bytes]:
    """Every retained config of one device, by topic (JSON, keys sorted: equal configs are equal bytes).
    NotDiscoverable for a device that has none."""
    profile = profiles.get(device.profile) if device.profile else None
    split = frozenset(per_field)
    return {
        config_topic(device.ref, f.name): encode(sensor_config(device.ref, device.kind, f, f.name in split))
        for f in sensor_fields(device.kind, profile)
    }


def encode(config: Mapping[str, object]) -> bytes:
    return json.dumps(config, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def state_topic_of(payload: bytes) -> str | None:
    """The state topic of a config already on the broker (None if it cannot be read)."""
    try:
        topic = json.loads(payload).get("state_topic")
    except (ValueError, AttributeError):
        return None
    return topic if isinstance(topic, str) else None
