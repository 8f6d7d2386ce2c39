"""Unit tests for hub.ingest.lineproto: exact line-protocol strings."""

from __future__ import annotations

import pytest

from devices.decode import Decoded, Source, decode_payload
from hub.ingest.lineproto import encode_floats, encode_line, escape_key, escape_measurement, format_value, series_prefix


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("air_quality", "air_quality"),
        ("air quality", "air\\ quality"),
        ("a,b", "a\\,b"),
        ("a=b", "a=b"),
        ("a\\b", "a\\x5cb"),
        ('a"b', 'a"b'),
        ("é", "é"),
        ("", ""),
    ],
)
def test_escape_measurement(name: str, expected: str) -> None:
    assert escape_measurement(name) == expected


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("plain_name", "plain_name"),
        ("a b", "a\\ b"),
        ("a,b", "a\\,b"),
        ("a=b", "a\\=b"),
        ("a\\b", "a\\x5cb"),
        (" ,=\\", "\\ \\,\\=\\x5c"),
        ('q"', 'q"'),
        ("node-7", "node-7"),
    ],
)
def test_escape_key(name: str, expected: str) -> None:
    assert escape_key(name) == expected


@pytest.mark.parametrize(
    ("measurement", "tags", "expected"),
    [
        ("m", {}, "m "),
        (
            "air_quality",
            {"learner": "alice", "device": "esp32", "cohort": "c1"},
            "air_quality,cohort=c1,device=esp32,learner=alice ",
        ),
        ("generic", {"b": "2", "a": "1", "c": "3"}, "generic,a=1,b=2,c=3 "),
        ("m", {"B": "x", "a": "y"}, "m,B=x,a=y "),
        (
            "my m,x=y",
            {"b k": "v,1", "a=k": "x=y", "c": "back\\slash"},
            "my\\ m\\,x=y,a\\=k=x\\=y,b\\ k=v\\,1,c=back\\x5cslash ",
        ),
        ("m", {"t": "two words"}, "m,t=two\\ words "),
    ],
)
def test_series_prefix(measurement: str, tags: dict[str, str], expected: str) -> None:
    assert series_prefix(measurement, tags) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1.0, "1.0"),
        (0.1, "0.1"),
        (21.5, "21.5"),
        (-0.0, "-0.0"),
        (0.0, "0.0"),
        (1e20, "1e+20"),
        (1e16, "1e+16"),
        (1e15, "1000000000000000.0"),
        (1e-7, "1e-07"),
        (-1.5e-300, "-1.5e-300"),
        (123456789.0, "123456789.0"),
        (1 / 3, "0.3333333333333333"),
        (42, "42i"),
        (-7, "-7i"),
        (0, "0i"),
        (2**63 - 1, "9223372036854775807i"),
        (-(2**63), "-9223372036854775808i"),
        (True, "true"),
        (False, "false"),
        ("ok", '"ok"'),
        ("", '""'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir\\", '"C:\\\\dir\\\\"'),
        ('\\"', '"\\\\\\""'),
        ("a b,c=d", '"a b,c=d"'),
        ("café ☕", '"café ☕"'),
    ],
)
def test_format_value(value: float | int | bool | str, expected: str) -> None:
    assert format_value(value) == expected


@pytest.mark.parametrize(
    ("prefix", "fields", "timestamp", "expected"),
    [
        ("m ", {"a": 1.5}, 10, "m a=1.5 10"),
        ("m ", {"a": 1e20, "b": -0.0, "c": 0.1}, 0, "m a=1e+20,b=-0.0,c=0.1 0"),
        (
            "air,cohort=c1 ",
            {"t": 21.0, "n": 42, "on": True, "off": False, "s": 'x "y"'},
            1700000000000000000,
            'air,cohort=c1 t=21.0,n=42i,on=true,off=false,s="x \\"y\\"" 1700000000000000000',
        ),
        ("m ", {"a b": 1.0, "c,d": 2, "e=f": "g", "h\\i": True}, 5, 'm a\\ b=1.0,c\\,d=2i,e\\=f="g",h\\x5ci=true 5'),
        ("m ", {"z": 1.0, "a": 2.0}, 1, "m z=1.0,a=2.0 1"),
        ("m ", {"path": "C:\\tmp"}, 1, 'm path="C:\\\\tmp" 1'),
        ("m ", {"big": 2**63 - 1, "neg": -1}, -1, "m big=9223372036854775807i,neg=-1i -1"),
        ("m ", {"température": 1.0}, 1, "m température=1.0 1"),
    ],
)
def test_encode_line(prefix: str, fields: dict[str, float | int | bool | str], timestamp: int, expected: str) -> None:
    assert encode_line(prefix, fields, timestamp) == expected


@pytest.mark.parametrize(
    ("prefix", "fields", "timestamp", "expected"),
    [
        ("m ", {"a": 1.5}, 10, "m a=1.5 10"),
        (
            "air_quality,cohort=c1,device=esp32,learner=alice ",
            {"pm2_5": 12.5, "co2": 1e20, "temperature": -0.0, "humidity": 0.1},
            1700000000000000000,
            "air_quality,cohort=c1,device=esp32,learner=alice pm2_5=12.5,co2=1e+20,temperature=-0.0,humidity=0.1 1700000000000000000",
        ),
        ("m ", {"a": 100.0, "b": 1e-7}, 0, "m a=100.0,b=1e-07 0"),
    ],
)
def test_encode_floats(prefix: str, fields: dict[str, float], timestamp: int, expected: str) -> None:
    assert encode_floats(prefix, fields, timestamp) == expected


@pytest.mark.parametrize(
    "fields",
    [
        {"a": 1.5},
        {"pm2_5": 12.5, "co2": 1e20, "t": -0.0, "h": 0.1},
        {"x": 1 / 3, "y": -1.5e-300, "z": 123456789.0},
    ],
)
def test_encode_floats_matches_encode_line(fields: dict[str, float]) -> None:
    prefix = series_prefix("air_quality", {"cohort": "c1", "learner": "alice", "device": "esp32"})
    assert encode_floats(prefix, fields, 123) == encode_line(prefix, fields, 123)


@pytest.mark.parametrize(
    "fields",
    [
        {"t": 21.5, "n": 42, "ok": True, "ko": False},
        {"s": 'quote " and backslash \\ and , space = equals'},
        {"a b": 1.0, "c,d": -3, "e=f": "x"},
        {"tiny": 1e-300, "huge": 1e300, "neg": -0.0, "third": 1 / 3},
    ],
)
def test_encoded_line_decodes_back(fields: dict[str, float | int | bool | str]) -> None:
    prefix = series_prefix("my m", {"cohort": "c 1", "device": "d,=\\"})
    line = encode_line(prefix, fields, 1700000000000000000)
    decoded = decode_payload(line.encode(), None, 16384)
    assert decoded == [Decoded(fields, 1700000000000000000, Source.LINE)]
    assert {k: type(v) for k, v in decoded[0].values.items()} == {k: type(v) for k, v in fields.items()}


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a\nb", "a\\nb"),
        ("a\rb", "a\\rb"),
        ("a\tb", "a\\tb"),
        ("a\x00b", "a\\x00b"),
    ],
)
def test_control_characters_are_written_as_visible_text(name: str, expected: str) -> None:
    assert escape_key(name) == expected
    assert escape_measurement(name) == expected
    assert format_value(name) == f'"{expected}"'


def test_a_backslash_in_a_name_can_never_escape_what_follows_it() -> None:
    assert escape_key("end\\") == "end\\x5c"
    assert escape_measurement("m\\") == "m\\x5c"
    assert format_value("end\\") == '"end\\\\"'  # string values do unescape a doubled backslash
