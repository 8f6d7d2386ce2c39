"""Unit tests for devices.validate: fixed kinds (AIR_QUALITY), open kinds (GENERIC), timestamps."""

from __future__ import annotations

import math
from collections.abc import Mapping

import pytest

from devices.decode import Decoded, Source, decode_payload
from devices.kinds import AIR_QUALITY, GENERIC, MAX_FIELDS, MAX_STRING_LENGTH, DeviceKind, FieldType
from devices.problems import PayloadRejected, Problem
from devices.validate import DEFAULT_LIMITS, Limits, Reading, sanitize_name, suggest_field, timestamp_to_ns, validate

NOW_S = 1_700_000_000
NOW_NS = NOW_S * 10**9
NOW_ISO = "2023-11-14T22:13:20+00:00"
AQ = {"kind": "air_quality", "known": "pm1, pm2_5, pm10, co2, eco2, tvoc, temperature, humidity, pressure"}
ALL_AIR = {
    "pm1": 1.0,
    "pm2_5": 2.0,
    "pm10": 3.0,
    "co2": 415.0,
    "eco2": 420.0,
    "tvoc": 12.0,
    "temperature": 21.5,
    "humidity": 45.0,
    "pressure": 1013.25,
}

FLT, INT, BOOL, STR = FieldType.FLOAT, FieldType.INTEGER, FieldType.BOOLEAN, FieldType.STRING
JSON, LINE, BARE = Source.JSON, Source.LINE, Source.BARE


def run(
    kind: DeviceKind,
    values: Mapping[str, object],
    ts: object = None,
    source: Source = JSON,
    pinned: Mapping[str, FieldType] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> Reading:
    return validate(kind, Decoded(dict(values), ts, source), NOW_NS, pinned or {}, limits)


def problems_of(
    kind: DeviceKind,
    values: Mapping[str, object],
    ts: object = None,
    source: Source = JSON,
    pinned: Mapping[str, FieldType] | None = None,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Problem]:
    with pytest.raises(PayloadRejected) as info:
        run(kind, values, ts, source, pinned, limits)
    return info.value.problems


def typed(values: Mapping[str, object]) -> dict[str, tuple[str, object]]:
    """Values with their Python type, so 21 and 21.0 (or 1 and True) are told apart."""
    return {k: (type(v).__name__, v) for k, v in values.items()}


# Fixed kind: AIR_QUALITY --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "source", "expected"),
    [
        ({"pm2_5": 12.5}, JSON, {"pm2_5": 12.5}),
        ({"pm2_5": 12}, JSON, {"pm2_5": 12.0}),
        ({"pm2_5": 12}, BARE, {"pm2_5": 12.0}),
        ({"pm2_5": 12}, LINE, {"pm2_5": 12.0}),
        ({"temperature": -40.0, "pressure": 1100.0}, JSON, {"temperature": -40.0, "pressure": 1100.0}),
        ({"temperature": -40, "eco2": 400}, JSON, {"temperature": -40.0, "eco2": 400.0}),
        ({"humidity": 0.0, "tvoc": 60000.0, "co2": 40000}, JSON, {"humidity": 0.0, "tvoc": 60000.0, "co2": 40000.0}),
        ({"temperature": -0.0}, JSON, {"temperature": -0.0}),
        (ALL_AIR, JSON, ALL_AIR),
    ],
)
def test_air_quality_accepts(values: dict[str, object], source: Source, expected: dict[str, object]) -> None:
    reading = run(AIR_QUALITY, values, source=source)
    assert typed(reading.fields) == typed(expected)
    assert reading.types == {}
    assert reading.timestamp_ns is None


def test_air_quality_accepts_a_timestamp() -> None:
    reading = run(AIR_QUALITY, {"co2": 415.0}, ts=NOW_S)
    assert reading == Reading({"co2": 415.0}, {}, NOW_NS)


def test_validate_does_not_mutate_the_decoded_values() -> None:
    values: dict[str, object] = {"pm2_5": 12, "temperature": 21.5}
    decoded = Decoded(values, NOW_S, JSON)
    validate(AIR_QUALITY, decoded, NOW_NS, {})
    assert typed(decoded.values) == typed({"pm2_5": 12, "temperature": 21.5})
    assert decoded.timestamp == NOW_S


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("pm25", "pm2_5"),
        ("PM2.5", "pm2_5"),
        ("pm2.5", "pm2_5"),
        ("PM2_5", "pm2_5"),
        ("pm2", "pm2_5"),
        ("PM10", "pm10"),
        ("pm_10", "pm10"),
        ("CO2", "co2"),
        ("co_2", "co2"),
        ("e-co2", "eco2"),
        ("eCO2", "eco2"),
        ("TVOC", "tvoc"),
        ("voc", "tvoc"),
        ("temp", "temperature"),
        ("Temp", "temperature"),
        ("Temperature", "temperature"),
        ("temperatur", "temperature"),
        ("hum", "humidity"),
        ("humid", "humidity"),
        ("humidty", "humidity"),
        ("press", "pressure"),
        ("pressur", "pressure"),
    ],
)
def test_unknown_field_with_suggestion(name: str, suggestion: str) -> None:
    assert suggest_field(name, AIR_QUALITY) == suggestion
    assert problems_of(AIR_QUALITY, {name: 3.0}) == [
        Problem("unknown_field_suggest", name, 3.0, {**AQ, "suggestion": suggestion})
    ]


@pytest.mark.parametrize("name", ["banana", "xyz", "x", "tmp", "rssi", "battery", ""])
def test_unknown_field_without_suggestion(name: str) -> None:
    assert suggest_field(name, AIR_QUALITY) is None
    assert problems_of(AIR_QUALITY, {name: 3.0}) == [Problem("unknown_field", name, 3.0, AQ)]


def test_suggest_field_has_nothing_to_offer_for_generic() -> None:
    assert suggest_field("temp", GENERIC) is None


@pytest.mark.parametrize(
    ("name", "value", "params"),
    [
        ("temperature", 85.1, {"minimum": "-40", "maximum": "85", "unit": "°C", "sensor": "BME280: -40–85 °C"}),
        ("temperature", -41, {"minimum": "-40", "maximum": "85", "unit": "°C", "sensor": "BME280: -40–85 °C"}),
        ("temperature", 2115.0, {"minimum": "-40", "maximum": "85", "unit": "°C", "sensor": "BME280: -40–85 °C"}),
        (
            "pm2_5",
            -1.0,
            {"minimum": "0", "maximum": "1000", "unit": "µg/m³", "sensor": "SDS011: 0–999.9, PMS5003: 0–1000 µg/m³"},
        ),
        ("pm1", 1000.5, {"minimum": "0", "maximum": "1000", "unit": "µg/m³", "sensor": "PMS5003: 0–1000 µg/m³"}),
        (
            "co2",
            40001,
            {"minimum": "0", "maximum": "40000", "unit": "ppm", "sensor": "SCD4x: 0–40000 ppm, MH-Z19B: 0–5000 ppm"},
        ),
        (
            "eco2",
            399.0,
            {"minimum": "400", "maximum": "60000", "unit": "ppm", "sensor": "SGP30 equivalent CO2: 400–60000 ppm"},
        ),
        ("tvoc", 60001.0, {"minimum": "0", "maximum": "60000", "unit": "ppb", "sensor": "SGP30: 0–60000 ppb"}),
        ("humidity", 100.5, {"minimum": "0", "maximum": "100", "unit": "%RH", "sensor": "BME280: 0–100 %RH"}),
        ("pressure", 101325.0, {"minimum": "300", "maximum": "1100", "unit": "hPa", "sensor": "BME280: 300–1100 hPa"}),
        ("pressure", 2**63 - 1, {"minimum": "300", "maximum": "1100", "unit": "hPa", "sensor": "BME280: 300–1100 hPa"}),
    ],
)
def test_out_of_range(name: str, value: object, params: dict[str, object]) -> None:
    assert problems_of(AIR_QUALITY, {name: value}) == [Problem("out_of_range", name, value, params)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, Problem("wrong_type", "co2", True, {"expected": "number", "got": "boolean"})),
        (False, Problem("wrong_type", "co2", False, {"expected": "number", "got": "boolean"})),
        (None, Problem("wrong_type", "co2", None, {"expected": "number", "got": "null"})),
        ([400], Problem("wrong_type", "co2", [400], {"expected": "number", "got": "array"})),
        ({"ppm": 400}, Problem("wrong_type", "co2", {"ppm": 400}, {"expected": "number", "got": "object"})),
        ("high", Problem("wrong_type", "co2", "high", {"expected": "number", "got": "string"})),
        ("", Problem("wrong_type", "co2", "", {"expected": "number", "got": "string"})),
        ("nan", Problem("wrong_type", "co2", "nan", {"expected": "number", "got": "string"})),
        ("Infinity", Problem("wrong_type", "co2", "Infinity", {"expected": "number", "got": "string"})),
        ("415", Problem("number_as_string", "co2", "415")),
        ("415.5", Problem("number_as_string", "co2", "415.5")),
        (" 415 ", Problem("number_as_string", "co2", " 415 ")),
        ("4.15e2", Problem("number_as_string", "co2", "4.15e2")),
        ("-1", Problem("number_as_string", "co2", "-1")),
        (2**63, Problem("integer_too_large", "co2", 2**63)),
        (-(2**63) - 1, Problem("integer_too_large", "co2", -(2**63) - 1)),
        (10**30, Problem("integer_too_large", "co2", 10**30)),
    ],
)
def test_air_quality_field_problems(value: object, expected: Problem) -> None:
    assert problems_of(AIR_QUALITY, {"co2": value}) == [expected]


@pytest.mark.parametrize("kind", [AIR_QUALITY, GENERIC], ids=["air_quality", "generic"])
@pytest.mark.parametrize(
    ("value", "is_expected"),
    [
        (math.nan, math.isnan),
        (math.inf, lambda v: v == math.inf),
        (-math.inf, lambda v: v == -math.inf),
    ],
    ids=["nan", "inf", "-inf"],
)
def test_not_finite(kind: DeviceKind, value: float, is_expected: object) -> None:
    [problem] = problems_of(kind, {"temperature": value})
    assert (problem.code, problem.field, dict(problem.params)) == ("not_finite", "temperature", {})
    assert is_expected(problem.value)  # type: ignore[operator]


def test_not_finite_from_a_decoded_json_payload() -> None:
    [decoded] = decode_payload(b'{"temperature": NaN, "humidity": Infinity}', None, 1024)
    problems = problems_of(AIR_QUALITY, decoded.values)
    assert [(p.code, p.field) for p in problems] == [("not_finite", "temperature"), ("not_finite", "humidity")]


# Open kind: GENERIC -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "source", "fields", "types"),
    [
        ({"count": 21}, JSON, {"count": 21.0}, {"count": FLT}),
        ({"count": 21}, BARE, {"count": 21.0}, {"count": FLT}),
        ({"count": 42}, LINE, {"count": 42}, {"count": INT}),
        ({"x": 1.5}, JSON, {"x": 1.5}, {"x": FLT}),
        ({"x": 1.5}, LINE, {"x": 1.5}, {"x": FLT}),
        ({"on": True, "off": False}, JSON, {"on": True, "off": False}, {"on": BOOL, "off": BOOL}),
        ({"on": True}, LINE, {"on": True}, {"on": BOOL}),
        ({"state": "ok"}, JSON, {"state": "ok"}, {"state": STR}),
        ({"state": "café ☕"}, JSON, {"state": "café ☕"}, {"state": STR}),
        ({"state": ""}, LINE, {"state": ""}, {"state": STR}),
        ({"s": "x" * MAX_STRING_LENGTH}, JSON, {"s": "x" * MAX_STRING_LENGTH}, {"s": STR}),
        ({"n": 2**63 - 1, "m": -(2**63)}, LINE, {"n": 2**63 - 1, "m": -(2**63)}, {"n": INT, "m": INT}),
        ({"n": 2**63 - 1}, JSON, {"n": float(2**63 - 1)}, {"n": FLT}),
        ({"a" * 64: 1.0}, JSON, {"a" * 64: 1.0}, {"a" * 64: FLT}),
        (
            {"A1_b": 1.0, "x": 2.0, "Z_": 3.0},
            JSON,
            {"A1_b": 1.0, "x": 2.0, "Z_": 3.0},
            {"A1_b": FLT, "x": FLT, "Z_": FLT},
        ),
        (
            {"t": 21, "n": 7, "ok": True, "msg": "hi"},
            LINE,
            {"t": 21, "n": 7, "ok": True, "msg": "hi"},
            {"t": INT, "n": INT, "ok": BOOL, "msg": STR},
        ),
    ],
)
def test_generic_accepts(
    values: dict[str, object], source: Source, fields: dict[str, object], types: dict[str, FieldType]
) -> None:
    reading = run(GENERIC, values, source=source)
    assert typed(reading.fields) == typed(fields)
    assert reading.types == types
    assert all(type(t) is FieldType for t in reading.types.values())
    assert reading.timestamp_ns is None


def test_generic_types_from_real_payloads() -> None:
    """JSON ints become floats; line-protocol `42i` stays an integer."""
    [from_json] = decode_payload(b'{"count": 42, "rate": 1.5}', None, 1024)
    [from_lp] = decode_payload(b"m count=42i,rate=1.5", None, 1024)
    [from_bare] = decode_payload(b"42", "count", 1024)
    json_reading = validate(GENERIC, from_json, NOW_NS, {})
    lp_reading = validate(GENERIC, from_lp, NOW_NS, {})
    bare_reading = validate(GENERIC, from_bare, NOW_NS, {})
    assert typed(json_reading.fields) == {"count": ("float", 42.0), "rate": ("float", 1.5)}
    assert json_reading.types == {"count": FLT, "rate": FLT}
    assert typed(lp_reading.fields) == {"count": ("int", 42), "rate": ("float", 1.5)}
    assert lp_reading.types == {"count": INT, "rate": FLT}
    assert typed(bare_reading.fields) == {"count": ("float", 42.0)}
    assert bare_reading.types == {"count": FLT}


@pytest.mark.parametrize(
    ("name", "suggestion"),
    [
        ("a b", "a_b"),
        ("x=1", "x_1"),
        ("a,b", "a_b"),
        ("é", "f_"),
        ("1abc", "f_1abc"),
        ("_x", "x"),
        ("_field", "field"),
        ("_measurement", "measurement"),
        ("", "f_"),
        ("temp-c", "temp_c"),
        ("temp.c", "temp_c"),
        ("température", "temp_rature"),
        ("a" * 65, "a" * 64),
        ("a\nb", "a_b"),
        ('q"', "q"),
        ("a\\b", "a_b"),
    ],
)
def test_bad_field_name(name: str, suggestion: str) -> None:
    assert sanitize_name(name) == suggestion
    assert problems_of(GENERIC, {name: 1.0}) == [Problem("bad_field_name", name, 1.0, {"suggestion": suggestion})]


@pytest.mark.parametrize("name", ["temp\n", "x\n"])
def test_bad_field_name_trailing_newline(name: str) -> None:
    problems = problems_of(GENERIC, {name: 1.0}, source=LINE)
    assert [(p.code, p.field) for p in problems] == [("bad_field_name", name)]


@pytest.mark.parametrize("name", ["cohort", "learner", "device", "time", "ts", "timestamp"])
def test_reserved_field_name(name: str) -> None:
    assert problems_of(GENERIC, {name: 1.0}, source=LINE) == [Problem("reserved_field_name", name, 1.0)]


@pytest.mark.parametrize(
    ("values", "source", "expected"),
    [
        (
            {"s": "x" * (MAX_STRING_LENGTH + 1)},
            JSON,
            Problem("string_too_long", "s", "x" * 257, {"size": 257, "limit": 256}),
        ),
        ({"s": "é" * 1000}, LINE, Problem("string_too_long", "s", "é" * 1000, {"size": 1000, "limit": 256})),
        ({"s": "a\nb"}, JSON, Problem("control_character", "s", "a\nb")),
        ({"s": "tab\there"}, JSON, Problem("control_character", "s", "tab\there")),
        ({"s": "\x00"}, JSON, Problem("control_character", "s", "\x00")),
        ({"s": "line\r"}, LINE, Problem("control_character", "s", "line\r")),
        ({"s": "\x1b[0m"}, JSON, Problem("control_character", "s", "\x1b[0m")),
        ({"s": "\x1f"}, JSON, Problem("control_character", "s", "\x1f")),
        ({"v": None}, JSON, Problem("wrong_type", "v", None, {"expected": "number, boolean or string", "got": "null"})),
        ({"v": [1]}, JSON, Problem("wrong_type", "v", [1], {"expected": "number, boolean or string", "got": "array"})),
        (
            {"v": {"a": 1}},
            JSON,
            Problem("wrong_type", "v", {"a": 1}, {"expected": "number, boolean or string", "got": "object"}),
        ),
        ({"n": 2**63}, JSON, Problem("integer_too_large", "n", 2**63)),
        ({"n": 2**63}, LINE, Problem("integer_too_large", "n", 2**63)),
        ({"n": -(2**63) - 1}, LINE, Problem("integer_too_large", "n", -(2**63) - 1)),
        ({"n": 10**30}, BARE, Problem("integer_too_large", "n", 10**30)),
    ],
)
def test_generic_field_problems(values: dict[str, object], source: Source, expected: Problem) -> None:
    assert problems_of(GENERIC, values, source=source) == [expected]


@pytest.mark.parametrize(
    ("pinned", "value", "source", "got"),
    [
        (FLT, 42, LINE, "integer"),
        (INT, 42, JSON, "float"),
        (INT, 4.2, LINE, "float"),
        (FLT, True, JSON, "boolean"),
        (BOOL, "on", JSON, "string"),
        (STR, False, LINE, "boolean"),
        (STR, 1.0, JSON, "float"),
    ],
)
def test_type_changed(pinned: FieldType, value: object, source: Source, got: str) -> None:
    assert problems_of(GENERIC, {"v": value}, source=source, pinned={"v": pinned}) == [
        Problem("type_changed", "v", value, {"pinned": pinned.value, "got": got})
    ]


@pytest.mark.parametrize(
    ("pinned", "value", "source"),
    [(FLT, 42, JSON), (FLT, 42, BARE), (FLT, 4.2, LINE), (INT, 42, LINE), (BOOL, True, JSON), (STR, "x", LINE)],
)
def test_type_pin_respected(pinned: FieldType, value: object, source: Source) -> None:
    reading = run(GENERIC, {"v": value, "other": 1.0}, source=source, pinned={"v": pinned, "unused": STR})
    assert reading.types == {"v": pinned, "other": FLT}


def test_pins_are_ignored_by_fixed_kinds() -> None:
    assert run(AIR_QUALITY, {"co2": 415}, pinned={"co2": INT}).fields == {"co2": 415.0}


# Reading-level problems ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [AIR_QUALITY, GENERIC], ids=["air_quality", "generic"])
def test_empty_reading(kind: DeviceKind) -> None:
    assert problems_of(kind, {}) == [Problem("empty_reading")]
    assert problems_of(kind, {}, ts="now") == [Problem("empty_reading"), Problem("timestamp_invalid", "ts", "now")]


@pytest.mark.parametrize("kind", [AIR_QUALITY, GENERIC], ids=["air_quality", "generic"])
def test_too_many_fields(kind: DeviceKind) -> None:
    values = {f"f{i}": 1.0 for i in range(MAX_FIELDS + 1)}
    assert problems_of(kind, values) == [
        Problem("too_many_fields", params={"size": MAX_FIELDS + 1, "limit": MAX_FIELDS})
    ]


def test_max_fields_is_accepted_for_generic() -> None:
    values = {f"f{i}": float(i) for i in range(MAX_FIELDS)}
    assert run(GENERIC, values).fields == values


def test_every_problem_of_an_air_quality_reading_is_reported() -> None:
    values = {"pm25": 3.0, "temperature": 200.0, "pm10": 5.0, "humidity": "50", "co2": True, "pressure": math.inf}
    problems = problems_of(AIR_QUALITY, values, ts=5000)
    assert [(p.code, p.field) for p in problems] == [
        ("unknown_field_suggest", "pm25"),
        ("out_of_range", "temperature"),
        ("number_as_string", "humidity"),
        ("wrong_type", "co2"),
        ("not_finite", "pressure"),
        ("timestamp_since_boot", "ts"),
    ]
    assert str(PayloadRejected(problems)) == (
        "unknown_field_suggest, out_of_range, number_as_string, wrong_type, not_finite, timestamp_since_boot"
    )


def test_every_problem_of_a_generic_reading_is_reported() -> None:
    values = {"a b": 1, "ok": 1.0, "ts": 2, "s": "x" * 300, "n": 2**64, "v": None, "c": "\n", "f": 1.5}
    problems = problems_of(GENERIC, values, ts=1_600_000_000, source=LINE, pinned={"f": INT})
    assert [(p.code, p.field) for p in problems] == [
        ("bad_field_name", "a b"),
        ("reserved_field_name", "ts"),
        ("string_too_long", "s"),
        ("integer_too_large", "n"),
        ("wrong_type", "v"),
        ("control_character", "c"),
        ("type_changed", "f"),
        ("timestamp_out_of_range", "ts"),
    ]


# Timestamps ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (NOW_S, (NOW_NS, "s")),
        (1_700_000_000_123, (1_700_000_000_123_000_000, "ms")),
        (1_700_000_000_123_456, (1_700_000_000_123_456_000, "us")),
        (1_700_000_000_123_456_789, (1_700_000_000_123_456_789, "ns")),
        (1_700_000_000.5, (1_700_000_000_500_000_000, "s")),
        (1_700_000_000_123.0, (1_700_000_000_123_000_000, "ms")),
        (1_700_000_000.25, (1_700_000_000_250_000_000, "s")),
        (1_700_000_000.123456, (1_700_000_000_123_456_000, "s")),
        (1_700_000_000_123.5, (1_700_000_000_123_500_000, "ms")),
        (1_700_000_000_123_456.0, (1_700_000_000_123_456_000, "us")),
        (1.5e18, (1_500_000_000_000_000_000, "ns")),
        (0, (0, "s")),
        (1, (10**9, "s")),
        (-1, (-(10**9), "s")),
        (99_999_999_999, (99_999_999_999 * 10**9, "s")),
        (100_000_000_000, (100_000_000_000 * 10**6, "ms")),
        (10**14 - 1, ((10**14 - 1) * 10**6, "ms")),
        (10**14, (10**17, "us")),
        (10**17 - 1, ((10**17 - 1) * 1000, "us")),
        (10**17, (10**17, "ns")),
        (-(10**17), (-(10**17), "ns")),
        (2**64, (2**64, "ns")),
    ],
)
def test_timestamp_to_ns(raw: int | float, expected: tuple[int, str]) -> None:
    ns, unit = timestamp_to_ns(raw)
    assert (ns, unit) == expected
    assert type(ns) is int


PAST_LIMIT_S = NOW_S - 30 * 86400
FUTURE_LIMIT_S = NOW_S + 10 * 60


@pytest.mark.parametrize(
    ("ts", "expected_ns"),
    [
        (NOW_S, NOW_NS),
        (NOW_S * 1000 + 123, NOW_NS + 123_000_000),
        (NOW_S * 10**6 + 7, NOW_NS + 7000),
        (NOW_NS + 1, NOW_NS + 1),
        (float(NOW_S) + 0.25, NOW_NS + 250_000_000),
        (PAST_LIMIT_S, PAST_LIMIT_S * 10**9),
        (FUTURE_LIMIT_S, FUTURE_LIMIT_S * 10**9),
        (NOW_NS + DEFAULT_LIMITS.future_ns, NOW_NS + DEFAULT_LIMITS.future_ns),
        (NOW_NS - DEFAULT_LIMITS.past_ns, NOW_NS - DEFAULT_LIMITS.past_ns),
    ],
)
@pytest.mark.parametrize("kind", [AIR_QUALITY, GENERIC], ids=["air_quality", "generic"])
def test_timestamp_accepted(kind: DeviceKind, ts: int | float, expected_ns: int) -> None:
    reading = run(kind, {"temperature": 21.5}, ts=ts)
    assert reading.timestamp_ns == expected_ns
    assert type(reading.timestamp_ns) is int


def test_default_limits() -> None:
    assert DEFAULT_LIMITS == Limits(past_ns=30 * 86400 * 10**9, future_ns=10 * 60 * 10**9)


def ts_problem(code: str, raw: object, unit: str, as_date: str) -> Problem:
    return Problem(code, "ts", raw, {"unit": unit, "as_date": as_date, "now": NOW_ISO})


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (0, ts_problem("timestamp_since_boot", 0, "s", "1970-01-01T00:00:00+00:00")),
        (5000, ts_problem("timestamp_since_boot", 5000, "s", "1970-01-01T01:23:20+00:00")),
        (5000.5, ts_problem("timestamp_since_boot", 5000.5, "s", "1970-01-01T01:23:20+00:00")),
        (999_999_999, ts_problem("timestamp_since_boot", 999_999_999, "s", "2001-09-09T01:46:39+00:00")),
        (1_000_000_000, ts_problem("timestamp_out_of_range", 1_000_000_000, "s", "2001-09-09T01:46:40+00:00")),
        (1_600_000_000, ts_problem("timestamp_out_of_range", 1_600_000_000, "s", "2020-09-13T12:26:40+00:00")),
        (
            PAST_LIMIT_S - 1,
            ts_problem("timestamp_out_of_range", PAST_LIMIT_S - 1, "s", "2023-10-15T22:13:19+00:00"),
        ),
        (
            FUTURE_LIMIT_S + 1,
            ts_problem("timestamp_out_of_range", FUTURE_LIMIT_S + 1, "s", "2023-11-14T22:23:21+00:00"),
        ),
        (
            NOW_NS + DEFAULT_LIMITS.future_ns + 1,
            ts_problem(
                "timestamp_out_of_range", NOW_NS + DEFAULT_LIMITS.future_ns + 1, "ns", "2023-11-14T22:23:20+00:00"
            ),
        ),
        (
            1_600_000_000_000,
            ts_problem("timestamp_out_of_range", 1_600_000_000_000, "ms", "2020-09-13T12:26:40+00:00"),
        ),
        (
            1_600_000_000_000_000,
            ts_problem("timestamp_out_of_range", 1_600_000_000_000_000, "us", "2020-09-13T12:26:40+00:00"),
        ),
        (-5, ts_problem("timestamp_out_of_range", -5, "s", "1969-12-31T23:59:55+00:00")),
        (10**30, ts_problem("timestamp_out_of_range", 10**30, "ns", "out of calendar")),
        (10**400, ts_problem("timestamp_out_of_range", 10**400, "ns", "out of calendar")),
        (1e300, ts_problem("timestamp_out_of_range", 1e300, "ns", "out of calendar")),
        ("1700000000", Problem("timestamp_invalid", "ts", "1700000000")),
        (True, Problem("timestamp_invalid", "ts", True)),
        (False, Problem("timestamp_invalid", "ts", False)),
        ([NOW_S], Problem("timestamp_invalid", "ts", [NOW_S])),
        ({"s": NOW_S}, Problem("timestamp_invalid", "ts", {"s": NOW_S})),
        (math.inf, Problem("timestamp_invalid", "ts", math.inf)),
        (-math.inf, Problem("timestamp_invalid", "ts", -math.inf)),
    ],
)
@pytest.mark.parametrize("kind", [AIR_QUALITY, GENERIC], ids=["air_quality", "generic"])
def test_timestamp_problems(kind: DeviceKind, ts: object, expected: Problem) -> None:
    assert problems_of(kind, {"temperature": 21.5}, ts=ts) == [expected]


def test_nan_timestamp_is_invalid() -> None:
    [problem] = problems_of(GENERIC, {"x": 1.0}, ts=math.nan)
    assert (problem.code, problem.field, dict(problem.params)) == ("timestamp_invalid", "ts", {})
    assert isinstance(problem.value, float)
    assert math.isnan(problem.value)


def test_custom_limits() -> None:
    exact = Limits(past_ns=0, future_ns=0)
    assert run(GENERIC, {"x": 1.0}, ts=NOW_NS, limits=exact).timestamp_ns == NOW_NS
    assert problems_of(GENERIC, {"x": 1.0}, ts=NOW_NS - 10**9, limits=exact) == [
        ts_problem("timestamp_out_of_range", NOW_NS - 10**9, "ns", "2023-11-14T22:13:19+00:00")
    ]
    assert [p.code for p in problems_of(GENERIC, {"x": 1.0}, ts=NOW_NS + 1, limits=exact)] == ["timestamp_out_of_range"]


# The open kinds' hot path: a reading whose every field this device already stored as a float ---------------

KNOWN = {"seq": FLT, "temperature": FLT, "count": INT, "label": STR}


def run_known(values: Mapping[str, object], ts: object = None, source: Source = JSON) -> Reading:
    """As a device that already stored `KNOWN`'s fields (pinned with those types, names used before)."""
    return validate(GENERIC, Decoded(dict(values), ts, source), NOW_NS, KNOWN, DEFAULT_LIMITS, set(KNOWN))


@pytest.mark.parametrize(
    ("values", "ts", "fields", "ts_ns"),
    [
        ({"seq": 7, "temperature": 21.5}, None, {"seq": 7.0, "temperature": 21.5}, None),
        (
            {"seq": -(2**63), "temperature": 2**63 - 1},
            None,
            {"seq": float(-(2**63)), "temperature": float(2**63 - 1)},
            None,
        ),
        ({"temperature": -1e308}, NOW_S * 1000 + 5, {"temperature": -1e308}, NOW_NS + 5_000_000),
        ({"seq": 0}, NOW_S, {"seq": 0.0}, NOW_NS),
    ],
)
def test_known_float_fields_need_no_new_types(
    values: dict[str, object], ts: object, fields: dict[str, object], ts_ns: int | None
) -> None:
    """Nothing new to pin: `types` is empty, every value a float (so the line needs no type dispatch)."""
    reading = run_known(values, ts)
    assert typed(reading.fields) == typed(fields)
    assert reading.types == {}
    assert reading.timestamp_ns == ts_ns


@pytest.mark.parametrize(
    ("values", "source", "types"),
    [
        ({"seq": 1.0, "new": 2.0}, JSON, {"seq": FLT, "new": FLT}),  # a new name
        ({"count": 3}, LINE, {"count": INT}),  # an integer field
        ({"label": "x"}, JSON, {"label": STR}),
        ({"seq": 1.0}, LINE, {"seq": FLT}),  # not JSON
    ],
)
def test_anything_new_or_not_a_json_float_keeps_its_types(
    values: dict[str, object], source: Source, types: dict[str, FieldType]
) -> None:
    assert run_known(values, source=source).types == types


@pytest.mark.parametrize(
    ("values", "ts", "expected"),
    [
        ({"seq": math.nan}, None, Problem("not_finite", "seq", math.nan)),
        ({"seq": math.inf}, None, Problem("not_finite", "seq", math.inf)),
        ({"seq": -math.inf}, None, Problem("not_finite", "seq", -math.inf)),
        ({"seq": True}, None, Problem("type_changed", "seq", True, {"pinned": "float", "got": "boolean"})),
        ({"seq": 2**63}, None, Problem("integer_too_large", "seq", 2**63)),
        ({"seq": -(2**63) - 1}, None, Problem("integer_too_large", "seq", -(2**63) - 1)),
        ({"count": 1.5}, None, Problem("type_changed", "count", 1.5, {"pinned": "integer", "got": "float"})),
        (
            {"seq": 1.0},
            5,
            Problem(
                "timestamp_since_boot", "ts", 5, {"unit": "s", "as_date": "1970-01-01T00:00:05+00:00", "now": NOW_ISO}
            ),
        ),
    ],
)
def test_known_fields_are_still_checked(values: dict[str, object], ts: object, expected: Problem) -> None:
    with pytest.raises(PayloadRejected) as info:
        run_known(values, ts)
    assert [str(p) for p in info.value.problems] == [str(expected)]


def test_a_pinned_name_this_device_never_used_is_new_to_it() -> None:
    """Pins may come from InfluxDB (the measurement's types); the device's own names count its distinct fields."""
    reading = validate(GENERIC, Decoded({"seq": 1.0}, None, JSON), NOW_NS, KNOWN, DEFAULT_LIMITS, set())
    assert reading.types == {"seq": FLT}
