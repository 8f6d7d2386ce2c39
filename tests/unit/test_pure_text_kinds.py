"""Text rules (devices.text) and device kinds (devices.kinds), pure, as tables.

Ranges from the README's kinds table (SDS011/PMS5003, SCD4x, SGP30, BME280 datasheets); text rules from the
hostile-input contract: a lone surrogate is not Unicode and is refused or repaired at the edge.
Written for issue 12's mutation testing.
"""

from __future__ import annotations

import math
from types import MappingProxyType

import pytest

from devices.kinds import AIR_QUALITY, ARM, GENERIC, KINDS, DeviceKind, FieldSpec, FieldType, _kind, check_kind
from devices.text import MAX_DEPTH, finite_float, has_surrogates, json_has_surrogates, valid_text


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", False), ("plain", False), ("°C µg/m³ 😀", False), ("\ud800", True), ("a\udfffb", True), ("é\udc80", True)],
)
def test_has_surrogates(text: str, expected: bool) -> None:
    assert has_surrogates(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("plain", "plain"),
        ("°C 😀", "°C 😀"),
        ("\ud800x\udfff", "\ufffdx\ufffd"),
        ("\ud7ff\ud800", "\ud7ff\ufffd"),
        ("\ue000\udc80", "\ue000\ufffd"),
    ],
)
def test_valid_text(text: str, expected: str) -> None:
    assert valid_text(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("ok", False),
        ("\ud800", True),
        (1, False),
        (None, False),
        ({"a": 1, "b": ["x", {"c": "y"}]}, False),
        ({"\ud800": 1}, True),
        ({"a": ["x", "\udc80"]}, True),
        ({"a": {"b": "\udc80"}}, True),
        ([1, 2, "ok"], False),
        (["ok", "\udc80"], True),
    ],
)
def test_json_has_surrogates(value: object, expected: bool) -> None:
    assert json_has_surrogates(value) is expected


def nested(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = [value]
    return value


def test_nesting_past_the_limit_counts_as_broken() -> None:
    assert MAX_DEPTH == 64
    assert json_has_surrogates(nested(64, 1)) is False  # a value at depth 64 is the deepest looked at
    assert json_has_surrogates(nested(65, 1)) is True
    assert json_has_surrogates("ok", 100) is False  # a string is judged on its own at any depth


def nested_objects(depth: int, leaf: object) -> object:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


@pytest.mark.parametrize(("depth", "expected"), [(63, False), (64, False), (65, True), (66, True)])
def test_nesting_of_objects_past_the_limit_counts_as_broken(depth: int, expected: bool) -> None:
    assert json_has_surrogates(nested_objects(depth, 1)) is expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, None),
        (False, None),
        (0, 0.0),
        (10**15, 1e15),
        (-(10**15), -1e15),
        (10**15 + 1, None),
        (-(10**15) - 1, None),
        (10**400, None),
        (1.5, 1.5),
        (1e15, 1e15),
        (-1e15, -1e15),
        (1.0000001e15, None),
        (float("nan"), None),
        (float("inf"), None),
        ("1", None),
        (None, None),
    ],
)
def test_finite_float(value: object, expected: float | None) -> None:
    result = finite_float(value)
    assert result == expected and type(result) is type(expected)


def test_finite_float_with_a_limit() -> None:
    assert finite_float(5, limit=5) == 5.0 and finite_float(6, limit=5) is None
    assert finite_float(-5.0, limit=5) == -5.0 and finite_float(-5.5, limit=5) is None


def test_the_air_quality_ranges_are_the_datasheets() -> None:
    assert AIR_QUALITY.name == "air_quality" and not AIR_QUALITY.open_fields
    assert dict(AIR_QUALITY.bounds) == {
        "pm1": (0, 1000),
        "pm2_5": (0, 1000),
        "pm10": (0, 1000),
        "co2": (0, 40000),
        "eco2": (400, 60000),
        "tvoc": (0, 60000),
        "temperature": (-40, 85),
        "humidity": (0, 100),
        "pressure": (300, 1100),
    }
    assert {name: spec.unit for name, spec in AIR_QUALITY.fields.items()} == {
        "pm1": "µg/m³",
        "pm2_5": "µg/m³",
        "pm10": "µg/m³",
        "co2": "ppm",
        "eco2": "ppm",
        "tvoc": "ppb",
        "temperature": "°C",
        "humidity": "%RH",
        "pressure": "hPa",
    }
    assert all(spec.name == name for name, spec in AIR_QUALITY.fields.items())


def test_open_kinds() -> None:
    assert dict(KINDS) == {"air_quality": AIR_QUALITY, "generic": GENERIC, "arm": ARM}
    for kind in (GENERIC, ARM):
        assert kind.open_fields and dict(kind.fields) == {} and dict(kind.bounds) == {}
    assert (GENERIC.name, ARM.name) == ("generic", "arm")
    assert GENERIC.description == "A learner's own project: any numeric, boolean or short string fields"
    assert ARM.description == "Robotic arm: joint angles in degrees, as commanded"


@pytest.mark.parametrize(
    ("kind", "cohort", "measurement"),
    [
        (AIR_QUALITY, "demo", "air_quality"),
        (GENERIC, "demo", "generic.demo.ana"),
        (ARM, "c-1", "arm.c-1.ana"),
    ],
)
def test_measurements(kind: object, cohort: str, measurement: str) -> None:
    assert kind.measurement_for(cohort, "ana") == measurement  # type: ignore[attr-defined]
    assert kind.measurement == kind.name  # type: ignore[attr-defined]


PROFILES = ("braccio", "mearm")


@pytest.mark.parametrize(
    ("kind", "profile", "expected"),
    [
        ("air_quality", None, None),
        ("air_quality", "", None),
        ("generic", None, None),
        ("arm", None, "mearm"),
        ("arm", "", "mearm"),
        ("arm", "braccio", "braccio"),
    ],
)
def test_check_kind_accepts(kind: str, profile: str | None, expected: str | None) -> None:
    assert check_kind(kind, profile, PROFILES, "mearm") == expected


@pytest.mark.parametrize(
    ("kind", "profile", "default", "message"),
    [
        ("robot", None, "mearm", "kind 'robot' is not one of air_quality, arm, generic"),
        ("arm", "r2d2", "mearm", "arm profile 'r2d2' is not one of braccio, mearm"),
        ("arm", None, "r2d2", "arm profile 'r2d2' is not one of braccio, mearm"),
        ("generic", "mearm", "mearm", "only arms have a profile (kind 'generic' does not)"),
    ],
)
def test_check_kind_refuses(kind: str, profile: str | None, default: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        check_kind(kind, profile, PROFILES, default)
    assert str(err.value) == message


# The kinds of devices.kinds are built at import time, where mutation testing sees no test: one built here.
SPEC_A = FieldSpec("a", FieldType.FLOAT, "°C", -40, 85, "a datasheet")
SPEC_B = FieldSpec("b", FieldType.FLOAT, "%")


@pytest.mark.parametrize(
    ("args", "expected", "bounds"),
    [
        (
            ("k", "a kind", [SPEC_A, SPEC_B]),
            DeviceKind("k", "a kind", {"a": SPEC_A, "b": SPEC_B}, False),
            {"a": (-40, 85), "b": (-math.inf, math.inf)},
        ),
        (("open", "an open kind", [], True), DeviceKind("open", "an open kind", {}, True), {}),
    ],
)
def test_a_kind_is_built_whole(args: tuple[object, ...], expected: DeviceKind, bounds: dict[str, object]) -> None:
    kind = _kind(*args)  # type: ignore[arg-type]
    assert kind == expected
    assert type(kind.fields) is MappingProxyType
    assert kind.bounds == bounds
