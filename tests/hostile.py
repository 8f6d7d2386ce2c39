"""Hostile input for every surface of the lab: Hypothesis strategies and payload builders, and the check that
every series in InfluxDB belongs to its sender. Pure (no I/O).

What a classroom can send, on purpose or by accident: lone surrogates (as JSON `\\udc80` escapes, since
MQTT payloads are bytes and only an ASCII-only JSON encoder can carry them), control characters, every
line-protocol special character (`, = space " \\ newline CR #`), odd Unicode, long strings, huge and
negative integers (400 digits and more), every spelling of NaN and infinity, deep nesting, random bytes.

`tests/test_adversarial.py` drives a real lab with these in Hypothesis-sized batches; `benchmarks/fuzz_lab.py`
draws pools from the same strategies (`draw`) for long runs.
"""

from __future__ import annotations

import html.parser
import json
import random
import re
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from devices.diagnoses import CODES as DIAGNOSES
from devices.diagnoses import SEVERITY
from devices.feedback import CATALOGUE
from devices.kinds import FIELD_NAME_RE, RESERVED_NAMES
from devices.kinds import KINDS as DEVICE_KINDS
from devices.topics import DeviceRef

T = TypeVar("T")

# Atoms ----------------------------------------------------------------------------------------------------

LINE_PROTOCOL_SPECIALS = [",", "=", " ", '"', "\\", "\n", "\r", "#"]
SPECIALS = [*LINE_PROTOCOL_SPECIALS, "\t", "'", "{", "}", "[", "]", ":", "/", "+", "$", "%", "*", "`", ";"]
CONTROLS = [chr(c) for c in (0x00, 0x01, 0x07, 0x08, 0x0B, 0x0C, 0x1B, 0x1F, 0x7F, 0x85, 0x9B)]
ODD_UNICODE = [
    "é",
    "💡",
    "\u0301",  # a combining accent alone
    "\u200b",  # zero-width space
    "\u2028",  # line separator (a newline to some parsers)
    "\u2029",
    "\u202e",  # right-to-left override
    "\ufeff",  # BOM
    "\ufffd",
    "\uffff",
    "\U0010ffff",
    "İ",
    "ß",
    "𝟘",
    "١",  # Arabic-Indic digit one: int() and float() accept it
]
SURROGATES = ["\ud800", "\udbff", "\udc00", "\udc80", "\udfff"]

# The measurement, tags and fields a payload may try to smuggle a second point in with.
INJECTION = "x\ninjected,cohort=zz,learner=zz,device=zz v=1 1"
NAMED_TEXTS = [
    "",
    " ",
    "\\",
    "a\\",
    '"',
    '\\"',
    INJECTION,
    "x\rinjected v=1",
    "x injected=1",
    "x,cohort=zz",
    "x=1,y=2",
    "move\ncommands,cohort=zz,learner=zz,device=zz,type=x,state=done x=1",
    'rejections,cohort=zz,learner=zz,device=zz code="x" 1',
    "# comment",
    "\x00",
    "\x1b[2J\x1b[31mred",
    "\udc80",
    "a\ud800b",
    "\udbff\udfff",  # a valid pair as two escapes
    "a" * 257,
    "é" * 300,
    "💡" * 1000,
    '"' + '\\"' * 8000,  # 16 KB of escaped quotes
    "[" * 3000,
    "NaN",
    "Infinity",
]
NUMBER_SPELLINGS = [
    "NaN",
    "-NaN",
    "nan",
    "NAN",
    "Infinity",
    "-Infinity",
    "+Infinity",
    "inf",
    "-inf",
    "infinity",
    "1e309",
    "-1e309",
    "1e-400",
    "-0",
    "-0.0",
    "0.0e0",
    "0x1F",
    "0b11",
    "0o7",
    "1_000",
    "+1",
    "01",
    ".5",
    "5.",
    "1e",
    "1e+",
    "--1",
    "1.2.3",
    "١٢",
    "１２",  # full-width digits
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "18446744073709551616",
    "1.7976931348623157e308",
    "1.7976931348623159e308",
    "5e-324",
    "9" * 400,
    "-" + "9" * 400,
    "1" + "0" * 400 + ".5",
    "0." + "0" * 400 + "1",
    "9" * 5000,  # over Python's int/str conversion limit
    "1" * 100_000,
]
HUGE_INTS = [2**63 - 1, 2**63, -(2**63), -(2**63) - 1, 2**64, 10**400, -(10**400), int("9" * 4000)]
ODD_FLOATS = [float("nan"), float("inf"), float("-inf"), -0.0, 5e-324, 1.7976931348623157e308, -1e308]

KNOWN_FIELDS = [
    "pm1",
    "pm2_5",
    "pm10",
    "co2",
    "eco2",
    "tvoc",
    "temperature",
    "humidity",
    "pressure",
    "ts",
    "time",
    "timestamp",
    "cohort",
    "learner",
    "device",
    "_measurement",
    "_field",
    "base",
    "shoulder",
    "elbow",
    "gripper",
    "moving",
    "source",
]
# Fields the canaries use: hostile generic devices try to pin them to another type first.
PIN_TARGETS = ["level", "count", "label", "on"]
JOINTS = ["base", "shoulder", "elbow", "wrist", "gripper", "claw"]
COMMAND_TYPES = ["move", "pose", "gripper", "home", "stop"]
ACK_STATUSES = ["accepted", "rejected", "done"]
KINDS = ["air_quality", "generic", "arm"]
PROFILES = ["mearm", "braccio"]


class Raw(str):
    """Text that goes into a JSON document as it is (a number spelling, a broken fragment, deep nesting)."""

    __slots__ = ()


def dump(value: Any, ascii_only: bool = True) -> str:
    """JSON text for `value`, with `Raw` parts verbatim. `ascii_only` escapes every non-ASCII character, lone
    surrogates included (`\\udc80`); otherwise they are written raw (and become invalid UTF-8 in `encode`)."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=ascii_only)
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return json.dumps(value)  # NaN, Infinity, -Infinity as Python writes them
    if isinstance(value, dict):
        return "{" + ",".join(f"{dump(str(k), ascii_only)}:{dump(v, ascii_only)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(dump(v, ascii_only) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=ascii_only)


def encode(text: str) -> bytes:
    """Bytes of `text`; lone surrogates become their (invalid) UTF-8 forms rather than an error."""
    return text.encode("utf-8", "surrogatepass")


def _topic_char(c: str) -> bool:
    """What Mosquitto accepts in a topic (it disconnects a client for anything else): no wildcards, `/`,
    control characters, surrogates or non-characters."""
    n = ord(c)
    return not (
        c in "/+#"
        or n <= 0x1F
        or 0x7F <= n <= 0x9F
        or 0xD800 <= n <= 0xDFFF
        or 0xFDD0 <= n <= 0xFDEF
        or (n & 0xFFFE) == 0xFFFE
    )


def topic_safe(text: str) -> str:
    """A topic level a client can publish on (see _topic_char), at most 200 characters."""
    return "".join(c for c in text if _topic_char(c))[:200]


# Strategies ---------------------------------------------------------------------------------------------------


def choice(items: Sequence[T]) -> st.SearchStrategy[T]:
    """sampled_from without the items in the strategy's repr (some are 100 KB long)."""
    return st.integers(0, len(items) - 1).map(lambda i: items[i])


surrogates = st.one_of(st.sampled_from(SURROGATES), st.integers(0xD800, 0xDFFF).map(chr))
hostile_chars = st.one_of(
    st.sampled_from(LINE_PROTOCOL_SPECIALS),
    st.sampled_from(SPECIALS + CONTROLS + ODD_UNICODE),
    surrogates,
    st.characters(),
)
short_text = st.text(hostile_chars, max_size=24)
long_text = st.builds(
    lambda piece, n: (piece * n)[:n],
    st.text(hostile_chars, min_size=1, max_size=3),
    st.integers(64, 300) | st.integers(300, 17_000),
)
hostile_text = st.one_of(short_text, short_text, choice(NAMED_TEXTS), long_text)

hostile_ints = st.one_of(
    st.integers(-(2**70), 2**70),
    choice(HUGE_INTS),
    st.builds(lambda digits, sign: sign * int("9" * digits), st.integers(19, 400), st.sampled_from([1, -1])),
)
hostile_floats = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(ODD_FLOATS))
number_spellings = st.one_of(
    choice(NUMBER_SPELLINGS), hostile_ints.map(str), hostile_floats.map(repr), hostile_floats.map(json.dumps)
)
hostile_numbers = st.one_of(hostile_ints, hostile_floats, number_spellings.map(Raw))


def _nested(opener: str, depth: int, closed: bool) -> Raw:
    closer = {"[": "]", "{": "}", '{"a":': "}"}[opener]
    inner = "1" if opener == '{"a":' else ""
    if opener == "{":
        return Raw('{"a":' * (depth - 1) + "{}" + "}" * (depth - 1) if closed else "{" * depth)
    return Raw(opener * depth + inner + (closer * depth if closed else ""))


deep_nesting = st.builds(
    _nested,
    st.sampled_from(["[", "{", '{"a":']),
    st.integers(1, 5000) | st.sampled_from([63, 64, 65, 100_000]),
    st.booleans(),
)
json_scalars = st.one_of(st.none(), st.booleans(), hostile_numbers, hostile_text, deep_nesting)
field_keys = st.one_of(
    st.sampled_from(KNOWN_FIELDS + PIN_TARGETS),
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,70}\Z"),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(field_keys, inner, max_size=4),
    max_leaves=10,
)
random_bytes = st.one_of(st.binary(max_size=600), st.binary(min_size=600, max_size=20_000))
hostile_bytes = st.one_of(hostile_text.map(lambda t: t[:HARD_MAX]).map(encode), random_bytes)


def _broken_json(text: str, how: int) -> str:
    """Common ways to get JSON wrong: cut short, single quotes, a trailing comma, keys unquoted, doubled."""
    if how == 0:
        return text[: max(1, len(text) // 2)]
    if how == 1:
        return text.replace('"', "'")
    if how == 2:
        return text[:-1] + ",}" if text.endswith("}") else text + ","
    if how == 3:
        return text.replace('":', ":").replace('{"', "{").replace(',"', ",")
    return text + text


MAX_DRAWN = 20_000  # mostly near the hub's limit (16 KiB): bigger ones are refused unread and only slow a run
HARD_MAX = 70_000


def _cap(draw: st.DrawFn, data: bytes) -> bytes:
    return data[: MAX_DRAWN if draw(st.integers(0, 7)) else HARD_MAX]


json_objects = st.dictionaries(field_keys, json_values, max_size=8)
# Payloads that have broken real hubs (see the adversarial tests): each is also in the strategies below.
KNOWN_NASTY = [
    b'{"x": "\\udc80"}',
    b'{"base": "\\ud800", "level": 1}',
    b'"' + b'\\"' * 8000,
    b'{"pose": {"base": ' + b"9" * 400 + b"}}",
    b'{"a": ' + b"9" * 5000 + b"}",
    b"[" * 100_000,
    b"\xed\xa0\x80",  # a surrogate in UTF-8: not valid UTF-8
    b"\xff\xfe\x00",
    b"m v=1 " + b"9" * 400,
    b"m " + b"v=1," * 4000 + b"w=1",
    b"\n" * 5000,
]


@st.composite
def json_payload(draw: st.DrawFn, obj: st.SearchStrategy[Any] = json_objects) -> bytes:
    """A JSON document (an object mostly), written ASCII-only or raw, sometimes broken."""
    value = draw(st.one_of(obj, obj, obj, json_values))
    text = dump(value, ascii_only=draw(st.booleans()))
    if draw(st.integers(0, 9)) == 0:
        text = _broken_json(text, draw(st.integers(0, 4)))
    return _cap(draw, encode(text))


def _lp_escape(text: str, where: str) -> str:
    if where == "string":
        return text.replace("\\", "\\\\").replace('"', '\\"')
    specials = ",= " if where == "key" else ", "
    for c in "\\" + specials:
        text = text.replace(c, "\\" + c)
    return text


@st.composite
def line_protocol_payload(draw: st.DrawFn) -> bytes:
    """Line protocol, one to a few hundred lines: measurement, tags, fields and timestamp all hostile."""
    lines = []
    for _ in range(draw(st.integers(1, 4))):
        escape = draw(st.booleans())
        measurement = draw(st.one_of(st.just("m"), st.just("air_quality"), hostile_text))
        tags = draw(
            st.lists(
                st.tuples(st.sampled_from(["cohort", "learner", "device", "t"]) | short_text, short_text), max_size=3
            )
        )
        fields = draw(st.lists(st.tuples(field_keys, st.integers(0, 4)), min_size=0, max_size=5))
        parts = [_lp_escape(measurement, "measurement") if escape else measurement]
        parts += [(f"{_lp_escape(k, 'key')}={_lp_escape(v, 'key')}" if escape else f"{k}={v}") for k, v in tags]
        head = ",".join(parts)
        values = []
        for key, kind in fields:
            if kind == 0:
                value = draw(number_spellings) + draw(st.sampled_from(["", "", "i", "u", "I", "e"]))
            elif kind == 1:
                value = '"' + (_lp_escape(draw(hostile_text), "string") if escape else draw(hostile_text)) + '"'
            elif kind == 2:
                value = draw(st.sampled_from(["true", "false", "t", "F", "TRUE", "True", "yes"]))
            elif kind == 3:
                value = draw(hostile_text)
            else:
                value = str(draw(st.floats(-1000, 1000, allow_nan=False)))
            values.append(f"{_lp_escape(key, 'key') if escape else key}={value}")
        line = f"{head} {','.join(values)}"
        if draw(st.booleans()):
            line += " " + draw(st.one_of(number_spellings, st.integers(-(2**64), 2**64).map(str)))
        lines.append(line)
    if draw(st.integers(0, 15)) == 0:
        lines *= draw(st.sampled_from([30, 101, 400]))  # too many lines
    return _cap(draw, encode(draw(st.sampled_from(["\n", "\r\n", " \n", "\n\n"])).join(lines)))


bare_payload = st.one_of(
    number_spellings, hostile_text, json_scalars.map(dump), st.sampled_from(["true", "false", "null"])
).map(lambda t: encode(t[:HARD_MAX]))
telemetry_field = st.one_of(st.sampled_from(KNOWN_FIELDS + PIN_TARGETS), hostile_text.map(topic_safe))
telemetry_json = st.one_of(json_payload(), json_payload(), choice(KNOWN_NASTY), random_bytes)
telemetry_lp = line_protocol_payload()
telemetry_bare = st.tuples(telemetry_field, st.one_of(bare_payload, bare_payload, random_bytes))

status_payload = st.one_of(
    st.sampled_from(["online", "offline", "ONLINE", " online\n", "Offline", "", '{"state": "online"}', "{"]).map(
        encode
    ),
    hostile_bytes,
    json_payload(st.fixed_dictionaries({}, optional={"state": json_values})),
    random_bytes,
)
ack_bodies = st.fixed_dictionaries(
    {},
    optional={
        "status": st.one_of(st.sampled_from(ACK_STATUSES), json_values),
        "pose": st.one_of(
            st.dictionaries(st.sampled_from(JOINTS) | short_text, hostile_numbers | json_values, max_size=5),
            json_values,
        ),
        "reason": json_values,
        "interrupted": json_values,
    },
)


@st.composite
def ack_payload(draw: st.DrawFn, command_id: str | None = None) -> bytes:
    """An acknowledgement: for a real command id (hostile firmware) or a made-up one."""
    body = dict(draw(ack_bodies))
    body["id"] = command_id if command_id is not None else draw(st.one_of(hostile_text, json_values, st.just("c0ffee")))
    if draw(st.integers(0, 3)) == 0:
        body["pose"] = {draw(st.sampled_from(JOINTS)): draw(choice(HUGE_INTS + ODD_FLOATS))}
    return _cap(draw, encode(dump(body, ascii_only=draw(st.booleans()))))


command_bodies = st.fixed_dictionaries(
    {"type": st.one_of(st.sampled_from(COMMAND_TYPES), hostile_text, json_values)},
    optional={
        "targets": st.one_of(
            st.dictionaries(st.sampled_from(JOINTS) | hostile_text, hostile_numbers | json_values, max_size=5),
            json_values,
        ),
        "speed": hostile_numbers | json_values,
        "name": st.sampled_from(["reach", "home", "rest"]) | hostile_text,
        "action": st.sampled_from(["open", "close", "angle"]) | hostile_text,
        "angle": hostile_numbers | json_values,
        "request_id": json_values,
        "idempotency_key": json_values,
    },
)
command_payload = st.one_of(json_payload(command_bodies), json_payload(command_bodies), json_payload(), random_bytes)

# HTTP: header values a client library will send (latin-1, no line breaks); query values and paths are quoted.
header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=300)


@dataclass(frozen=True)
class HttpCommand:
    body: bytes
    content_type: str
    idempotency_key: str | None
    wait: str | None
    path_device: str | None  # None: the learner's own arm; else a hostile device path (URL-quoted by the sender)

    def path(self, device_key: str) -> str:
        """The commands route: for `device_key`, or for the hostile device path when there is one."""
        if self.path_device is None:
            return f"/api/devices/{device_key}/commands"
        quoted = urllib.parse.quote(self.path_device.encode("utf-8", "replace").decode(), safe="/")
        return f"/api/devices/{quoted}/commands"


http_commands = st.builds(
    HttpCommand,
    body=command_payload,
    content_type=st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded", ""]),
    idempotency_key=st.none() | header_text,
    wait=st.none() | number_spellings | short_text,
    path_device=st.none() | st.none() | st.none() | hostile_text,
)


@dataclass(frozen=True)
class WsFrame:
    text: str | None  # a text frame (no lone surrogates: a WebSocket client cannot send them)
    data: bytes | None  # a binary frame


ws_frames = st.one_of(
    st.builds(WsFrame, text=hostile_text.map(lambda t: t.encode("utf-8", "replace").decode()), data=st.none()),
    st.builds(WsFrame, text=command_payload.map(lambda b: b.decode("utf-8", "replace")), data=st.none()),
    st.builds(WsFrame, text=st.none(), data=random_bytes),
)
ws_queries = st.lists(
    st.tuples(st.sampled_from(["device", "cohort", "x"]), hostile_text.map(topic_safe)), min_size=1, max_size=3
)


# MQTT over WebSockets (/mqtt): byte streams cut into WebSocket messages anywhere (a message may hold part of a
# packet or several), after a real login of the sender's own device or none. MQTT_WS_COHORT stands for the lab's.
MQTT_WS_COHORT = "wsk"


def mqtt_packet(first: int, body: bytes) -> bytes:
    length, n = bytearray(), len(body)
    while True:
        byte, n = n % 128, n // 128
        length.append(byte | (0x80 if n else 0))
        if not n:
            return bytes([first]) + bytes(length) + body


def _mqtt_str(text: str) -> bytes:
    data = text.encode("utf-8", "surrogatepass")[:65535]
    return len(data).to_bytes(2, "big") + data


_ws_topics = st.one_of(
    st.sampled_from([f"lab/{MQTT_WS_COHORT}/ben/aq1/telemetry", f"lab/{MQTT_WS_COHORT}/ben/arm1/commands", "#"]),
    st.sampled_from([f"lab/{MQTT_WS_COHORT}/ana/ws1/telemetry", "$SYS/#", "$CONTROL/dynamic-security/v1"]),
    hostile_text,
)
mqtt_ws_chunks = st.one_of(
    random_bytes,
    st.builds(lambda t, p: mqtt_packet(0x30, _mqtt_str(t) + p), _ws_topics, command_payload),  # PUBLISH QoS 0
    st.builds(lambda t: mqtt_packet(0x82, b"\x00\x01" + _mqtt_str(t) + b"\x00"), _ws_topics),  # SUBSCRIBE
    st.sampled_from([b"\x30\xff\xff\xff\xff\x7f", b"\x10\x00", b"\xc0\x00", b"\xe0\x00", b""]),  # odd headers
)


@dataclass(frozen=True)
class MqttWsStream:
    login: bool  # first a real CONNECT of the sender's own device, so the rest reaches a session
    messages: tuple[bytes | str, ...]  # in order: binary (bytes) or text (str) WebSocket messages


@st.composite
def mqtt_ws_stream(draw: st.DrawFn) -> MqttWsStream:
    data = b"".join(draw(st.lists(mqtt_ws_chunks, min_size=1, max_size=4)))[:60_000]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=4)))
    messages: list[bytes | str] = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    if draw(st.booleans()):
        messages.insert(draw(st.integers(0, len(messages))), draw(short_text).encode("utf-8", "replace").decode())
    return MqttWsStream(draw(st.booleans()), tuple(messages))


@st.composite
def serial_chunk(draw: st.DrawFn) -> bytes:
    """What comes up a USB cable: key=value lines, JSON lines (acks too), garbage, long and unfinished lines."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        pairs = draw(st.lists(st.tuples(field_keys, number_spellings | hostile_text), min_size=1, max_size=5))
        sep = draw(st.sampled_from([",", " ", ";", "\t", ", "]))
        assign = draw(st.sampled_from(["=", ":", "=="]))
        line = encode(sep.join(f"{k}{assign}{v}" for k, v in pairs))
    elif kind == 1:
        line = draw(json_payload())
    elif kind == 2:
        line = draw(ack_payload())
    elif kind == 3:
        line = draw(random_bytes)
    elif kind == 4:
        line = draw(choice(KNOWN_NASTY))
    else:
        line = encode(draw(hostile_text))
    return _cap(draw, line) + draw(st.sampled_from([b"\n", b"\r\n", b"\r", b"", b"\n\r\n"]))


@st.composite
def cohort_csv(draw: st.DrawFn, cohort: str) -> bytes:
    """A cohort CSV as a spreadsheet (or a prankster) writes it, for `cohort` (mostly) and others."""
    header = draw(
        st.one_of(
            st.just("cohort,learner,device,kind,profile,description"),
            st.permutations(["cohort", "learner", "device", "kind", "profile", "description"]).map(",".join),
            st.just("cohort,learner"),
            hostile_text.map(lambda t: t[:200]),
            st.just("\ufeffCOHORT , Learner,device"),
        )
    )
    names = st.one_of(st.from_regex(r"\A[a-z][a-z0-9_-]{0,8}\Z"), short_text, st.sampled_from(["", "-a", "a" * 33]))
    rows = []
    for _ in range(draw(st.integers(0, 5))):
        cells = [
            draw(st.sampled_from([cohort, cohort, cohort, "zz"]) | short_text),
            draw(names),
            draw(names),
            draw(st.sampled_from(KINDS) | short_text),
            draw(st.sampled_from(["", *PROFILES]) | short_text),
            draw(hostile_text),
        ][: draw(st.integers(1, 7))]
        quote = draw(st.booleans())
        rows.append(",".join('"' + c.replace('"', '""') + '"' if quote else c for c in cells))
    text = draw(st.sampled_from(["\n", "\r\n", "\r"])).join([header, *rows])
    return _cap(draw, encode(text))


# Learner-facing HTTP routes: showcases, kits, diagnoses, replays, data packs. Requests are drawn with
# placeholders for the lab's own names (PLACEHOLDERS); the lab puts in the sender's and the canary learner's.
# Paths and queries are already percent-encoded (raw bytes too: invalid UTF-8, traversal): send them as they are.
ME, OTHER, COHORT = "~me~", "~other~", "~cohort~"  # the sender; the canary learner (never the sender's to touch)
SESSION, OTHER_SESSION = "~session~", "~other-session~"  # the sender's stopped demo; the canary's
SLUG, KEY, OTHER_SLUG = "~slug~", "~key~", "~other-slug~"  # the sender's approved showcase and its key; the canary's
NEW_SLUG = "~new~"  # a showcase the sender published in this batch (so revoking it spares the lab's own)
PLACEHOLDERS = (ME, OTHER, COHORT, SESSION, OTHER_SESSION, SLUG, KEY, OTHER_SLUG, NEW_SLUG)

HOSTILE_MARKDOWN = [
    "<script>alert(1)</script>",
    "# Air <script>alert(1)</script>",
    "[x](javascript:alert(1))",
    "[x](JaVaScRiPt:alert(1))",
    "[x](  javascript:alert(1)  )",
    "[x](&#106;avascript:alert(1))",
    "[x](java%0ascript:alert(1))",
    "[x](\tjavascript:alert(1))",
    "<javascript:alert(1)>",
    "[x][r]\n\n[r]: javascript:alert(1)",
    "[x](vbscript:msgbox(1))",
    "[x](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)",
    '[x](https://ok.example "t" onmouseover=alert(1))',
    '[x](https://ok.example/"onmouseover="alert(1))',
    '<a href="javascript:alert(1)">a</a>',
    "<img src=x onerror=alert(1)>",
    "![i](https://evil.example/x.png)",
    "<iframe src=//evil.example></iframe>",
    "<svg onload=alert(1)>",
    "<style>body{display:none}</style>",
    "<!-- x --><div onclick=alert(1)>hi</div>",
    "```\n</code><script>alert(1)</script>\n```",
    "`<script>`",
    "<form action=https://evil.example><input name=p></form>",
    "<base href=https://evil.example/>",
    "<meta http-equiv=refresh content='0;url=https://evil.example'>",
    "> " * 2000,
    "[" * 4000,
    "![" * 2000,
    "*a" * 2000,
    "<a" * 2000,
    "a" * 4001,  # one over the limit
]
TIME_SPELLINGS = [
    "2262-04-11T23:47:16Z",
    "2262-04-12T00:00:00Z",
    "1969-12-31T23:59:59Z",
    "1970-01-01T00:00:00Z",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-11-28T08:00:00",
    "2026-11-28T08:00:00+25:00",
    "2026-13-40",
    "now",
    "-1",
    "0",
    "9223372036",
    "9223372037",
    "1e300",  # finite seconds, infinite nanoseconds
    "-1.7976931348623157e308",
]
NS_EDGES = [0, 1, -1, 2**63 - 1, 2**63, -(2**63), 2**64, 10**30, 2**53 + 1]
SLUG_TEXTS = ["..", ".", "../..", "%2e%2e", "..%2f..%2fetc%2fpasswd", "a" * 61, "a" * 62, "A", "-a", "x%0a", "x%00"]
DEVICE_NAMES = ["aq1", "arm1", "gen1"]
CANARY_NAMES = ["canq", "cang"]
KIT_FILES = ["main.py", "micropython/main.py", "settings.json", "ca.crt", "index.html", "../../etc/passwd", "x.py"]


MAX_SEGMENT = 400  # characters: longer request lines (over 8 KiB encoded) never reach a handler; the commands
# route's hostile paths already show aiohttp's parser refusing them


def segment(text: str) -> str:
    """A path segment or query value as a client writes it: every byte percent-encoded (`/` and `%` arrive as
    text, invalid UTF-8 as its bytes), at most MAX_SEGMENT characters of it."""
    return urllib.parse.quote(text[:MAX_SEGMENT].encode("utf-8", "surrogatepass"), safe="")


def query_string(pairs: Sequence[tuple[str, str]]) -> str:
    return "&".join(f"{segment(k)}={segment(v)}" for k, v in pairs)


learner_names = st.one_of(st.sampled_from([ME, ME, ME, OTHER, "zz", ""]), hostile_text)
device_segments = st.one_of(
    st.sampled_from(DEVICE_NAMES).map(lambda d: f"{COHORT}/{ME}/{d}"),
    st.sampled_from(DEVICE_NAMES).map(lambda d: f"{COHORT}/{ME}/{d}"),
    st.sampled_from(CANARY_NAMES).map(lambda d: f"{COHORT}/{OTHER}/{d}"),
    st.tuples(
        st.sampled_from([COHORT, "zz"]) | hostile_text, learner_names, st.sampled_from(DEVICE_NAMES) | hostile_text
    ).map(lambda parts: "/".join(p if p in PLACEHOLDERS else segment(p) for p in parts)),
    st.sampled_from(["..%2f..%2f..", "%2e%2e/%2e%2e/x", f"{COHORT}/{ME}/..", f"{COHORT}/{ME}/%2e%2e"]),
)
session_ids = st.one_of(
    st.sampled_from([SESSION, SESSION, OTHER_SESSION, "0" * 8, "%2e%2e", "..%2fpack.zip"]), hostile_text.map(segment)
)
slugs = st.one_of(
    st.sampled_from([SLUG, SLUG, OTHER_SLUG, "project-000000"]), st.sampled_from(SLUG_TEXTS), hostile_text.map(segment)
)
share_keys = st.one_of(st.sampled_from([KEY, KEY, KEY + "x", "", "%00"]), hostile_text.map(segment))
times = st.one_of(choice(TIME_SPELLINGS), number_spellings, hostile_text)
ns_values = st.one_of(choice(NS_EDGES), hostile_numbers, json_values)
plot_specs = st.builds(
    lambda device, field: f"{device}:{field}",
    st.sampled_from(DEVICE_NAMES).map(lambda d: f"{COHORT}/{ME}/{d}") | st.just(f"{COHORT}/{OTHER}/canq") | short_text,
    st.sampled_from(["temperature", "level", "pm2_5", "x", "a" * 65, "<b>", ""]) | short_text,
)
markdown = st.one_of(
    choice(HOSTILE_MARKDOWN),
    st.lists(choice(HOSTILE_MARKDOWN[:26]), min_size=2, max_size=6).map("\n\n".join),
    hostile_text,
    json_values,
)
showcase_bodies = st.fixed_dictionaries(
    {
        "learner": st.one_of(
            st.sampled_from([f"{COHORT}/{ME}"] * 4 + [f"{COHORT}/{OTHER}", f"{COHORT}/{ME}/aq1", f"zz/{ME}"]),
            hostile_text,
            json_values,
        ),
        "title": st.one_of(
            st.sampled_from(["My project", "<script>alert(1)</script>", "   "]), hostile_text, json_values
        ),
    },
    optional={
        "description": markdown,
        "devices": st.lists(device_segments, max_size=3) | st.lists(st.just(f"{COHORT}/{ME}/aq1"), min_size=21),
        "plots": st.lists(plot_specs, max_size=5) | json_values,
        "session": st.sampled_from([SESSION, SESSION, OTHER_SESSION]) | hostile_text | json_values,
        "start_ns": ns_values,
        "end_ns": ns_values,
        "show_grade": st.booleans() | json_values,
        "expires_ns": ns_values,
        "public": json_values,
    },
)
approve_bodies = st.fixed_dictionaries({}, optional={"public": json_values, "expires_ns": ns_values})


valid_text = hostile_text.map(lambda t: t.encode("utf-8", "replace").decode())  # no lone surrogates
own_plots = st.lists(
    st.builds(
        lambda device, field: f"{COHORT}/{ME}/{device}:{field}",
        st.sampled_from(DEVICE_NAMES),
        st.sampled_from(["temperature", "level", "pm2_5", "count", "label", "base"]),
    ),
    min_size=1,
    max_size=4,
)
WINDOWS = [(0, 0), (0, 1), (2**63 - 2 * 10**9, 2**63 - 1), (10**18, 10**18 + 31 * 86400 * 10**9)]


@st.composite
def showcase_body(draw: st.DrawFn) -> bytes:
    """A publish request. Mostly one a learner could get through, with one or two hostile parts: any title and
    Markdown, the learner's own demo or plots over windows at the edges (zero-length, at 1970, at the end of
    InfluxDB's time); else anything (types, numbers, nesting, broken JSON)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(json_payload(showcase_bodies))
    body: dict[str, Any] = {
        "learner": f"{COHORT}/{ME}",
        "title": draw(st.sampled_from(["My project", "<script>alert(1)</script>", "a" * 120]) | valid_text),
        "description": draw(choice(HOSTILE_MARKDOWN) | markdown.filter(lambda m: isinstance(m, str)) | valid_text),
    }
    if draw(st.booleans()):
        body |= {"session": SESSION, "show_grade": draw(st.booleans())}
    elif draw(st.booleans()):
        start, end = draw(st.sampled_from(WINDOWS))
        body |= {"start_ns": start, "end_ns": end, "plots": draw(own_plots)}
    hostile_parts = draw(showcase_bodies)
    for key in draw(st.lists(st.sampled_from(sorted(hostile_parts)), max_size=2, unique=True)):
        body[key] = hostile_parts[key]
    if draw(st.booleans()):  # a time at an edge of int64 (bigger ones are refused with the JSON)
        body[draw(st.sampled_from(["start_ns", "end_ns", "expires_ns"]))] = draw(choice(NS_EDGES))
    return _cap(draw, encode(dump(body, ascii_only=draw(st.booleans()))))


@dataclass(frozen=True)
class LearnerRequest:
    """One request of a learner's app to a learner-facing route (placeholders in path, query and body)."""

    surface: str  # which route: showcase/publish, kit, replay/device, pack/learner, ...
    method: str
    path: str  # percent-encoded
    query: str = ""  # percent-encoded
    body: bytes | None = None

    def url(self, names: dict[str, str]) -> str:
        """Path and query with the lab's names in place of the placeholders."""
        text = self.path + (f"?{self.query}" if self.query else "")
        for placeholder, name in names.items():
            text = text.replace(placeholder, segment(name))
        return text

    def data(self, names: dict[str, str]) -> bytes | None:
        body = self.body
        for placeholder, name in names.items():
            body = body.replace(placeholder.encode(), name.encode()) if body is not None else None
        return body

    def foreign(self) -> bool:
        """Aimed at the canary learner (their device, demo, showcase or name): never a 2xx. A listing is not:
        it narrows what it was asked for to the learner's own (its answer must still not name the canary)."""
        if self.surface == "showcase/list":
            return False
        text = self.path + self.query + (self.body or b"").decode("latin-1")
        return any(p in text for p in (OTHER, OTHER_SESSION, OTHER_SLUG))


def _get(surface: str, path: str, query: Sequence[tuple[str, str]] = ()) -> LearnerRequest:
    return LearnerRequest(surface, "GET", path, query_string(query))


def _opt(key: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[tuple[str, str]]]:
    return st.lists(st.tuples(st.just(key), values), max_size=2)


def _publish(body: bytes) -> LearnerRequest:
    return LearnerRequest("showcase/publish", "POST", "/api/showcases", body=body)


# One strategy per learner-facing route; a batch sends one request of each (LEARNER_MIX: publishing and visiting
# twice), so every route is in every batch whatever Hypothesis favours.
LEARNER_ROUTES: dict[str, st.SearchStrategy[LearnerRequest]] = {
    "showcase/publish": st.builds(_publish, showcase_body()),
    "showcase/approve": st.builds(
        lambda s, b: LearnerRequest("showcase/approve", "POST", f"/api/showcases/{s}/approve", body=b),
        slugs | st.just(NEW_SLUG),
        json_payload(approve_bodies),
    ),
    "showcase/revoke": st.builds(
        lambda s: LearnerRequest("showcase/revoke", "DELETE", f"/api/showcases/{s}"),
        st.sampled_from([NEW_SLUG, NEW_SLUG, OTHER_SLUG]) | slugs.filter(lambda s: s != SLUG),
    ),
    "showcase/list": st.builds(
        lambda cohort, learner: _get("showcase/list", "/api/showcases", cohort + learner),
        _opt("cohort", st.sampled_from([COHORT, "zz"]) | hostile_text),
        _opt("learner", learner_names),
    ),
    "showcase/visit": st.builds(  # half of them the sender's own showcase, half of those with its key
        lambda s, tail, k: _get("showcase/visit", f"/showcase/{s}{tail}", k),
        st.just(SLUG) | slugs,
        st.sampled_from(["", "", "/play", "/replay", "/pack.zip"]),
        st.just([("k", KEY)]) | st.lists(st.tuples(st.sampled_from(["k", "k", "showcase"]), share_keys), max_size=2),
    ),
    "showcase/demo-day": st.builds(
        lambda c: _get("showcase/demo-day", f"/demo-day/{c}"),
        st.sampled_from([COHORT, "zz"]) | hostile_text.map(segment),
    ),
    "kit": st.builds(
        lambda d, f: _get("kit", f"/api/devices/{d}/kit", f),
        device_segments,
        _opt("file", choice(KIT_FILES) | hostile_text),
    ),
    "diagnosis": st.builds(lambda d: _get("diagnosis", f"/api/devices/{d}/diagnosis"), device_segments),
    "replay/device": st.builds(
        lambda d, f, t, s: _get("replay/device", f"/api/devices/{d}/replay", f + t + s),
        device_segments,
        _opt("from", times),
        _opt("to", times),
        _opt("speed", number_spellings),
    ),
    "replay/session": st.builds(
        lambda i, s: _get("replay/session", f"/api/sessions/{i}/replay", s),
        session_ids,
        _opt("speed", number_spellings),
    ),
    "replay/page": st.builds(
        lambda q: _get("replay/page", "/dashboard/replay", q),
        st.lists(
            st.tuples(st.sampled_from(["session", "t", "speed", "showcase", "k"]), times | st.just(SESSION)), max_size=4
        ),
    ),
    "pack/session": st.builds(lambda i: _get("pack/session", f"/api/sessions/{i}/pack.zip"), session_ids),
    "pack/learner": st.builds(
        lambda cohort, learner: _get("pack/learner", f"/api/learners/{cohort}/{learner}/pack.zip"),
        st.sampled_from([COHORT, COHORT, "zz"]) | hostile_text.map(segment),
        learner_names.map(lambda name: name if name in PLACEHOLDERS else segment(name)),
    ),
    "showcase/rekey": st.builds(  # never the sender's own (its link is visited with its key)
        lambda s: LearnerRequest("showcase/rekey", "POST", f"/api/showcases/{s}/key"),
        st.sampled_from([NEW_SLUG, NEW_SLUG, OTHER_SLUG]) | slugs.filter(lambda s: s != SLUG),
    ),
}
# A batch's requests alternate between ana's and ben's apps: re-keying, the last route added, goes last and twice
# (once from each app, after their publishing), so the mix stays even and every other route keeps its sender.
LEARNER_MIX = [*(r for r in LEARNER_ROUTES if r != "showcase/rekey"), "showcase/publish", "showcase/visit"]
LEARNER_MIX += ["showcase/rekey", "showcase/rekey"]
learner_requests = st.tuples(*(LEARNER_ROUTES[name] for name in LEARNER_MIX)).map(list)


def _publish_json(**fields: Any) -> LearnerRequest:
    return _publish(json.dumps({"learner": f"{COHORT}/{ME}", "title": "Edge", **fields}).encode())


# Requests that name their edge, sent once (the first batch ends with them): the fuzz finds these only by luck.
KNOWN_LEARNER_REQUESTS = [
    _publish_json(expires_ns=2**63),  # one past int64: fits the JSON limit of 19 digits, not SQLite
    _publish_json(learner=f"{COHORT}/{OTHER}", description="mine now"),
    _publish_json(session=OTHER_SESSION),
    _publish_json(plots=[f"{COHORT}/{OTHER}/canq:temperature"], start_ns=0, end_ns=1),
    _publish_json(title="\x00\x1b[2J", description="[" * 4000),
    _get("replay/device", f"/api/devices/{COHORT}/{ME}/aq1/replay", [("to", str(2**63 - 1)), ("from", "0")]),
    _get("replay/device", f"/api/devices/{COHORT}/{ME}/aq1/replay", [("from", "1e300")]),
    _get("showcase/visit", f"/showcase/{SLUG}/pack.zip", [("k", KEY)]),
    _get("kit", f"/api/devices/{COHORT}/{ME}/aq1/kit", [("file", "../../../etc/passwd")]),
    _publish_json(expires_ns=2**63 - 1, session=SESSION, show_grade=True, description=HOSTILE_MARKDOWN[2]),
    _publish_json(plots=[f"{COHORT}/{ME}/aq1:temperature"], start_ns=2**63 - 2 * 10**9, end_ns=2**63 - 1),
    _get("pack/learner", f"/api/learners/{COHORT}/{ME}/pack.zip"),
    _publish_json(plots=[f"{COHORT}/{ME}/gen1:level", f"{COHORT}/{ME}/gen1:label"], start_ns=0, end_ns=0),
    # A lost link, re-keyed: each app publishes, then re-keys what it just published (requests alternate between
    # the two apps, so this pattern gives each one a publish and then its re-key wherever the list starts). In
    # the drawn mix a re-key of the app's newest showcase often meets a revoke before it (409), or no new one.
    _publish_json(title="Lost link"),
    _publish_json(title="Lost link"),
    LearnerRequest("showcase/rekey", "POST", f"/api/showcases/{NEW_SLUG}/key"),
    LearnerRequest("showcase/rekey", "POST", f"/api/showcases/{NEW_SLUG}/key"),
]


_SAFE_URL = re.compile(r"(https?:|mailto:|/|#|data:,$)")
_UNSAFE_TAGS = {"script", "img", "iframe", "object", "embed", "form", "input", "base", "meta", "link", "style"}


def unsafe_html(page: str, allowed: Sequence[tuple[str, str]] = ()) -> list[str]:
    """What a page holds that could run or load something a learner typed: active elements (script, img, iframe,
    form, style, meta, link, ...) beyond the page's own, listed in `allowed` as (tag, a piece of its attributes)
    and each allowed once; `on…` handlers; URLs in href/src/action other than http(s), mailto, the site's own
    paths and the empty `data:,` icon."""
    found: list[str] = []
    spare = list(allowed)

    class Scan(html.parser.HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            text = " ".join(f"{k}={v}" for k, v in attrs)
            if tag in _UNSAFE_TAGS:
                own = next((a for a in spare if a[0] == tag and a[1] in text), None)
                if own is None:
                    found.append(f"<{tag} {text[:120]}>")
                else:
                    spare.remove(own)
            for name, value in attrs:
                url = re.sub(r"[\x00-\x20]", "", value or "").lower()
                if name.startswith("on"):
                    found.append(f"<{tag}> has a handler {name}={str(value)[:80]!r}")
                elif name in ("href", "src", "action", "formaction", "xlink:href") and not _SAFE_URL.match(url):
                    found.append(f"<{tag}> {name}={str(value)[:80]!r}")

    Scan(convert_charrefs=True).feed(page)
    return found


# What must hold: every series in InfluxDB belongs to its sender ---------------------------------------------------

COMMAND_STATES = {"queued", "sent", "accepted", "done", "rejected", "timed_out", "failed", "refused"}
EVIDENCE_TAGS = {
    "rejections": {"code"},
    "presence": set(),
    "commands": {"type", "state"},
    "diagnoses": {"code", "severity"},
}


def reading_measurement(kind: str, ref: DeviceRef) -> str:
    """Where the hub writes a device's readings (one per fixed kind; open kinds may have one per learner)."""
    spec = DEVICE_KINDS[kind]
    per_learner = getattr(spec, "measurement_for", None)
    return str(per_learner(ref.cohort, ref.learner)) if per_learner is not None else spec.measurement


def allowed_series(devices: Sequence[tuple[DeviceRef, str]]) -> dict[tuple[str, str, str], set[str]]:
    """(cohort, learner, device) → the measurements the hub may write for it: its readings, its rejections,
    presence and the lab doctor's findings, and (arms) its commands."""
    allowed = {}
    for ref, kind in devices:
        ok = {reading_measurement(kind, ref), "rejections", "presence", "diagnoses"}
        if kind == "arm":
            ok.add("commands")
        allowed[(ref.cohort, ref.learner, ref.device)] = ok
    return allowed


def split_escaped(text: str, sep: str) -> list[str]:
    """Split line-protocol text on `sep`, honouring backslash escapes (kept, for unescape)."""
    parts, current, i = [], [], 0
    while i < len(text):
        c = text[i]
        if c == "\\" and i + 1 < len(text):
            current.append(text[i : i + 2])
            i += 2
            continue
        if c == sep:
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    parts.append("".join(current))
    return parts


def unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text, flags=re.S)


def parse_series_key(key: str) -> tuple[str, dict[str, str]]:
    """`measurement,tag=value,…` as SHOW SERIES writes it (escaped) → measurement and tags."""
    parts = split_escaped(key, ",")
    tags = {}
    for part in parts[1:]:
        name, *value = split_escaped(part, "=")
        tags[unescape(name)] = unescape("=".join(value))
    return unescape(parts[0]), tags


def foreign_points(
    series_keys: Sequence[str], field_keys: dict[str, list[str]], allowed: dict[tuple[str, str, str], set[str]]
) -> list[str]:
    """What is wrong with a database's series (SHOW SERIES keys) and fields (SHOW FIELD KEYS, by measurement):
    a series of no known device, a measurement its device may not write, tags beyond the hub's own or outside
    their closed vocabularies, field names no learner may use."""
    problems = []
    for key in series_keys:
        measurement, tags = parse_series_key(key)
        who = (tags.pop("cohort", ""), tags.pop("learner", ""), tags.pop("device", ""))
        where = f"series {key[:200]!r}"
        if who not in allowed:
            problems.append(f"foreign point: {where} is not tagged with a device of this lab")
            continue
        if measurement not in allowed[who]:
            problems.append(f"foreign point: {where}: {'/'.join(who)} may not write measurement {measurement!r}")
            continue
        extra = EVIDENCE_TAGS.get(measurement, set())
        if set(tags) != extra:
            problems.append(f"foreign point: {where} has tags {sorted(tags)} (expected {sorted(extra)})")
        if measurement == "rejections" and tags.get("code") not in CATALOGUE:
            problems.append(f"open vocabulary: {where}: code {tags.get('code')!r} is not an error code")
        if measurement == "diagnoses" and (
            tags.get("code") not in DIAGNOSES or tags.get("severity") not in SEVERITY.values()
        ):
            problems.append(f"open vocabulary: {where}: a finding's code or severity is not the doctor's")
        if measurement == "commands":
            if tags.get("type") not in {*COMMAND_TYPES, "?", "other"}:  # "other": any other text, kept in a field
                problems.append(f"open vocabulary: {where}: command type {tags.get('type')!r} is a learner's text")
            if tags.get("state") not in COMMAND_STATES:
                problems.append(f"open vocabulary: {where}: command state {tags.get('state')!r}")
    for measurement, names in field_keys.items():
        for name in names:
            if measurement == "air_quality":
                ok = name in DEVICE_KINDS["air_quality"].fields
            else:
                ok = bool(FIELD_NAME_RE.fullmatch(name)) and name not in RESERVED_NAMES
            if not ok:
                problems.append(f"foreign field: {measurement[:80]!r} has a field named {name[:80]!r}")
    return problems


# Drawing pools outside a test (the long-run benchmark) ----------------------------------------------------------


def draw(strategy: st.SearchStrategy[T], count: int, seed_value: int = 0) -> list[T]:
    """`count` examples of `strategy`, deterministic for a seed (Hypothesis as a generator; no shrinking)."""
    out: list[T] = []

    @seed(seed_value)
    @settings(
        max_examples=count,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def collect(value: T) -> None:
        out.append(value)

    collect()
    return out


def mutate(rng: random.Random, payload: bytes, pool: Sequence[bytes]) -> bytes:
    """A cheap variation of a drawn payload: flip bytes, cut it, splice another in, repeat a piece."""
    how = rng.randrange(6)
    if not payload or how == 0:
        return payload
    if how == 1:
        data = bytearray(payload)
        for _ in range(rng.randint(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        return bytes(data)
    if how == 2:
        return payload[: rng.randrange(len(payload) + 1)]
    if how == 3:
        other = pool[rng.randrange(len(pool))]
        cut = rng.randrange(len(payload) + 1)
        return payload[:cut] + other[rng.randrange(len(other) + 1) :]
    if how == 4:
        i = rng.randrange(len(payload))
        return payload[:i] + payload[i : i + 8] * rng.randint(2, 200) + payload[i:]
    return payload.replace(b"1", rng.choice([b"1e999", b"9" * 400, b"NaN", b"\\udc80"]), 1)
