"""Payload decoding: bytes from a telemetry topic → raw field values and a raw timestamp. Pure.

Three forms are accepted (see the README's topic contract):
- a JSON object of fields, with an optional timestamp under `ts`, `time` or `timestamp`;
- InfluxDB line protocol, one reading per line (measurement and tags are ignored: the hub sets them);
- a bare value on `…/telemetry/<field>`.
Decoding only says what was sent; whether it is acceptable is `devices.validate`'s job. When JSON does not
parse, the slow path works out the beginner's mistake (unquoted keys, single quotes, trailing commas).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from enum import StrEnum

import orjson

from devices.problems import PayloadRejected, reject
from devices.text import has_surrogates, json_has_surrogates, valid_text

TIMESTAMP_KEYS = ("ts", "time", "timestamp")
MAX_LINES = 1000


class Source(StrEnum):
    JSON = "json"
    LINE = "line_protocol"
    BARE = "bare"


@dataclass(slots=True)  # not frozen: one per message, and frozen construction costs 3.5x
class Decoded:
    """One reading as sent: field values not yet checked, timestamp not yet interpreted."""

    values: dict[str, object]
    timestamp: object
    source: Source


_json_decoder = json.JSONDecoder()  # accepts NaN/Infinity on purpose: validation names the field
_UNQUOTED_KEY = re.compile(r"[{,]\s*[A-Za-z_][A-Za-z0-9_.\-]*\s*:")
_SINGLE_QUOTED = re.compile(r"'[^']*'\s*:")
_TRAILING_COMMA = re.compile(r",\s*[}\]]")


def decode_payload(payload: bytes, field: str | None, max_bytes: int) -> list[Decoded]:
    """Decode a telemetry payload; raise PayloadRejected with the first problem found."""
    if len(payload) > max_bytes:
        raise reject("payload_too_large", size=len(payload), limit=max_bytes)
    if field is None and payload[:1] == b"{":
        fast = _fast_json(payload)
        if fast is not None:
            return [fast]
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as err:
        raise reject("bad_utf8", value=payload[max(0, err.start - 8) : err.start + 8], offset=err.start) from None
    stripped = text.strip()
    if not stripped:
        raise reject("empty_payload")
    if field is not None:
        return [_decode_bare(field, stripped)]
    first = stripped[0]
    if first == "{" or first == "[" or first == '"':
        return [_decode_json(stripped)]
    if "=" in stripped:
        return _decode_line_protocol(stripped)
    try:
        float(stripped)
    except ValueError:
        raise reject("unrecognised_payload", value=stripped) from None
    raise reject("bare_value_needs_field", value=stripped)


_HUGE = 9.2e18  # beyond int64: orjson turns such integers into floats, the stdlib keeps them exact


def _fast_json(payload: bytes) -> Decoded | None:
    """orjson for the common case; None sends anything unusual (NaN, huge numbers, bad UTF-8…) to the slow path."""
    try:
        obj = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return None
    if type(obj) is not dict:
        return None
    for value in obj.values():
        kind = type(value)
        if (kind is float and not -_HUGE < value < _HUGE) or kind is list or kind is dict:
            return None  # nested values are refused anyway; the stdlib keeps their numbers exact
    timestamp = None
    if "ts" in obj or "time" in obj or "timestamp" in obj:
        keys = [key for key in TIMESTAMP_KEYS if key in obj]
        if len(keys) > 1:
            return None
        timestamp = obj.pop(keys[0])
    return Decoded(obj, timestamp, Source.JSON)


_JSON_TYPES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean", type(None): "null"}


def _decode_json(text: str) -> Decoded:
    try:
        obj = _json_decoder.decode(text)
    except RecursionError:
        raise reject("json_too_deep") from None
    except json.JSONDecodeError as err:
        raise _diagnose_json(text, err) from None
    except ValueError:  # int beyond Python's digit limit
        raise reject("number_too_long", value=text) from None
    if not isinstance(obj, dict):
        raise reject("not_an_object", value=valid_text(text), got=_JSON_TYPES.get(type(obj), type(obj).__name__))
    broken = _surrogate_field(obj)
    if broken is not None:  # JSON can spell text that is not Unicode ("\udc80"): refused here, at the edge
        raise reject("invalid_unicode", field=broken)
    timestamp = None
    for key in TIMESTAMP_KEYS:
        if key in obj:
            if timestamp is not None:
                raise reject("two_timestamps", value=key)
            timestamp = obj.pop(key)
    return Decoded(obj, timestamp, Source.JSON)


DIAGNOSE_CHARS = 4096  # the beginner's mistake shows in the first few KiB; the diagnosis stays cheap


def _diagnose_json(text: str, err: json.JSONDecodeError) -> PayloadRejected:
    """Name the usual beginner mistakes instead of echoing the parser. Linear time: the patterns below have
    no nested repetition, and they see at most DIAGNOSE_CHARS characters."""
    head = text[:DIAGNOSE_CHARS]
    if _UNQUOTED_KEY.search(_strip_strings(head)):
        return reject("json_unquoted_key", value=text, position=err.pos)
    if _SINGLE_QUOTED.search(head):
        return reject("json_single_quotes", value=text, position=err.pos)
    if _TRAILING_COMMA.search(head):
        return reject("json_trailing_comma", value=text, position=err.pos)
    return reject("invalid_json", value=text, position=err.pos, detail=err.msg, line=err.lineno, column=err.colno)


def _strip_strings(text: str) -> str:
    """The text with double-quoted strings blanked, so a ':' inside a string is not mistaken for a key.

    One pass over the text (a regex search for strings is quadratic on an unterminated one: it restarts
    at every quote); an unterminated string blanks the rest."""
    out: list[str] = []
    start = 0  # where the text outside strings resumes
    i, n = 0, len(text)
    while i < n:
        if text[i] != '"':
            i += 1
            continue
        out.append(text[start:i])
        i += 1
        while i < n and text[i] != '"':
            i += 2 if text[i] == "\\" else 1
        out.append('""')
        i += 1
        start = i
    out.append(text[start:])
    return "".join(out)


def _surrogate_field(obj: dict[str, object]) -> str | None:
    """The first key whose name or value holds a lone surrogate (see devices.text), or None."""
    for key, value in obj.items():
        if has_surrogates(key) or json_has_surrogates(value):
            return key
    return None


def _decode_bare(field: str, text: str) -> Decoded:
    lowered = text.lower()
    value: object
    if lowered in ("true", "false"):
        value = lowered == "true"
    else:
        try:
            value = int(text) if _looks_int(text) else float(text)
        except ValueError:
            value = text
    return Decoded({field: value}, None, Source.BARE)


def _looks_int(text: str) -> bool:
    body = text[1:] if text[:1] in "+-" else text
    return body.isdigit()


# Line protocol ------------------------------------------------------------------------------------


def _decode_line_protocol(text: str) -> list[Decoded]:
    # Lines end at "\n" only (str.splitlines() would also cut at U+2028 or \x1c inside a string value).
    lines = [line for line in text.split("\n") if line.strip() and not line.lstrip().startswith("#")]
    if len(lines) > MAX_LINES:
        raise reject("too_many_lines", size=len(lines), limit=MAX_LINES)
    return [_decode_lp_line(line.strip()) for line in lines]


def _split_unescaped(text: str, sep: str, quotes: bool) -> list[str]:
    """Split on `sep` outside backslash escapes (and, if `quotes`, outside double-quoted strings)."""
    parts: list[str] = []
    current: list[str] = []
    in_quotes = False
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\" and i + 1 < n:
            current.append(ch)
            current.append(text[i + 1])
            i += 2
            continue
        if quotes and ch == '"':
            in_quotes = not in_quotes
        elif ch == sep and not in_quotes:
            parts.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if in_quotes:
        raise reject("invalid_line_protocol", value=text, detail="unterminated string")
    parts.append("".join(current))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


_LP_TRUE = frozenset({"t", "T", "true", "True", "TRUE"})
_LP_FALSE = frozenset({"f", "F", "false", "False", "FALSE"})


def _lp_value(raw: str, line: str) -> object:
    if len(raw) >= 2 and raw[0] == '"' and raw[-1] == '"':
        return raw[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    if raw in _LP_TRUE:
        return True
    if raw in _LP_FALSE:
        return False
    if raw[-1:] in ("i", "u") and _looks_int(raw[:-1]):
        try:
            return int(raw[:-1])
        except ValueError:  # beyond Python's digit limit
            raise reject("number_too_long", value=raw) from None
    try:
        return float(raw)
    except ValueError:
        raise reject("invalid_line_protocol", value=line, detail=f"cannot read value {raw!r}") from None


def _decode_lp_line(line: str) -> Decoded:
    sections = [s for s in _split_unescaped(line, " ", quotes=True) if s != ""]
    if len(sections) not in (2, 3):
        raise reject("invalid_line_protocol", value=line, detail="expected 'measurement field=value [timestamp]'")
    values: dict[str, object] = {}
    for pair in _split_unescaped(sections[1], ",", quotes=True):
        key, eq, raw = _partition_unescaped(pair)
        if not eq or not key or not raw:
            raise reject("invalid_line_protocol", value=line, detail=f"field {pair!r} is not name=value")
        name = _unescape(key)
        if name in values:
            raise reject("duplicate_field", field=name, value=line)
        values[name] = _lp_value(raw, line)
    timestamp: object = None
    if len(sections) == 3:
        try:
            timestamp = int(sections[2])
        except ValueError:
            raise reject("timestamp_invalid", value=sections[2]) from None
    return Decoded(values, timestamp, Source.LINE)


def _partition_unescaped(pair: str) -> tuple[str, bool, str]:
    i = 0
    while i < len(pair):
        if pair[i] == "\\":
            i += 2
            continue
        if pair[i] == "=":
            return pair[:i], True, pair[i + 1 :]
        i += 1
    return pair, False, ""
