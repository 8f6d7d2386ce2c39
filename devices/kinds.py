"""Device kinds: which fields a device may send, their types, units and plausible ranges.

Pure data. The hub validates readings against a kind; the simulators and the docs read the same
tables, so a learner, the hub and the tests all agree on what `pm2_5` means.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType


class FieldType(StrEnum):
    """The value types InfluxDB can store; a field keeps one of them for life."""

    FLOAT = "float"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    STRING = "string"


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One field of a kind: type, unit and the range a real sensor can report."""

    name: str
    type: FieldType
    unit: str
    minimum: float = -math.inf
    maximum: float = math.inf
    sensor: str = ""


@dataclass(frozen=True, slots=True)
class DeviceKind:
    """A kind of device. `open_fields` kinds accept any well-formed field name (learners' own projects)."""

    name: str
    description: str
    fields: Mapping[str, FieldSpec] = field(default_factory=dict)
    open_fields: bool = False
    # (minimum, maximum) per field, derived from `fields` for the validation hot path.
    bounds: Mapping[str, tuple[float, float]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        bounds = {f.name: (f.minimum, f.maximum) for f in self.fields.values()}
        object.__setattr__(self, "bounds", bounds)  # a plain dict: the fastest lookups

    @property
    def measurement(self) -> str:
        """The measurement of a fixed kind's readings (open kinds: see measurement_for)."""
        return self.name

    def measurement_for(self, cohort: str, learner: str) -> str:
        """The InfluxDB measurement holding a device's readings.

        A fixed kind has one measurement (its schema fixes every field's type). An open kind has one per
        learner, `<kind>.<cohort>.<learner>`: InfluxDB gives a field one type per measurement and shard,
        so in a shared measurement the first learner to send `temperature` as text would get every other
        learner's numbers refused. Names are unambiguous: cohort and learner names hold no dots.
        """
        return f"{self.name}.{cohort}.{learner}" if self.open_fields else self.name


# Distinct field names one device of an open kind may use over its life: each is a column in InfluxDB,
# and a board that puts a value or a counter in the name would otherwise grow them without end.
MAX_DISTINCT_FIELDS = 64
# Field names a learner may choose: they must survive line protocol, Flux and InfluxQL unquoted.
FIELD_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")  # use with fullmatch()
# Names the hub owns: the tags it sets from the topic and the timestamp keys.
RESERVED_NAMES = frozenset({"cohort", "learner", "device", "time", "ts", "timestamp", "_field", "_measurement"})
MAX_STRING_LENGTH = 256
MAX_FIELDS = 64


def _kind(name: str, description: str, specs: list[FieldSpec], open_fields: bool = False) -> DeviceKind:
    return DeviceKind(name, description, MappingProxyType({s.name: s for s in specs}), open_fields)


_F = FieldType.FLOAT

# Ranges from the datasheets of the sensors found in classroom kits.
AIR_QUALITY = _kind(
    "air_quality",
    "Air-quality station (particulates, CO2, VOC, temperature, humidity, pressure)",
    [
        FieldSpec("pm1", _F, "µg/m³", 0, 1000, "PMS5003: 0–1000 µg/m³"),
        FieldSpec("pm2_5", _F, "µg/m³", 0, 1000, "SDS011: 0–999.9, PMS5003: 0–1000 µg/m³"),
        FieldSpec("pm10", _F, "µg/m³", 0, 1000, "SDS011: 0–999.9, PMS5003: 0–1000 µg/m³"),
        FieldSpec("co2", _F, "ppm", 0, 40000, "SCD4x: 0–40000 ppm, MH-Z19B: 0–5000 ppm"),
        FieldSpec("eco2", _F, "ppm", 400, 60000, "SGP30 equivalent CO2: 400–60000 ppm"),
        FieldSpec("tvoc", _F, "ppb", 0, 60000, "SGP30: 0–60000 ppb"),
        FieldSpec("temperature", _F, "°C", -40, 85, "BME280: -40–85 °C"),
        FieldSpec("humidity", _F, "%RH", 0, 100, "BME280: 0–100 %RH"),
        FieldSpec("pressure", _F, "hPa", 300, 1100, "BME280: 300–1100 hPa"),
    ],
)

GENERIC = _kind(
    "generic",
    "A learner's own project: any numeric, boolean or short string fields",
    [],
    open_fields=True,
)

# A robotic arm's pose: one field per joint (degrees, as commanded: hobby servos report no position),
# plus `moving` and `source`. Joint names come from the arm's profile (devices/arm.py).
ARM = _kind("arm", "Robotic arm: joint angles in degrees, as commanded", [], open_fields=True)

KINDS: Mapping[str, DeviceKind] = MappingProxyType({k.name: k for k in (AIR_QUALITY, GENERIC, ARM)})


def check_kind(kind: str, profile: str | None, profiles: Collection[str], default_profile: str) -> str | None:
    """A device's kind and arm profile as someone declared them (config, CLI, CSV, API); ValueError says what
    is wrong. An arm without a profile gets `default_profile`; only arms have one."""
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(sorted(KINDS))}")
    if kind == "arm":
        profile = profile or default_profile
        if profile not in profiles:
            raise ValueError(f"arm profile {profile!r} is not one of {', '.join(sorted(profiles))}")
        return profile
    if profile:
        raise ValueError(f"only arms have a profile (kind {kind!r} does not)")
    return None
