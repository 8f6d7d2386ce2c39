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
