"""More decode and validate tables (devices.decode, devices.validate, pure), comparing whole problems.

Cases the README's topic contract names: text that is not Unicode is refused at the edge (`invalid_unicode`),
line-protocol escapes (backslash before a comma, space or equals sign), a generic device's cap of 64 distinct
field names over its life, int64 bounds, control characters (below 0x20 and DEL). Written for issue 12's
mutation testing.
"""

from __future__ import annotations

import math

import pytest

from devices.decode import Decoded, Source, decode_payload
from devices.kinds import AIR_QUALITY, GENERIC
from devices.problems import PayloadRejected, Problem
from devices.validate import sanitize_name, suggest_field, validate

NOW = 1_700_000_000 * 10**9


def problems(payload: bytes, field: str | None = None) -> list[Problem]:
    with pytest.raises(PayloadRejected) as err:
        decode_payload(payload, field, 16384)
    return err.value.problems


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b'{"a": "\\ud800"}', "a"),
        (b'{"\\udc80": 1}', "\udc80"),  # the key as sent
        (b'{"ok": 1, "b": ["x", "\\udc80"]}', "b"),
        (b'{"ok": 1, "c": {"d": "\\ud800"}}', "c"),
    ],
)
def test_lone_surrogates_are_refused_with_the_field(payload: bytes, field: str) -> None:
    [problem] = problems(payload)
    assert (problem.code, problem.value, dict(problem.params)) == ("invalid_unicode", None, {})
    assert problem.field == field


def test_a_valid_escaped_pair_is_text() -> None:
    [decoded] = decode_payload(b'{"t": "\\ud83d\\ude00"}', None, 16384)
    assert decoded == Decoded({"t": "😀"}, None, Source.JSON)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b'{"a": "x:y", b: 1}', "json_unquoted_key"),
        (b'{"a": "b, c: d"} x', "invalid_json"),  # a colon inside a string is not a key
        (b'{"a": "q\\" , c: d"} x', "invalid_json"),  # an escaped quote does not end the string
        (b'{"a": "q\\\\", c: 1}', "json_unquoted_key"),  # an escaped backslash does: c is a bare key
        (b'{"s": "unterminated, k: 1', "invalid_json"),  # the rest of an unterminated string is blanked
        (b'{k: "v"}', "json_unquoted_key"),
        (b'{"x": 1,}', "json_trailing_comma"),
        (b"{'x': 1}", "json_single_quotes"),
        (b'"x,a:', "invalid_json"),  # a string from the first character on is blanked too
        (b'{"x,b:"}', "invalid_json"),  # a quote right after the brace starts a string
        (b'{"a""b,c:"}', "invalid_json"),  # a string right after another
        (b'{"ab",c:1}', "json_unquoted_key"),  # the text right after a string is read again
        (b'{"",b:1}', "json_unquoted_key"),  # an empty string ends at its second quote
    ],
)
def test_json_diagnosis_reads_around_strings(payload: bytes, code: str) -> None:
    [problem] = problems(payload)
    assert problem.code == code


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"m \\=a=1", Decoded({"=a": 1.0}, None, Source.LINE)),
        (b"m a\\b=1", Decoded({"ab": 1.0}, None, Source.LINE)),
        (b"m a\\,b=1,c=2", Decoded({"a,b": 1.0, "c": 2.0}, None, Source.LINE)),
        (b'm s="a b,c=d"', Decoded({"s": "a b,c=d"}, None, Source.LINE)),
        (b'm s="q\\"x"', Decoded({"s": 'q"x'}, None, Source.LINE)),
        (b'm s="b\\\\"', Decoded({"s": "b\\"}, None, Source.LINE)),
        (b"m i=-42i,u=7u,t=T,f=false", Decoded({"i": -42, "u": 7, "t": True, "f": False}, None, Source.LINE)),
    ],
)
def test_line_protocol_escapes(line: bytes, expected: Decoded) -> None:
    assert decode_payload(line, None, 16384) == [expected]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"m f=1 1\\", Problem("timestamp_invalid", None, "1\\")),
        (
            b"m f=1,g=2\\,",
            Problem("invalid_line_protocol", None, "m f=1,g=2\\,", {"detail": "cannot read value '2\\\\,'"}),
        ),
        (b'm f=5"x"', Problem("invalid_line_protocol", None, 'm f=5"x"', {"detail": "cannot read value '5\"x\"'"})),
        (b'm f="5', Problem("invalid_line_protocol", None, 'm f="5', {"detail": "unterminated string"})),
        (b"m =1", Problem("invalid_line_protocol", None, "m =1", {"detail": "field '=1' is not name=value"})),
        (b"m f=", Problem("invalid_line_protocol", None, "m f=", {"detail": "field 'f=' is not name=value"})),
        (b"m f,g=1", Problem("invalid_line_protocol", None, "m f,g=1", {"detail": "field 'f' is not name=value"})),
        (b"m f=1,f=2", Problem("duplicate_field", "f", "m f=1,f=2")),
        (b"m f=X12i", Problem("invalid_line_protocol", None, "m f=X12i", {"detail": "cannot read value 'X12i'"})),
    ],
)
def test_line_protocol_problems_whole(line: bytes, expected: Problem) -> None:
    assert problems(line) == [expected]


def test_an_integer_beyond_pythons_digit_limit_is_refused_with_its_text() -> None:
    raw = "1" * 5000 + "i"
    [problem] = problems(f"m f={raw}".encode())
    assert problem == Problem("number_too_long", None, raw)


# Validation -----------------------------------------------------------------------------------------------------


def refused(
    kind: object, values: dict[str, object], names: tuple[str, ...] = (), source: Source = Source.JSON
) -> list[Problem]:
    with pytest.raises(PayloadRejected) as err:
        validate(kind, Decoded(values, None, source), NOW, {}, names=names)  # type: ignore[arg-type]
    return err.value.problems


def test_distinct_field_names_are_capped_at_64_per_device() -> None:
    used = tuple(f"f{i}" for i in range(63))
    # one more name fits; the second new one is the first over the cap
    assert refused(GENERIC, {"f0": 1.0, "a": 2.0, "b": 3.0}, used) == [
        Problem("too_many_distinct_fields", "b", 3.0, {"limit": 64})
    ]
    reading = validate(GENERIC, Decoded({"f0": 1.0, "a": 2.0}, None, Source.JSON), NOW, {}, names=used)
    assert reading.fields == {"f0": 1.0, "a": 2.0}
    full = tuple(f"f{i}" for i in range(64))
    assert refused(GENERIC, {"x": 1.0, "y": 2.0}, full) == [
        Problem("too_many_distinct_fields", "x", 1.0, {"limit": 64})
    ]
    # names used before do not count again
    assert validate(GENERIC, Decoded({"f1": 1.0, "f63": 2.0}, None, Source.JSON), NOW, {}, names=full).fields == {
        "f1": 1.0,
        "f63": 2.0,
    }
    over = tuple(f"f{i}" for i in range(70))  # a device already past the cap (e.g. the cap was lowered)
    assert refused(GENERIC, {"z": True}, over) == [Problem("too_many_distinct_fields", "z", True, {"limit": 64})]


def test_int64_bounds_are_inclusive() -> None:
    assert refused(AIR_QUALITY, {"temperature": -(2**63)}) == [
        Problem(
            "out_of_range",
            "temperature",
            -(2**63),
            {"minimum": "-40", "maximum": "85", "unit": "°C", "sensor": "BME280: -40–85 °C"},
        )
    ]
    assert refused(AIR_QUALITY, {"temperature": -(2**63) - 1}) == [
        Problem("integer_too_large", "temperature", -(2**63) - 1)
    ]
    reading = validate(GENERIC, Decoded({"n": -(2**63), "m": 2**63 - 1}, None, Source.LINE), NOW, {})
    assert reading.fields == {"n": -(2**63), "m": 2**63 - 1}


@pytest.mark.parametrize(("text", "ok"), [("a\x7fb", False), ("a\x1fb", False), ("a\x80b", True), ("a b~", True)])
def test_control_characters_are_below_space_and_del(text: str, ok: bool) -> None:
    if ok:
        assert validate(GENERIC, Decoded({"s": text}, None, Source.JSON), NOW, {}).fields == {"s": text}
    else:
        assert refused(GENERIC, {"s": text}) == [Problem("control_character", "s", text)]


def test_a_separated_spelling_is_recognised_before_a_close_one() -> None:
    assert suggest_field("h__u__m__i__d__i__t__y", AIR_QUALITY) == "humidity"
    assert suggest_field("P.M.1.0", AIR_QUALITY) == "pm10"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Xtemp_X", "Xtemp_X"),  # only underscores are trimmed from the ends
        ("__temp__", "temp"),
        ("temp C", "temp_C"),
        ("1st", "f_1st"),
    ],
)
def test_a_field_name_is_sanitized_whole(name: str, expected: str) -> None:
    assert sanitize_name(name) == expected


def test_an_unbounded_range_is_shown_with_the_sign_of_its_infinity() -> None:
    from devices.validate import _fmt

    assert (_fmt(-math.inf), _fmt(math.inf), _fmt(-40.0)) == ("−∞", "∞", "-40")
