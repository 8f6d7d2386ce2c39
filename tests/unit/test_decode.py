"""Unit tests for devices.decode: JSON (fast and slow paths), line protocol and bare values."""

from __future__ import annotations

import math

import pytest

from devices.decode import MAX_LINES, Decoded, Source, decode_payload
from devices.problems import PayloadRejected, Problem

LIMIT = 16384
BIG = 1_000_000  # payload limit for the deep-nesting cases


def decode(payload: bytes, field: str | None = None, max_bytes: int = LIMIT) -> list[Decoded]:
    return decode_payload(payload, field, max_bytes)


def rejection(payload: bytes, field: str | None = None, max_bytes: int = LIMIT) -> list[Problem]:
    with pytest.raises(PayloadRejected) as info:
        decode_payload(payload, field, max_bytes)
    return info.value.problems


def json_reading(values: dict[str, object], ts: object = None) -> list[Decoded]:
    return [Decoded(values, ts, Source.JSON)]


def lp_reading(values: dict[str, object], ts: int | None = None) -> Decoded:
    return Decoded(values, ts, Source.LINE)


def typed(values: dict[str, object]) -> dict[str, tuple[str, object]]:
    """Values with their Python type, so 21 and 21.0 (or 1 and True) are told apart."""
    return {k: (type(v).__name__, v) for k, v in values.items()}


# JSON ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"temperature": 21.5}', json_reading({"temperature": 21.5})),
        (b'{"a": 1, "b": -2.5, "c": true, "d": "x"}', json_reading({"a": 1, "b": -2.5, "c": True, "d": "x"})),
        (b'{"a": null, "b": [1, 2], "c": {"d": 1}}', json_reading({"a": None, "b": [1, 2], "c": {"d": 1}})),
        (b"{}", json_reading({})),
        (b'{"ts": 1700000000, "a": 1}', json_reading({"a": 1}, 1700000000)),
        (b'{"time": 1700000000123, "a": 1}', json_reading({"a": 1}, 1700000000123)),
        (b'{"timestamp": 1700000000.5, "a": 1}', json_reading({"a": 1}, 1700000000.5)),
        (b'{"ts": "yesterday"}', json_reading({}, "yesterday")),
        (b'{"ts": null, "a": 1}', json_reading({"a": 1}, None)),
        (b'{"a": 1, "a": 2}', json_reading({"a": 2})),
        (b'{"name": "caf\xc3\xa9"}', json_reading({"name": "café"})),
        (b'{"name": "caf\\u00e9"}', json_reading({"name": "café"})),
        # slow path (leading whitespace, or a value the fast path hands over)
        (b'  {"temperature": 21.5}\n', json_reading({"temperature": 21.5})),
        (b'\t{"ts": 1700000000, "a": 1}', json_reading({"a": 1}, 1700000000)),
        (b'{"a": 1e400}', json_reading({"a": math.inf})),
    ],
)
def test_json_decodes(payload: bytes, expected: list[Decoded]) -> None:
    result = decode(payload)
    assert result == expected
    assert [typed(d.values) for d in result] == [typed(d.values) for d in expected]


@pytest.mark.parametrize(
    "payload",
    [
        b'{"a": 1, "b": 2.5, "c": false, "d": "x", "ts": 1700000000}',
        b'{"a": 9223372036854775807, "b": -9223372036854775808}',
        b'{"a": 1e19, "b": -1e19, "c": 1.5e-300}',
        b'{"a": [1, {"b": 2}], "time": 1.5}',
    ],
)
def test_json_fast_and_slow_paths_agree(payload: bytes) -> None:
    fast = decode(payload)
    slow = decode(b" " + payload)  # leading whitespace skips the fast path
    assert fast == slow
    assert [typed(d.values) for d in fast] == [typed(d.values) for d in slow]
    assert [type(d.timestamp) for d in fast] == [type(d.timestamp) for d in slow]


@pytest.mark.parametrize(
    ("payload", "name", "check"),
    [
        (b'{"a": NaN}', "a", math.isnan),
        (b'{"a": Infinity}', "a", lambda v: v == math.inf),
        (b'{"a": -Infinity}', "a", lambda v: v == -math.inf),
        (b'{"a": 1, "b": NaN, "ts": 1700000000}', "b", math.isnan),
    ],
)
def test_json_non_finite_numbers_are_decoded(payload: bytes, name: str, check: object) -> None:
    [decoded] = decode(payload)
    assert decoded.source is Source.JSON
    value = decoded.values[name]
    assert type(value) is float
    assert check(value)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("payload", "name", "expected"),
    [
        (b'{"a": 9223372036854775807}', "a", 2**63 - 1),
        (b'{"a": -9223372036854775808}', "a", -(2**63)),
        (b'{"a": 9223372036854775808}', "a", 2**63),
        (b'{"a": 18446744073709551615}', "a", 2**64 - 1),
        (b'{"a": 18446744073709551616}', "a", 2**64),
        (b'{"a": -9223372036854775809}', "a", -(2**63) - 1),
        (b'{"a": 123456789012345678901234567890}', "a", 123456789012345678901234567890),
        (b'{"a": -123456789012345678901234567890}', "a", -123456789012345678901234567890),
        (b'{"b": 1.5, "a": 100000000000000000000}', "a", 10**20),
    ],
)
def test_json_integers_beyond_int64_stay_exact(payload: bytes, name: str, expected: int) -> None:
    [decoded] = decode(payload)
    value = decoded.values[name]
    assert type(value) is int
    assert value == expected


def test_json_timestamp_beyond_int64_stays_exact() -> None:
    assert decode(b'{"ts": 18446744073709551616, "a": 1}') == json_reading({"a": 1}, 2**64)
    assert type(decode(b'{"ts": 18446744073709551616, "a": 1}')[0].timestamp) is int


def test_json_nested_integers_beyond_int64_stay_exact() -> None:
    [decoded] = decode(b'{"a": [18446744073709551616], "b": {"c": -9223372036854775809}}')
    assert typed(decoded.values) == typed({"a": [2**64], "b": {"c": -(2**63) - 1}})
    assert type(decoded.values["a"][0]) is int  # type: ignore[index]
    assert type(decoded.values["b"]["c"]) is int  # type: ignore[index]


DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_IN_OBJECT = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
DEEP_OBJECTS = b'{"a": ' * 50_000 + b"1" + b"}" * 50_000
HUGE_DIGITS = "7" * 5000
HUGE_INT_JSON = '{"a": ' + HUGE_DIGITS + "}"


@pytest.mark.parametrize(
    ("payload", "field", "max_bytes", "expected"),
    [
        # size and emptiness
        (b'{"a": 1}', None, 7, [Problem("payload_too_large", params={"size": 8, "limit": 7})]),
        (b"x" * 11, None, 10, [Problem("payload_too_large", params={"size": 11, "limit": 10})]),
        (b"21.5", "temperature", 3, [Problem("payload_too_large", params={"size": 4, "limit": 3})]),
        (b"", None, LIMIT, [Problem("empty_payload")]),
        (b"  \r\n\t ", None, LIMIT, [Problem("empty_payload")]),
        (b"", "temperature", LIMIT, [Problem("empty_payload")]),
        (b" \n", "temperature", LIMIT, [Problem("empty_payload")]),
        # bad UTF-8: the value is the bytes around the bad one
        (b'{"a": "\xff"}', None, LIMIT, [Problem("bad_utf8", None, b'{"a": "\xff"}', {"offset": 7})]),
        (
            b'{"name": "abcdefghij\xffklmnopqrstuvwxyz"}',
            None,
            LIMIT,
            [Problem("bad_utf8", None, b"cdefghij\xffklmnopq", {"offset": 20})],
        ),
        (b"\xfe\xff", "temperature", LIMIT, [Problem("bad_utf8", None, b"\xfe\xff", {"offset": 0})]),
        (b"m a=\xc3", None, LIMIT, [Problem("bad_utf8", None, b"m a=\xc3", {"offset": 4})]),
        # the beginner's JSON mistakes
        (
            b"{temperature: 21.5}",
            None,
            LIMIT,
            [Problem("json_unquoted_key", None, "{temperature: 21.5}", {"position": 1})],
        ),
        (
            b'{"a": 1, pm2.5: 3}',
            None,
            LIMIT,
            [Problem("json_unquoted_key", None, '{"a": 1, pm2.5: 3}', {"position": 9})],
        ),
        (
            b'{"note": "x, y: z", temp: 1}',
            None,
            LIMIT,
            [Problem("json_unquoted_key", None, '{"note": "x, y: z", temp: 1}', {"position": 20})],
        ),
        (
            b"{'temperature': 21.5}",
            None,
            LIMIT,
            [Problem("json_single_quotes", None, "{'temperature': 21.5}", {"position": 1})],
        ),
        (
            b"{\"a\": 1, 'b': 2}",
            None,
            LIMIT,
            [Problem("json_single_quotes", None, "{\"a\": 1, 'b': 2}", {"position": 9})],
        ),
        (b'{"a": 1,}', None, LIMIT, [Problem("json_trailing_comma", None, '{"a": 1,}', {"position": 8})]),
        (
            b'{"a": [1, 2,]}',
            None,
            LIMIT,
            [Problem("json_trailing_comma", None, '{"a": [1, 2,]}', {"position": 12})],
        ),
        (
            b'{"msg": "a, b: c",}',
            None,
            LIMIT,
            [Problem("json_trailing_comma", None, '{"msg": "a, b: c",}', {"position": 18})],
        ),
        # anything else is reported with the parser's position
        (
            b'{"a": }',
            None,
            LIMIT,
            [
                Problem(
                    "invalid_json",
                    None,
                    '{"a": }',
                    {"position": 6, "detail": "Expecting value", "line": 1, "column": 7},
                )
            ],
        ),
        (
            b'{"a" 1}',
            None,
            LIMIT,
            [
                Problem(
                    "invalid_json",
                    None,
                    '{"a" 1}',
                    {"position": 5, "detail": "Expecting ':' delimiter", "line": 1, "column": 6},
                )
            ],
        ),
        (
            b'{\n"a": 1\n"b": 2}',
            None,
            LIMIT,
            [
                Problem(
                    "invalid_json",
                    None,
                    '{\n"a": 1\n"b": 2}',
                    {"position": 9, "detail": "Expecting ',' delimiter", "line": 3, "column": 1},
                )
            ],
        ),
        (
            # a ':' inside a string is not mistaken for an unquoted key
            b'{"a": "b, c: d" "e"}',
            None,
            LIMIT,
            [
                Problem(
                    "invalid_json",
                    None,
                    '{"a": "b, c: d" "e"}',
                    {"position": 16, "detail": "Expecting ',' delimiter", "line": 1, "column": 17},
                )
            ],
        ),
        (
            b'{"a": 1} x',
            None,
            LIMIT,
            [
                Problem(
                    "invalid_json",
                    None,
                    '{"a": 1} x',
                    {"position": 9, "detail": "Extra data", "line": 1, "column": 10},
                )
            ],
        ),
        # nesting and huge numbers
        (DEEP_ARRAY, None, BIG, [Problem("json_too_deep")]),
        (DEEP_IN_OBJECT, None, BIG, [Problem("json_too_deep")]),
        (DEEP_OBJECTS, None, BIG, [Problem("json_too_deep")]),
        (
            HUGE_INT_JSON.encode(),
            None,
            LIMIT,
            [Problem("number_too_long", None, HUGE_INT_JSON)],
        ),
        # two timestamps
        (b'{"ts": 1, "time": 2, "a": 1}', None, LIMIT, [Problem("two_timestamps", None, "time")]),
        (b'{"time": 1, "timestamp": 2, "a": 1}', None, LIMIT, [Problem("two_timestamps", None, "timestamp")]),
        (b'{"timestamp": 1, "ts": 2}', None, LIMIT, [Problem("two_timestamps", None, "timestamp")]),
        # neither JSON, line protocol nor a bare value with its field
        (b"21.5", None, LIMIT, [Problem("bare_value_needs_field", None, "21.5")]),
        (b" -3 \n", None, LIMIT, [Problem("bare_value_needs_field", None, "-3")]),
        (b"1e3", None, LIMIT, [Problem("bare_value_needs_field", None, "1e3")]),
        (b"nan", None, LIMIT, [Problem("bare_value_needs_field", None, "nan")]),
        (b"hello", None, LIMIT, [Problem("unrecognised_payload", None, "hello")]),
        (b"21,5", None, LIMIT, [Problem("unrecognised_payload", None, "21,5")]),
        (b"true", None, LIMIT, [Problem("unrecognised_payload", None, "true")]),
        (b"null", None, LIMIT, [Problem("unrecognised_payload", None, "null")]),
    ],
)
def test_decode_rejects(payload: bytes, field: str | None, max_bytes: int, expected: list[Problem]) -> None:
    assert rejection(payload, field, max_bytes) == expected


def test_payload_at_the_limit_is_accepted() -> None:
    payload = b'{"a": 1}'
    assert decode(payload, max_bytes=len(payload)) == json_reading({"a": 1})


def test_rejection_message_lists_codes() -> None:
    with pytest.raises(PayloadRejected, match=r"^json_unquoted_key$"):
        decode(b"{a: 1}")


@pytest.mark.parametrize(("payload", "value"), [(b"[1, 2]", "[1, 2]"), (b'"hi"', '"hi"'), (b" [] ", "[]")])
def test_not_an_object(payload: bytes, value: str) -> None:
    [problem] = rejection(payload)
    assert (problem.code, problem.field, problem.value, sorted(problem.params)) == (
        "not_an_object",
        None,
        value,
        ["got"],
    )


@pytest.mark.parametrize(("payload", "got"), [(b"[1, 2]", "array"), (b'"hi"', "string")])
def test_not_an_object_names_the_json_type(payload: bytes, got: str) -> None:
    [problem] = rejection(payload)
    assert problem.params == {"got": got}


# Line protocol ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"m a=1", [lp_reading({"a": 1.0})]),
        (b"m a=1.5 1700000000000000000", [lp_reading({"a": 1.5}, 1700000000000000000)]),
        (
            b"air_quality,cohort=c1,device=esp32 temperature=21.5,humidity=40 1700000000",
            [lp_reading({"temperature": 21.5, "humidity": 40.0}, 1700000000)],
        ),
        (b"m a=42i,b=-7i,c=5u,d=+3i", [lp_reading({"a": 42, "b": -7, "c": 5, "d": 3})]),
        (
            b"m a=9223372036854775807i,b=-9223372036854775808i",
            [lp_reading({"a": 2**63 - 1, "b": -(2**63)})],
        ),
        (b"m a=99999999999999999999i", [lp_reading({"a": 99999999999999999999})]),
        (
            b"m a=t,b=T,c=true,d=True,e=TRUE",
            [lp_reading({"a": True, "b": True, "c": True, "d": True, "e": True})],
        ),
        (
            b"m a=f,b=F,c=false,d=False,e=FALSE",
            [lp_reading({"a": False, "b": False, "c": False, "d": False, "e": False})],
        ),
        (b"m a=-1.5e3,b=.5,c=1E-2", [lp_reading({"a": -1500.0, "b": 0.5, "c": 0.01})]),
        (b'm msg="hello, world x=1"', [lp_reading({"msg": "hello, world x=1"})]),
        (b'm msg="two  spaces",n=1i 5', [lp_reading({"msg": "two  spaces", "n": 1}, 5)]),
        (b'm s="",t="x"', [lp_reading({"s": "", "t": "x"})]),
        (b'm s="say \\"hi\\""', [lp_reading({"s": 'say "hi"'})]),
        (b'm s="C:\\\\dir\\\\"', [lp_reading({"s": "C:\\dir\\"})]),
        (b'm s="caf\xc3\xa9"', [lp_reading({"s": "café"})]),
        (b"m a\\ b=1,c\\,d=2,e\\=f=3", [lp_reading({"a b": 1.0, "c,d": 2.0, "e=f": 3.0})]),
        (b"my\\ m,tag=a\\ b\\,c x=1", [lp_reading({"x": 1.0})]),
        (b"  m   a=1   7  ", [lp_reading({"a": 1.0}, 7)]),
        (b"m a=1 -5", [lp_reading({"a": 1.0}, -5)]),
        (
            b"m a=1 1\nm a=2 2\n# a comment\n\n  # indented comment\nm a=3 3\n",
            [lp_reading({"a": 1.0}, 1), lp_reading({"a": 2.0}, 2), lp_reading({"a": 3.0}, 3)],
        ),
        (b"m a=1\r\nm b=2i\r\n", [lp_reading({"a": 1.0}), lp_reading({"b": 2})]),
    ],
)
def test_line_protocol_decodes(payload: bytes, expected: list[Decoded]) -> None:
    result = decode(payload)
    assert result == expected
    assert [typed(d.values) for d in result] == [typed(d.values) for d in expected]


def line_problem(line: str, detail: str) -> list[Problem]:
    return [Problem("invalid_line_protocol", None, line, {"detail": detail})]


SHAPE = "expected 'measurement field=value [timestamp]'"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"a=1", line_problem("a=1", SHAPE)),
        (b"m a=1 2 3", line_problem("m a=1 2 3", SHAPE)),
        (b"m a=1 b=2", [Problem("timestamp_invalid", None, "b=2")]),
        (b"m a=", line_problem("m a=", "field 'a=' is not name=value")),
        (b"m =1", line_problem("m =1", "field '=1' is not name=value")),
        (b"m a=1,b", line_problem("m a=1,b", "field 'b' is not name=value")),
        (b"m a=1,,b=2", line_problem("m a=1,,b=2", "field '' is not name=value")),
        (b"m a=abc", line_problem("m a=abc", "cannot read value 'abc'")),
        (b"m a=1.2.3", line_problem("m a=1.2.3", "cannot read value '1.2.3'")),
        (b"m a=1.5i", line_problem("m a=1.5i", "cannot read value '1.5i'")),
        (b"m a=yes", line_problem("m a=yes", "cannot read value 'yes'")),
        (b'm a="x', line_problem('m a="x', "unterminated string")),
        (b'm a="x y', line_problem('m a="x y', "unterminated string")),
        (b"m a=1,a=2", [Problem("duplicate_field", "a", "m a=1,a=2")]),
        (b"m a=1,a=2i", [Problem("duplicate_field", "a", "m a=1,a=2i")]),
        (b"m a=1 abc", [Problem("timestamp_invalid", None, "abc")]),
        (b"m a=1 1.5", [Problem("timestamp_invalid", None, "1.5")]),
        (b"m a=1 1e9", [Problem("timestamp_invalid", None, "1e9")]),
        # the first bad line is reported
        (b"m a=1\nm a=x\nm a=y", line_problem("m a=x", "cannot read value 'x'")),
    ],
)
def test_line_protocol_rejects(payload: bytes, expected: list[Problem]) -> None:
    assert rejection(payload) == expected


def test_line_protocol_line_limit() -> None:
    assert len(decode(b"m a=1\n" * MAX_LINES)) == MAX_LINES
    assert len(decode(b"# comment\n" * 50 + b"m a=1\n" * MAX_LINES)) == MAX_LINES
    assert rejection(b"m a=1\n" * (MAX_LINES + 1)) == [
        Problem("too_many_lines", params={"size": MAX_LINES + 1, "limit": MAX_LINES})
    ]


def test_line_protocol_integer_beyond_digit_limit_is_rejected() -> None:
    line = b"m a=" + HUGE_DIGITS.encode() + b"i"
    problems = rejection(line)
    assert [p.code for p in problems] == ["number_too_long"]


# Bare values on …/telemetry/<field> --------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "field", "expected"),
    [
        (b"21.5", "temperature", {"temperature": 21.5}),
        (b"42", "count", {"count": 42}),
        (b"-3", "t", {"t": -3}),
        (b"+3", "t", {"t": 3}),
        (b"007", "t", {"t": 7}),
        (b"18446744073709551616", "big", {"big": 2**64}),
        (b"1e3", "t", {"t": 1000.0}),
        (b"-0.5", "t", {"t": -0.5}),
        (b" 7 \r\n", "t", {"t": 7}),
        (b"true", "on", {"on": True}),
        (b"False", "on", {"on": False}),
        (b"TRUE", "on", {"on": True}),
        (b"t", "on", {"on": "t"}),
        (b"hello world", "state", {"state": "hello world"}),
        (b"21,5", "t", {"t": "21,5"}),
        (b"42i", "t", {"t": "42i"}),
        (b'{"a": 1}', "t", {"t": '{"a": 1}'}),
        (b"m a=1", "t", {"t": "m a=1"}),
        (b"caf\xc3\xa9", "s", {"s": "café"}),
    ],
)
def test_bare_value_on_field_topic(payload: bytes, field: str, expected: dict[str, object]) -> None:
    result = decode(payload, field)
    assert result == [Decoded(expected, None, Source.BARE)]
    assert typed(result[0].values) == typed(expected)


@pytest.mark.parametrize(("payload", "check"), [(b"nan", math.isnan), (b"inf", math.isinf), (b"-Infinity", math.isinf)])
def test_bare_non_finite_is_decoded(payload: bytes, check: object) -> None:
    [decoded] = decode(payload, "t")
    assert decoded.source is Source.BARE
    assert type(decoded.values["t"]) is float
    assert check(decoded.values["t"])  # type: ignore[operator]


def test_source_values() -> None:
    assert [s.value for s in Source] == ["json", "line_protocol", "bare"]
