"""Unit tests for devices.feedback: the English and French sentences for every problem code."""

from __future__ import annotations

import math
import re
import string

import pytest

from devices.decode import Decoded, Source, decode_payload
from devices.feedback import CATALOGUE, LANGUAGES, VALUE_PREVIEW, WARNINGS, preview, render
from devices.kinds import AIR_QUALITY, GENERIC, DeviceKind, FieldType
from devices.problems import PayloadRejected, Problem
from devices.validate import validate

CASES = [(code, lang) for code in CATALOGUE for lang in LANGUAGES]
PLACEHOLDER = re.compile(r"\{\w+\}")
NOW_NS = 1_700_000_000 * 10**9


def names(template: str) -> set[str]:
    """The replacement fields of a str.format template (escaped braces are not fields)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name is not None}


def sentinel(name: str) -> str:
    return f"<{name}>"


def test_languages() -> None:
    assert LANGUAGES == ("en", "fr")


@pytest.mark.parametrize("code", list(CATALOGUE))
def test_catalogue_entry_shape(code: str) -> None:
    entry = CATALOGUE[code]
    assert sorted(entry) == sorted(LANGUAGES)
    for lang in LANGUAGES:
        message, hint = entry[lang]
        assert message.strip() and hint.strip()
        assert message == message.strip() and hint == hint.strip()


@pytest.mark.parametrize("code", list(CATALOGUE))
def test_languages_use_the_same_placeholders(code: str) -> None:
    en_message, en_hint = CATALOGUE[code]["en"]
    fr_message, fr_hint = CATALOGUE[code]["fr"]
    assert names(en_message) | names(en_hint) == names(fr_message) | names(fr_hint)


@pytest.mark.parametrize(("code", "lang"), CASES)
def test_render_substitutes_every_known_param(code: str, lang: str) -> None:
    message_t, hint_t = CATALOGUE[code][lang]
    params = {name: sentinel(name) for name in names(message_t) | names(hint_t) - {"field", "value"}}
    out = render(Problem(code, "<field>", "<value>", params), lang)
    assert out["code"] == code
    assert out["field"] == "<field>"
    assert out["value"] == "<value>"
    assert out["severity"] == ("warning" if code in WARNINGS else "error")
    for template, key in ((message_t, "message"), (hint_t, "hint")):
        text = out[key]
        assert isinstance(text, str)
        for name in names(template):
            assert sentinel(name) in text, f"{name} not substituted in {key}"
        assert not PLACEHOLDER.search(text)
        # literal braces (JSON examples) survive, once each, and nothing else adds braces
        assert text.count("{") == template.count("{{")
        assert text.count("}") == template.count("}}")
        assert "{{" not in text and "}}" not in text


@pytest.mark.parametrize(("code", "lang"), CASES)
def test_render_never_raises_without_params(code: str, lang: str) -> None:
    out = render(Problem(code), lang)
    message_t, hint_t = CATALOGUE[code][lang]
    assert out["value"] is None
    assert out["field"] is None
    for template, key in ((message_t, "message"), (hint_t, "hint")):
        text = out[key]
        assert isinstance(text, str)
        assert not PLACEHOLDER.search(text)
        assert text.count("{") == template.count("{{")
        if names(template) - {"value"}:
            assert "?" in text


def test_missing_params_render_as_question_marks() -> None:
    assert render(Problem("too_many_lines")) == {
        "code": "too_many_lines",
        "severity": "error",
        "field": None,
        "value": None,
        "message": "? lines in one message (limit ?)",
        "hint": "split the batch into several messages",
    }
    assert render(Problem("duplicate_field"), "fr")["message"] == "le champ '?' apparaît deux fois"


def test_params_are_not_formatted_twice() -> None:
    out = render(Problem("unknown_field", "{kind}", "{x}", {"kind": "air_quality", "known": "{field}"}))
    assert out["message"] == "unknown field '{kind}' for a device of kind air_quality"
    assert out["hint"] == "use one of: {field}"
    assert out["value"] == "{x}"


@pytest.mark.parametrize(
    ("problem", "lang", "message", "hint"),
    [
        (
            Problem(
                "unknown_field_suggest",
                "pm25",
                3,
                {"kind": "air_quality", "known": "pm1, pm2_5", "suggestion": "pm2_5"},
            ),
            "en",
            "unknown field 'pm25' for a device of kind air_quality — did you mean 'pm2_5'?",
            "rename 'pm25' to 'pm2_5' in your code; known fields: pm1, pm2_5",
        ),
        (
            Problem(
                "unknown_field_suggest",
                "pm25",
                3,
                {"kind": "air_quality", "known": "pm1, pm2_5", "suggestion": "pm2_5"},
            ),
            "fr",
            "champ inconnu 'pm25' pour un appareil de type air_quality — vouliez-vous dire 'pm2_5' ?",
            "renommez 'pm25' en 'pm2_5' dans votre code ; champs connus : pm1, pm2_5",
        ),
        (
            Problem(
                "out_of_range",
                "temperature",
                120.0,
                {"minimum": "-40", "maximum": "85", "unit": "°C", "sensor": "BME280: -40–85 °C"},
            ),
            "en",
            "temperature = 120.0 is outside -40–85 °C",
            "a real sensor cannot report this (BME280: -40–85 °C); check the wiring, the unit and the conversion in your code",
        ),
        (
            Problem("number_as_string", "temperature", "21.5"),
            "en",
            "temperature is a number inside quotes",
            'send 21.5 without quotes: {"temperature": 21.5}',
        ),
        (
            Problem("number_as_string", "temperature", "21.5"),
            "fr",
            "temperature est un nombre entre guillemets",
            'envoyez 21.5 sans guillemets : {"temperature": 21.5}',
        ),
        (
            Problem("wrong_type", "co2", True, {"expected": "number", "got": "boolean"}),
            "en",
            "co2 should be a number, got a boolean",
            'send co2 as a number, e.g. {"co2": 12.5}',
        ),
        (
            Problem("bad_utf8", None, b"\xff\xfe", {"offset": 7}),
            "en",
            "payload is not valid UTF-8 (bad byte at offset 7)",
            'send text: JSON like {"temperature": 21.5}; check the serial baud rate or the buffer you publish',
        ),
        (
            Problem("bare_value_needs_field", None, "21.5"),
            "en",
            "a bare value needs the field name in the topic",
            'publish 21.5 on …/telemetry/<field>, e.g. …/telemetry/temperature, or send {"temperature": 21.5}',
        ),
        (
            Problem("json_unquoted_key", None, "{pm2_5: 3}", {"position": 1}),
            "en",
            "invalid JSON: keys must be quoted",
            'keys must be quoted in JSON: write {"pm2_5": 3}, not {pm2_5: 3}',
        ),
        (
            Problem("json_single_quotes", None, "{'pm2_5': 3}", {"position": 1}),
            "fr",
            "JSON invalide : apostrophes au lieu de guillemets",
            "le JSON exige des guillemets doubles : {\"pm2_5\": 3}, pas {'pm2_5': 3}",
        ),
        (
            Problem(
                "invalid_json", None, '{"a": }', {"position": 6, "detail": "Expecting value", "line": 1, "column": 7}
            ),
            "en",
            "invalid JSON at line 1, column 7: Expecting value",
            "check the characters around that column; print the payload on the serial monitor before publishing",
        ),
        (
            Problem("not_finite", "temperature", math.nan),
            "en",
            "temperature is NaN, not a number a database can store",
            "the sensor read failed (often a disconnected sensor): skip the field or the reading instead of sending NaN",
        ),
        (
            Problem("type_changed", "v", 42, {"pinned": "float", "got": "integer"}),
            "fr",
            "v était un float et devient un integer",
            "un champ garde son premier type : continuez à envoyer v comme float, ou utilisez un autre nom",
        ),
        (
            Problem(
                "timestamp_out_of_range",
                "ts",
                1600000000,
                {"unit": "s", "as_date": "2020-09-13T12:26:40+00:00", "now": "2023-11-14T22:13:20+00:00"},
            ),
            "en",
            "timestamp 1600000000 (read as s) is 2020-09-13T12:26:40+00:00, too far from now (2023-11-14T22:13:20+00:00)",
            "set the board's clock with NTP, or leave ts out and the hub stamps the reading",
        ),
        (
            Problem("string_too_long", "s", "x" * 300, {"size": 300, "limit": 256}),
            "fr",
            "s : texte de 300 caractères (limite 256)",
            "envoyez des textes courts ; les nombres vont dans des champs numériques",
        ),
    ],
)
def test_render_exact(problem: Problem, lang: str, message: str, hint: str) -> None:
    out = render(problem, lang)
    assert (out["message"], out["hint"]) == (message, hint)


def test_render_whole_dict() -> None:
    assert render(Problem("empty_payload")) == {
        "code": "empty_payload",
        "severity": "error",
        "field": None,
        "value": None,
        "message": "payload is empty",
        "hint": 'publish a JSON object such as {"temperature": 21.5}',
    }
    assert render(Problem("timestamp_collision", "ts", 1700000000), "fr") == {
        "code": "timestamp_collision",
        "severity": "warning",
        "field": "ts",
        "value": "1700000000",
        "message": "deux mesures portent le même horodatage 1700000000 ; la base ne garde que la dernière",
        "hint": "envoyez ts en millisecondes, ou omettez-le : le hub horodate chaque mesure de façon unique",
    }
    assert render(Problem("bad_utf8", None, b"\xff\xfe", {"offset": 0}))["value"] == "ff fe"


def test_only_collisions_are_warnings() -> None:
    assert WARNINGS == frozenset({"timestamp_collision"})
    assert WARNINGS <= set(CATALOGUE)


@pytest.mark.parametrize("lang", ["de", "", "EN", "fr-FR", "FR", "english"])
@pytest.mark.parametrize("code", ["payload_too_large", "out_of_range", "json_unquoted_key"])
def test_unknown_language_falls_back_to_english(code: str, lang: str) -> None:
    problem = Problem(code, "f", 1, {"size": 2, "limit": 1, "minimum": "0", "maximum": "1", "unit": "u", "sensor": "s"})
    assert render(problem, lang) == render(problem, "en")
    assert render(problem) == render(problem, "en")


@pytest.mark.parametrize("code", list(CATALOGUE))
def test_french_differs_from_english(code: str) -> None:
    assert CATALOGUE[code]["fr"] != CATALOGUE[code]["en"]


def test_unknown_code_renders_its_name() -> None:
    assert render(Problem("no_such_code"), "fr") == {
        "code": "no_such_code",
        "severity": "error",
        "field": None,
        "value": None,
        "message": "no such code",
        "hint": "",
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("short", "short"),
        ("", ""),
        ("x" * VALUE_PREVIEW, "x" * VALUE_PREVIEW),
        ("x" * (VALUE_PREVIEW + 1), "x" * (VALUE_PREVIEW - 1) + "…"),
        ("é" * 200, "é" * (VALUE_PREVIEW - 1) + "…"),
        (b"\x00\xff", "00 ff"),
        (bytearray(b"ab"), "61 62"),
        (b"", ""),
        (b"\x01" * 40, ("01 " * 40)[: VALUE_PREVIEW - 1] + "…"),
        (21.5, "21.5"),
        (42, "42"),
        (2**64, "18446744073709551616"),
        (True, "true"),
        (None, "null"),
        (math.nan, "NaN"),
        (math.inf, "Infinity"),
        (-math.inf, "-Infinity"),
        ([1, "a"], '[1, "a"]'),
        ({"a": 1}, '{"a": 1}'),
        ({"a": "é"}, '{"a": "\\u00e9"}'),
        ({1}, "{1}"),
        (list(range(100)), str(list(range(100)))[: VALUE_PREVIEW - 1] + "…"),
    ],
)
def test_preview(value: object, expected: str) -> None:
    assert preview(value) == expected
    assert len(preview(value)) <= VALUE_PREVIEW


def test_value_preview_limit() -> None:
    assert VALUE_PREVIEW == 80
    assert render(Problem("timestamp_invalid", "ts", "y" * 500))["value"] == "y" * 79 + "…"


# The problems devices.decode and devices.validate really produce --------------------------------------------


def missing(problem: Problem, lang: str) -> set[str]:
    """Template fields the problem does not supply (they would render as '?')."""
    message_t, hint_t = CATALOGUE[problem.code][lang]
    supplied = set(problem.params)
    if problem.field is not None:
        supplied.add("field")
    if problem.value is not None:
        supplied.add("value")
    return (names(message_t) | names(hint_t)) - supplied


def decode_problems(payload: bytes, field: str | None = None, max_bytes: int = 16384) -> list[Problem]:
    with pytest.raises(PayloadRejected) as info:
        decode_payload(payload, field, max_bytes)
    return info.value.problems


def validate_problems(
    kind: DeviceKind, values: dict[str, object], ts: object = None, source: Source = Source.JSON
) -> list[Problem]:
    with pytest.raises(PayloadRejected) as info:
        validate(kind, Decoded(values, ts, source), NOW_NS, {"pinned": FieldType.FLOAT})
    return info.value.problems


DECODE_CASES = [
    (b'{"a": 1}', None, 3),
    (b'{"a": "\xff"}', None, 16384),
    (b" ", None, 16384),
    (b"hello", None, 16384),
    (b"21.5", None, 16384),
    (b"[" * 5000 + b"]" * 5000, None, 16384),
    (b"{a: 1}", None, 16384),
    (b"{'a': 1}", None, 16384),
    (b'{"a": 1,}', None, 16384),
    (b'{"a": }', None, 16384),
    (b"[1]", None, 16384),
    (b'{"ts": 1, "time": 2}', None, 16384),
    (b"m a=1\n" * 1001, None, 16384),
    (b"m a=x", None, 16384),
    (b"m a=1,a=2", None, 16384),
    (b"m a=1 x", None, 16384),
]

VALIDATE_CASES = [
    (AIR_QUALITY, {}, None, Source.JSON),
    (GENERIC, {f"f{i}": 1.0 for i in range(65)}, None, Source.JSON),
    (AIR_QUALITY, {"pm25": 1.0}, None, Source.JSON),
    (AIR_QUALITY, {"banana": 1.0}, None, Source.JSON),
    (AIR_QUALITY, {"temperature": 200.0}, None, Source.JSON),
    (AIR_QUALITY, {"temperature": True}, None, Source.JSON),
    (AIR_QUALITY, {"temperature": "21"}, None, Source.JSON),
    (AIR_QUALITY, {"temperature": math.nan}, None, Source.JSON),
    (AIR_QUALITY, {"temperature": 2**64}, None, Source.JSON),
    (GENERIC, {"a b": 1.0}, None, Source.JSON),
    (GENERIC, {"ts": 1.0}, None, Source.LINE),
    (GENERIC, {"s": "x" * 300}, None, Source.JSON),
    (GENERIC, {"s": "\n"}, None, Source.JSON),
    (GENERIC, {"pinned": 1}, None, Source.LINE),
    (GENERIC, {"v": None}, None, Source.JSON),
    (GENERIC, {"x": 1.0}, "now", Source.JSON),
    (GENERIC, {"x": 1.0}, 5000, Source.JSON),
    (GENERIC, {"x": 1.0}, 1_600_000_000, Source.JSON),
]


def produced_problems() -> list[Problem]:
    problems: list[Problem] = []
    for payload, field, max_bytes in DECODE_CASES:
        problems += decode_problems(payload, field, max_bytes)
    for kind, values, ts, source in VALIDATE_CASES:
        problems += validate_problems(kind, values, ts, source)
    return problems


def test_every_code_decode_and_validate_produce_is_in_the_catalogue() -> None:
    codes = [p.code for p in produced_problems()]
    assert codes == [
        "payload_too_large",
        "bad_utf8",
        "empty_payload",
        "unrecognised_payload",
        "bare_value_needs_field",
        "json_too_deep",
        "json_unquoted_key",
        "json_single_quotes",
        "json_trailing_comma",
        "invalid_json",
        "not_an_object",
        "two_timestamps",
        "too_many_lines",
        "invalid_line_protocol",
        "duplicate_field",
        "timestamp_invalid",
        "empty_reading",
        "too_many_fields",
        "unknown_field_suggest",
        "unknown_field",
        "out_of_range",
        "wrong_type",
        "number_as_string",
        "not_finite",
        "integer_too_large",
        "bad_field_name",
        "reserved_field_name",
        "string_too_long",
        "control_character",
        "type_changed",
        "wrong_type",
        "timestamp_invalid",
        "timestamp_since_boot",
        "timestamp_out_of_range",
    ]
    assert set(codes) <= set(CATALOGUE)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_produced_problems_supply_every_template_field(lang: str) -> None:
    gaps = {p.code: missing(p, lang) for p in produced_problems() if missing(p, lang)}
    assert gaps == {}
    for problem in produced_problems():
        out = render(problem, lang)
        assert not PLACEHOLDER.search(str(out["message"])) and not PLACEHOLDER.search(str(out["hint"]))


@pytest.mark.parametrize("lang", LANGUAGES)
def test_json_integer_too_large_message_has_no_placeholder(lang: str) -> None:
    [problem] = decode_problems(b'{"a": ' + b"7" * 5000 + b"}")
    assert problem.code == "number_too_long"
    assert missing(problem, lang) == set()
    assert not str(render(problem, lang)["message"]).startswith("?")
