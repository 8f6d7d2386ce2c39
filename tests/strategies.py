"""Valid-looking device input for property tests: Hypothesis strategies whose cases say what the hub must do.

`tests/hostile.py` draws garbage; most of it is refused at the first check it meets (a topic that is not
`lab/…`, bytes that are not UTF-8), so a property fed only with it never reaches the code it names. The
strategies here draw what a learner's board sends (routable topics, JSON objects, line protocol and bare values
of the right shape, numbers and timestamps on the edges of what is accepted), the same with exactly one
mistake, and garbage, in proportions that keep most examples on the path a property targets.

Every case carries its expected outcome, computed from the generated input by the README's rules (never by
the hub's code): the exact readings to store (JSON numbers become floats, `42i` stays an integer, timestamps
scaled from their unit), or the code to refuse it with, or nothing (garbage: any verdict, but a catalogued
one). Pure: no I/O.
"""

from __future__ import annotations

import json
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from tests import hostile

NOW_NS = 1_800_000_000 * 10**9  # the hub's clock in these tests (a multiple of every timestamp unit)
LIMIT = 16384  # the default payload cap
PAST_NS = 30 * 86400 * 10**9  # the README's window: 30 days back, 10 minutes ahead
FUTURE_NS = 10 * 60 * 10**9
UNITS = {"s": 10**9, "ms": 10**6, "us": 10**3, "ns": 1}

FieldValue = float | int | bool | str
T = TypeVar("T")


@dataclass(frozen=True)
class Expected:
    """One reading the hub must store: the fields as InfluxDB must hold them, and the device's timestamp."""

    fields: Mapping[str, FieldValue]
    ts_ns: int | None = None


@dataclass(frozen=True)
class Case:
    """A payload and what must become of it: `readings` stored, or refused with `code` first, or (garbage,
    both None) either, with a catalogued code."""

    label: str  # the generator that made it (a Hypothesis event)
    payload: bytes
    kind: str = "generic"
    field: str | None = None  # a bare value's field (…/telemetry/<field>)
    names: frozenset[str] = frozenset()  # field names the device has already used (open kinds)
    readings: tuple[Expected, ...] | None = None
    code: str | None = None

    @property
    def verdict(self) -> str:
        return "accept" if self.readings is not None else "refuse" if self.code is not None else "any"


def pick(draw: st.DrawFn, n: int) -> int:
    """One of 0…n-1, uniformly. (Hypothesis draws 0 from a small integer range in nearly half the examples, which
    would starve every branch but the first.)"""
    return draw(st.randoms(use_true_random=False)).randrange(n)


def uniform(items: list[T]) -> st.SearchStrategy[T]:
    """sampled_from, uniformly (see pick)."""

    @st.composite
    def one(draw: st.DrawFn) -> T:
        return items[pick(draw, len(items))]

    return one()


# Topics -------------------------------------------------------------------------------------------------------

SEGMENT_FIRST = string.ascii_letters + string.digits
SEGMENT_CHARS = SEGMENT_FIRST + "_-"
segments = st.one_of(
    st.builds(str.__add__, st.sampled_from(SEGMENT_FIRST), st.text(SEGMENT_CHARS, max_size=12)),
    st.builds(str.__add__, st.sampled_from(SEGMENT_FIRST), st.text(SEGMENT_CHARS, min_size=31, max_size=31)),
    st.sampled_from(["demo", "ana", "aq1", "0", "A-_", "x" * 32]),
)


@st.composite
def bad_segments(draw: st.DrawFn) -> str:
    """A level that is one mistake away from a valid name (never containing `/`)."""
    base = draw(segments)
    how = pick(draw, 5)
    if how == 0:
        return ""
    if how == 1:
        return (base * 33)[:33]  # one character too long
    if how == 2:
        return draw(st.sampled_from("_-")) + base[1:]
    i = draw(st.integers(0, len(base)))
    bad = draw(st.sampled_from([" ", ".", "é", "+", "#", "$", "\n", "\x00", "💡", "\\", ":"]))
    return base[:i] + bad + base[i:]


@dataclass(frozen=True)
class TopicCase:
    topic: str
    parts: tuple[str, str, str, str, str | None] | None  # (cohort, learner, device, channel, field) or refused
    label: str


CHANNELS = ["telemetry", "status", "ack", "errors", "commands"]
TOPIC_RE = re.compile(
    r"lab/([A-Za-z0-9][A-Za-z0-9_-]{0,31})/([A-Za-z0-9][A-Za-z0-9_-]{0,31})/([A-Za-z0-9][A-Za-z0-9_-]{0,31})/"
    r"(?:(telemetry)(?:/([^/]*))?|(status|ack|errors)|(commands)(?:/(request|result))?)"
)


def topic_oracle(topic: str) -> tuple[str, str, str, str, str | None] | None:
    """The README's topic contract as one regular expression (independent of devices.topics)."""
    m = TOPIC_RE.fullmatch(topic)
    if m is None:
        return None
    cohort, learner, device, telemetry, field_name, plain, commands, sub = m.groups()
    if telemetry:
        return cohort, learner, device, telemetry, field_name
    if plain:
        return cohort, learner, device, plain, None
    return cohort, learner, device, commands, sub


field_names = st.one_of(
    st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,15}\Z"),
    st.builds(
        str.__add__,
        st.sampled_from(string.ascii_letters),
        st.text(string.ascii_letters + "_", min_size=63, max_size=63),
    ),
    st.sampled_from(["temperature", "count", "level", "on", "label", "x", "T", "tsx", "Time", "cohort2"]),
).filter(lambda n: n not in ("cohort", "learner", "device", "time", "ts", "timestamp"))


@st.composite
def valid_topics(draw: st.DrawFn, channel: str | None = None, field_name: str | None = None) -> TopicCase:
    cohort, learner, device = draw(segments), draw(segments), draw(segments)
    sub: str | None = field_name
    if channel is None:
        channel = draw(uniform(CHANNELS))
        if channel == "telemetry" and draw(st.booleans()):
            sub = draw(field_names | st.sampled_from(["", "pm25", "a b", "é"]))
        elif channel == "commands" and draw(st.booleans()):
            sub = draw(st.sampled_from(["request", "result"]))
    topic = f"lab/{cohort}/{learner}/{device}/{channel}" + ("" if sub is None else f"/{sub}")
    return TopicCase(topic, (cohort, learner, device, channel, sub), f"valid {channel}" + ("/…" if sub else ""))


@st.composite
def near_valid_topics(draw: st.DrawFn) -> TopicCase:
    """A routable topic with exactly one mistake."""
    good = draw(valid_topics())
    levels = good.topic.split("/")
    how = pick(draw, 6)
    if how == 0:
        levels[0] = draw(st.sampled_from(["Lab", "lab2", "", "labs", " lab", "$SYS"]))
        label = "bad root"
    elif how == 1:
        levels[draw(st.integers(1, 3))] = draw(bad_segments())
        label = "bad name level"
    elif how == 2:
        levels[4] = draw(st.sampled_from(["telemetri", "Telemetry", "status2", "command", "", "telemetry "]))
        label = "unknown channel"
    elif how == 3:
        levels = [*levels[:4], draw(st.sampled_from(["status", "ack", "errors"])), "x"]
        label = "sixth level on a plain channel"
    elif how == 4:
        levels = [*levels[:4], "commands", draw(st.sampled_from(["req", "results", "", "Request"]))]
        label = "unknown commands level"
    else:
        levels = draw(st.sampled_from([levels[:4], [*levels[:5], "a", "b"], ["", *levels], [*levels, "x", ""]]))
        label = "wrong depth"
    topic = "/".join(levels)
    return TopicCase(topic, None, f"near-valid: {label}")


garbage_topics = st.one_of(st.text(max_size=60), st.text(st.sampled_from("lab/+#$ aé\x00-_1"), max_size=40)).map(
    lambda t: TopicCase(t, topic_oracle(t), "garbage")
)
# Mostly routable topics, a quarter one mistake away, the rest garbage.
topic_cases = st.one_of(valid_topics(), valid_topics(), valid_topics(), near_valid_topics(), garbage_topics)


# Values ---------------------------------------------------------------------------------------------------------

BOUNDARY_FLOATS = [
    0.0,
    -0.0,
    5e-324,
    -5e-324,
    2.2250738585072014e-308,
    1.7976931348623157e308,
    -1.7976931348623157e308,
    0.1,
    1e16,
    2.0**53,
    1e-7,
    21.5,
]
BOUNDARY_INTS = [0, -1, 1, 2**63 - 1, -(2**63), 2**53, 2**53 + 1, 2**31, -(2**31) - 1]
finite_floats = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.sampled_from(BOUNDARY_FLOATS))
int64s = st.one_of(st.integers(-(2**63), 2**63 - 1), st.integers(-1000, 1000), st.sampled_from(BOUNDARY_INTS))
# Text a learner may store: no control characters, no lone surrogates (refused); every line-protocol special.
STRING_SPECIALS = [
    '"',
    "\\",
    ",",
    "=",
    " ",
    "#",
    "{",
    "é",
    "💡",
    "\ufeff",
    "\u202e",
    "\uffff",
    "'",
    ":",
    "\u2028",
    "\u2029",
]
_text_chars = st.characters(exclude_categories=("Cs", "Cc"))


@st.composite
def _specials_inside(draw: st.DrawFn) -> str:
    """Text with up to four specials at random places (left to Hypothesis, a text rarely holds any)."""
    text = draw(st.text(_text_chars, max_size=30))
    for _ in range(pick(draw, 5)):
        i = draw(st.integers(0, len(text)))
        text = text[:i] + STRING_SPECIALS[pick(draw, len(STRING_SPECIALS))] + text[i:]
    return text


safe_strings = st.one_of(
    _specials_inside(),
    st.builds(lambda c, n: (c * 256)[:n], _specials_inside().filter(bool), st.sampled_from([255, 256])),
)
lp_strings = safe_strings


def stored(value: FieldValue, source: str) -> FieldValue:
    """How InfluxDB must hold a value sent as `source` (README, Numbers): JSON and bare numbers as floats."""
    if type(value) is int and source != "line_protocol":
        return float(value)
    return value


@st.composite
def timestamps(draw: st.DrawFn, json_form: bool) -> tuple[str, int]:
    """A device timestamp inside the window, in any unit (and, in JSON, as a float of seconds or ms): the text
    to send and the nanoseconds it means."""
    unit = draw(uniform(list(UNITS)))
    offset = draw(st.one_of(st.integers(-PAST_NS, FUTURE_NS), st.sampled_from([-PAST_NS, FUTURE_NS, 0])))
    scale = UNITS[unit]
    raw = (NOW_NS + offset) // scale  # NOW_NS - PAST_NS is a multiple of every scale: still inside
    if json_form and unit in ("s", "ms") and draw(st.booleans()):
        quarters = pick(draw, 4)  # exact in binary: no rounding question
        if raw * scale + quarters * scale // 4 <= NOW_NS + FUTURE_NS:
            return repr(raw + quarters / 4), raw * scale + quarters * scale // 4
    return str(raw), raw * scale


@st.composite
def bad_timestamps(draw: st.DrawFn) -> tuple[str, str]:
    """(text, code): one unit outside the window, a board's uptime, or no number at all."""
    unit = draw(uniform(list(UNITS)))
    scale = UNITS[unit]
    how = pick(draw, 4)
    if how == 0:
        return str((NOW_NS - PAST_NS) // scale - 1), "timestamp_out_of_range"
    if how == 1:
        return str((NOW_NS + FUTURE_NS) // scale + 1), "timestamp_out_of_range"
    if how == 2:
        return str(draw(st.integers(0, 10**9 - 1))), "timestamp_since_boot"
    return draw(st.sampled_from(['"now"', "true", "[]", '"1800000000"'])), "timestamp_invalid"


# JSON -------------------------------------------------------------------------------------------------------------

generic_values = st.one_of(finite_floats, int64s, st.booleans(), safe_strings)


def _json_text(items: list[tuple[str, str]], draw: st.DrawFn) -> str:
    """A JSON object from (key, value text) pairs, spaced as boards do."""
    colon, comma = draw(st.sampled_from([(":", ","), (": ", ", "), (" : ", " ,\n ")]))
    return "{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in items) + "}"


def _dump(value: Any, ascii_only: bool) -> str:
    return json.dumps(value, ensure_ascii=ascii_only)


def _history(count: int, avoid: Mapping[str, object]) -> frozenset[str]:
    """`count` (at most 64) field names a device used before, none of them in `avoid`."""
    return frozenset([f"old{i}" for i in range(200) if f"old{i}" not in avoid][: min(64, count)])


@st.composite
def generic_json(draw: st.DrawFn, history: bool = False) -> Case:
    """A valid reading of an open kind, as JSON: 1–8 fields (sometimes exactly the 64 allowed), maybe a timestamp;
    with `history`, sometimes from a device whose earlier names leave exactly enough room (64 in all)."""
    if pick(draw, 20) == 0:
        values: dict[str, Any] = {f"f{i}": float(i) for i in range(64)}
    else:
        values = draw(st.dictionaries(field_names, generic_values, min_size=1, max_size=8))
    ascii_only = draw(st.booleans())
    items = [(k, _dump(v, ascii_only)) for k, v in values.items()]
    ts_ns = None
    if draw(st.booleans()):
        text, ts_ns = draw(timestamps(json_form=True))
        items.insert(draw(st.integers(0, len(items))), (draw(st.sampled_from(["ts", "time", "timestamp"])), text))
    payload = _json_text(items, draw).encode()
    if pick(draw, 30) == 0 and len(payload) < LIMIT:
        payload += b" " * (LIMIT - len(payload))  # exactly at the size limit
    names = _history(64 - len(values), values) if history and pick(draw, 5) == 0 else frozenset()
    expected = Expected({k: stored(v, "json") for k, v in values.items()}, ts_ns)
    return Case("json valid", payload, names=names, readings=(expected,))


# (name, value text, code): one wrong field added to a valid reading of an open kind.
GENERIC_FIELD_DEFECTS: list[tuple[str, str, str]] = [
    ("9lives", "1", "bad_field_name"),
    ("_x", "1", "bad_field_name"),
    ("a b", "1", "bad_field_name"),
    ("a-b", "1", "bad_field_name"),
    ("é", "1", "bad_field_name"),
    ("", "1", "bad_field_name"),
    ("a" * 65, "1", "bad_field_name"),
    ("cohort", "1", "reserved_field_name"),
    ("device", '"x"', "reserved_field_name"),
    ("learner", "true", "reserved_field_name"),
    ("s", json.dumps("x" * 257), "string_too_long"),
    ("s", json.dumps("a\x00b"), "control_character"),
    ("s", json.dumps("tab\there"), "control_character"),
    ("s", json.dumps("\x7f"), "control_character"),
    ("v", "NaN", "not_finite"),
    ("v", "-Infinity", "not_finite"),
    ("v", str(2**63), "integer_too_large"),
    ("v", str(-(2**63) - 1), "integer_too_large"),
    ("v", "1" + "0" * 30, "integer_too_large"),
    ("v", "null", "wrong_type"),
    ("v", "[1, 2]", "wrong_type"),
    ("v", '{"a": 1}', "wrong_type"),
    ("v", '"\\udc80"', "invalid_unicode"),
    ("\udc80", "1", "invalid_unicode"),  # a key spelled with a lone surrogate escape
]


@st.composite
def generic_json_defects(draw: st.DrawFn, distinct: bool = True) -> Case:
    """A valid open-kind reading with exactly one mistake, and the code that names it."""
    base = draw(st.dictionaries(field_names, st.one_of(finite_floats, st.booleans()), min_size=1, max_size=4))
    items = [(k, json.dumps(v)) for k, v in base.items()]
    how = pick(draw, 7 if distinct else 6)
    names: frozenset[str] = frozenset()
    if how <= 1:
        name, value, code = draw(uniform(GENERIC_FIELD_DEFECTS))
        if name in base:
            return draw(generic_json_defects(distinct))
        items.insert(draw(st.integers(0, len(items))), (name, value))
    elif how == 2:
        text, code = draw(bad_timestamps())
        items.append((draw(st.sampled_from(["ts", "time", "timestamp"])), text))
    elif how == 3:
        first, _ = draw(timestamps(json_form=True))
        second, _ = draw(timestamps(json_form=True))
        items += [("ts", first), (draw(st.sampled_from(["time", "timestamp"])), second)]
        code = "two_timestamps"
    elif how == 4:
        items = [(f"f{i}", "1") for i in range(draw(st.sampled_from([65, 66, 100])))]
        code = "too_many_fields"
    elif how == 5:
        items = []
        code = "empty_reading"
    else:  # the device has used names before: one new name too many (64 is the cap)
        names = _history(64 - len(base) + draw(st.integers(1, 3)), base)
        code = "too_many_distinct_fields"
    return Case(f"json defect: {code}", _json_text(items, draw).encode(), names=names, code=code)


@st.composite
def json_syntax_defects(draw: st.DrawFn) -> Case:
    """The beginner's JSON mistakes the README names, on a reading of numbers."""
    values = draw(
        st.dictionaries(st.from_regex(r"\A[a-z][a-z0-9_]{0,8}\Z"), st.integers(0, 999), min_size=1, max_size=4)
    )
    text = json.dumps(values)
    how = pick(draw, 6)
    if how == 0:
        return Case(
            "json syntax: unquoted keys", re.sub(r'"([a-z0-9_]+)":', r"\1:", text).encode(), code="json_unquoted_key"
        )
    if how == 1:
        return Case("json syntax: single quotes", text.replace('"', "'").encode(), code="json_single_quotes")
    if how == 2:
        return Case("json syntax: trailing comma", (text[:-1] + ",}").encode(), code="json_trailing_comma")
    if how == 3:
        arr = draw(st.sampled_from(["[1, 2]", '"text"', "[]", '[{"a": 1}]']))
        return Case("json syntax: not an object", arr.encode(), code="not_an_object")
    if how == 4:
        depth = draw(st.sampled_from([2000, 5000, 8000]))
        return Case("json syntax: too deep", b"[" * depth + b"]" * depth, code="json_too_deep")
    return Case("json syntax: cut short", text[:-1].encode(), code="invalid_json")


AQ_FIELDS = {  # the README's table: (minimum, maximum)
    "pm1": (0.0, 1000.0),
    "pm2_5": (0.0, 1000.0),
    "pm10": (0.0, 1000.0),
    "co2": (0.0, 40000.0),
    "eco2": (400.0, 60000.0),
    "tvoc": (0.0, 60000.0),
    "temperature": (-40.0, 85.0),
    "humidity": (0.0, 100.0),
    "pressure": (300.0, 1100.0),
}


@st.composite
def aq_value(draw: st.DrawFn, name: str) -> int | float:
    low, high = AQ_FIELDS[name]
    return draw(
        st.one_of(
            st.floats(low, high),
            st.sampled_from([low, high, math.nextafter(low, math.inf), math.nextafter(high, -math.inf)]),
            st.integers(math.ceil(low), math.floor(high)),
        )
    )


@st.composite
def aq_json(draw: st.DrawFn) -> Case:
    """A valid air-quality reading: known fields, values anywhere in range, edges included."""
    names = draw(st.lists(st.sampled_from(list(AQ_FIELDS)), min_size=1, max_size=9, unique=True))
    values = {n: draw(aq_value(n)) for n in names}
    items = [(k, json.dumps(v)) for k, v in values.items()]
    ts_ns = None
    if pick(draw, 4) == 0:
        text, ts_ns = draw(timestamps(json_form=True))
        items.append(("ts", text))
    expected = Expected({k: float(v) for k, v in values.items()}, ts_ns)
    return Case("json valid", _json_text(items, draw).encode(), kind="air_quality", readings=(expected,))


@st.composite
def aq_defect_field(draw: st.DrawFn) -> tuple[str, str, str]:
    """(name, value text, code): one wrong air-quality field."""
    name = draw(st.sampled_from(list(AQ_FIELDS)))
    low, high = AQ_FIELDS[name]
    return draw(
        uniform(
            [
                (name, repr(math.nextafter(low, -math.inf)), "out_of_range"),
                (name, repr(math.nextafter(high, math.inf)), "out_of_range"),
                (name, repr(high + 1), "out_of_range"),
                (name, "NaN", "not_finite"),
                (name, '"12.5"', "number_as_string"),
                (name, "true", "wrong_type"),
                (name, "null", "wrong_type"),
                (name, '"twelve"', "wrong_type"),
                (name, str(2**64), "integer_too_large"),
                ("pm25", "12.4", "unknown_field_suggest"),
                ("temp", "21.5", "unknown_field_suggest"),
                ("Temperature", "21.5", "unknown_field_suggest"),
                ("xyzzy", "1", "unknown_field"),
            ]
        )
    )


@st.composite
def aq_json_defects(draw: st.DrawFn) -> Case:
    names = draw(st.lists(st.sampled_from(list(AQ_FIELDS)), min_size=0, max_size=4, unique=True))
    bad_name, bad_value, code = draw(aq_defect_field())
    items = [(n, json.dumps(draw(aq_value(n)))) for n in names if n != bad_name]
    items.insert(draw(st.integers(0, len(items))), (bad_name, bad_value))
    return Case(f"json defect: {code}", _json_text(items, draw).encode(), kind="air_quality", code=code)


# Line protocol ----------------------------------------------------------------------------------------------------

LP_TRUE = ["t", "T", "true", "True", "TRUE"]
LP_FALSE = ["f", "F", "false", "False", "FALSE"]


def lp_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@st.composite
def lp_value(draw: st.DrawFn, value: FieldValue) -> str:
    """Line-protocol text for a value, in one of its spellings."""
    if value is True or value is False:
        return draw(st.sampled_from(LP_TRUE if value else LP_FALSE))
    if type(value) is int:
        return f"{value}{draw(st.sampled_from(['i', 'u']))}" if value >= 0 else f"{value}i"
    if type(value) is float:
        if value.is_integer() and abs(value) < 1e15 and draw(st.booleans()):
            return str(int(value))  # "21" is a float in line protocol
        return repr(value)
    assert isinstance(value, str)
    return lp_string(value)


@st.composite
def lp_head(draw: st.DrawFn) -> str:
    """Measurement and tags, which the hub ignores (it sets its own): even ones that name other devices."""
    measurement = draw(st.sampled_from(["m", "air", "air_quality", "generic.zz.zz", "a\\ b", "a\\,b", "é"]))
    tags = draw(st.lists(st.sampled_from(["t=1", "cohort=zz", "device=x\\ y", "learner=a\\,b", "k=v\\=w"]), max_size=3))
    return ",".join([measurement, *tags])


@st.composite
def lp_line(draw: st.DrawFn, values_strategy: st.SearchStrategy[dict[str, FieldValue]]) -> tuple[str, Expected]:
    values = draw(values_strategy)
    fields = ",".join(f"{k}={draw(lp_value(v))}" for k, v in values.items())
    gap = draw(st.sampled_from([" ", " ", "  "]))
    line = f"{draw(lp_head())}{gap}{fields}"
    ts_ns = None
    if draw(st.booleans()):
        text, ts_ns = draw(timestamps(json_form=False))
        line += f"{gap}{text}"
    return line, Expected(dict(values), ts_ns)


lp_generic_values = st.dictionaries(
    field_names, st.one_of(finite_floats, int64s, st.booleans(), lp_strings), min_size=1, max_size=6
)


@st.composite
def lp_readings(draw: st.DrawFn, kind: str = "generic") -> Case:
    """One to three valid readings in line protocol (comments and blank lines between them)."""
    if kind == "generic":
        values: st.SearchStrategy[dict[str, FieldValue]] = lp_generic_values
    else:
        values = st.lists(st.sampled_from(list(AQ_FIELDS)), min_size=1, max_size=5, unique=True).flatmap(
            lambda names: st.fixed_dictionaries({n: aq_value(n).map(float) for n in names})
        )
    lines = draw(st.lists(lp_line(values), min_size=1, max_size=3))
    # One type per field in a message: the hub does not yet refuse a field changing type between two lines of one
    # message (see test_fuzz's known-bug test), so such messages are not drawn as valid ones.
    types: dict[str, type] = {}
    lines = [
        (line, e) for line, e in lines if all(types.setdefault(k, type(v)) is type(v) for k, v in e.fields.items())
    ]
    texts = [line for line, _ in lines]
    if pick(draw, 5) == 0:
        texts.insert(draw(st.integers(0, len(texts))), draw(st.sampled_from(["# a comment", "", "  "])))
    payload = draw(st.sampled_from(["\n", "\r\n"])).join(texts)
    if draw(st.booleans()):
        payload = draw(st.sampled_from([" ", "\n", "\t"])) + payload + draw(st.sampled_from(["", "\n", " \r\n"]))
    return Case("line protocol valid", payload.encode(), kind=kind, readings=tuple(e for _, e in lines))


# (field text, code): one wrong field in an otherwise valid line of an open kind.
LP_FIELD_DEFECTS: list[tuple[str, str]] = [
    ("v=", "invalid_line_protocol"),
    ('v="abc', "invalid_line_protocol"),
    ("v=1.2.3", "invalid_line_protocol"),
    ("v=abc", "invalid_line_protocol"),
    ("v=12ii", "invalid_line_protocol"),
    ("=1", "invalid_line_protocol"),
    ("v", "invalid_line_protocol"),
    (f"v={2**63}i", "integer_too_large"),
    (f"v={-(2**63) - 1}i", "integer_too_large"),
    ("9lives=1", "bad_field_name"),
    ("a\\ b=1", "bad_field_name"),
    ("é=1", "bad_field_name"),
    ("cohort=1", "reserved_field_name"),
    ("time=1", "reserved_field_name"),
    ("v=NaN", "not_finite"),
    ("v=inf", "not_finite"),
    ('v="a\x01b"', "control_character"),
    (f"v={lp_string('x' * 257)}", "string_too_long"),
]


@st.composite
def lp_defects(draw: st.DrawFn) -> Case:
    """Valid lines but one, which has exactly one mistake; the whole message must be refused with its code."""
    good = draw(lp_readings())
    # Split on the payload's own separators only: splitlines() would also cut a string value at U+2028 or U+0085.
    lines = good.payload.decode().strip().replace("\r\n", "\n").split("\n")
    i = draw(st.integers(0, len(lines) - 1))
    how = pick(draw, 5)
    if how <= 1:
        bad, code = draw(uniform(LP_FIELD_DEFECTS))
        lines[i] = f"m {bad}" if draw(st.booleans()) else f"m x=1,{bad}"
    elif how == 2:
        lines[i] = "m v=1,w=2,v=3"
        code = "duplicate_field"
    elif how == 3:
        text, code = draw(bad_timestamps())
        if code == "timestamp_invalid":
            text = draw(st.sampled_from(["now", "1.5", "12abc", "0x10"]))
        lines[i] = f"m v=1 {text}"
    else:
        lines = ["m v=1"] * draw(st.sampled_from([1001, 1500]))
        code = "too_many_lines"
    return Case(f"line protocol defect: {code}", "\n".join(lines).encode(), code=code)


# Bare values --------------------------------------------------------------------------------------------------------


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


bare_words = (
    st.text(st.sampled_from(string.ascii_letters + " _.,!é"), min_size=1, max_size=30)
    .map(str.strip)
    .filter(lambda t: t != "" and t.lower() not in ("true", "false") and not _is_number(t))
)


@st.composite
def bare_values(draw: st.DrawFn) -> Case:
    """A bare value on …/telemetry/<field>: a number, a boolean or a word (generic), or an air-quality reading."""
    pad = draw(st.sampled_from(["", " ", "\n", "\r\n"]))
    if pick(draw, 3) == 0:
        name = draw(st.sampled_from(list(AQ_FIELDS)))
        value: FieldValue = float(draw(aq_value(name)))
        text = repr(value)
        return Case("bare valid", (text + pad).encode(), "air_quality", name, readings=(Expected({name: value}),))
    name = draw(field_names)
    how = pick(draw, 3)
    if how == 0:
        number = draw(st.one_of(finite_floats, int64s))
        value, text = float(number), repr(number)
    elif how == 1:
        value = draw(st.booleans())
        text = draw(st.sampled_from(["true", "True", "TRUE"] if value else ["false", "False", "FALSE"]))
    else:
        value = text = draw(bare_words)
    return Case("bare valid", (text + pad).encode(), field=name, readings=(Expected({name: value}),))


BARE_DEFECTS: list[tuple[str, str, str, str]] = [  # kind, field, text, code
    ("generic", "9x", "1", "bad_field_name"),
    ("generic", "cohort", "1", "reserved_field_name"),
    ("generic", "", "1", "bad_field_name"),
    ("generic", "v", "nan", "not_finite"),
    ("generic", "v", "-inf", "not_finite"),
    ("generic", "v", "x" * 257, "string_too_long"),
    ("generic", "v", "99999999999999999999", "integer_too_large"),
    ("generic", "v", "   ", "empty_payload"),
    ("air_quality", "pm25", "12", "unknown_field_suggest"),
    ("air_quality", "temperature", "85.00001", "out_of_range"),
    ("air_quality", "humidity", "-0.5", "out_of_range"),
    ("air_quality", "co2", "lots", "wrong_type"),
    ("air_quality", "pm10", "true", "wrong_type"),
]
bare_defects = uniform(BARE_DEFECTS).map(lambda d: Case(f"bare defect: {d[3]}", d[2].encode(), d[0], d[1], code=d[3]))


# Bytes -----------------------------------------------------------------------------------------------------------

BAD_UTF8 = [b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xe2\x82", b"\x80", b"\xf8\x88\x80\x80\x80"]


@st.composite
def corrupted(draw: st.DrawFn, cases: st.SearchStrategy[Case]) -> Case:
    """A case's payload broken at the byte level: invalid UTF-8 inserted, over the size limit, or emptied."""
    case = draw(cases)
    how = pick(draw, 4)
    if how <= 1 and len(case.payload) < LIMIT - 8:
        i = draw(st.integers(0, len(case.payload)))
        payload = case.payload[:i] + draw(st.sampled_from(BAD_UTF8)) + case.payload[i:]
        return Case("bytes: invalid UTF-8", payload, case.kind, case.field, code="bad_utf8")
    if how == 2:
        payload = case.payload + b" " * (LIMIT + 1 - len(case.payload)) if len(case.payload) <= LIMIT else case.payload
        return Case("bytes: one byte over the limit", payload, case.kind, case.field, code="payload_too_large")
    payload = draw(st.sampled_from([b"", b" ", b"\n\r\n", b"\t "]))
    return Case("bytes: empty", payload, case.kind, case.field, code="empty_payload")


@st.composite
def mutated(draw: st.DrawFn, cases: st.SearchStrategy[Case]) -> Case:
    """A valid payload with a few bytes changed: anything may happen, but only a catalogued refusal."""
    case = draw(cases)
    data = bytearray(case.payload)
    for _ in range(draw(st.integers(1, 3))):
        if not data:
            break
        data[draw(st.integers(0, len(data) - 1))] = draw(st.sampled_from(b"{}[]\",:= \\\n#0e.-tfi'x\x00\xc3"))
    return Case("garbage: mutated", bytes(data), case.kind, case.field)


def garbage(kind: str, strategy: st.SearchStrategy[bytes], label: str) -> st.SearchStrategy[Case]:
    return strategy.map(lambda payload: Case(f"garbage: {label}", payload, kind))


hostile_json = garbage(
    "generic", st.one_of(hostile.json_payload(), st.sampled_from(hostile.KNOWN_NASTY)), "hostile JSON"
)
hostile_lp = garbage("generic", hostile.line_protocol_payload(), "hostile line protocol")
random_bytes = garbage("generic", st.binary(max_size=300), "random bytes")


def weighted(*parts: tuple[int, st.SearchStrategy[Case]]) -> st.SearchStrategy[Case]:
    """Choose among strategies with integer weights."""
    table = [strategy for weight, strategy in parts for _ in range(weight)]

    @st.composite
    def choose(draw: st.DrawFn) -> Case:
        return draw(table[pick(draw, len(table))])

    return choose()


# What each property draws ----------------------------------------------------------------------------------------

valid_payloads = st.one_of(generic_json(), aq_json(), lp_readings(), lp_readings("air_quality"), bare_values())
json_cases = weighted(
    (8, generic_json(history=True)),
    (5, aq_json()),
    (3, generic_json_defects()),
    (2, aq_json_defects()),
    (1, json_syntax_defects()),
    (1, hostile_json),
)
lp_cases = weighted((6, lp_readings()), (2, lp_readings("air_quality")), (2, lp_defects()), (1, hostile_lp))
payload_cases = weighted(
    (6, valid_payloads),
    (1, generic_json_defects(distinct=False)),
    (1, lp_defects()),
    (1, bare_defects),
    (2, corrupted(valid_payloads)),
    (1, mutated(valid_payloads)),
    (1, random_bytes),
)
# For a device that has used no names before (the hub's ingest): no case needs a history.
ingest_payloads = weighted(
    (9, valid_payloads),
    (2, generic_json_defects(distinct=False)),
    (1, aq_json_defects()),
    (1, lp_defects()),
    (1, bare_defects),
    (1, corrupted(valid_payloads)),
    (1, mutated(valid_payloads)),
    (1, st.one_of(hostile_json, hostile_lp, random_bytes)),
)
# Single readings of both kinds with their exact values, and a few refusals: for the round trip through influxd.
round_trip_cases = weighted(
    (4, generic_json()),
    (3, lp_readings()),
    (1, aq_json()),
    (1, lp_readings("air_quality")),
    (1, generic_json_defects(distinct=False)),
    (1, lp_defects()),
)


# The ingest hot path -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IngestCase:
    """One MQTT message to the hub, the lab it arrives in, and (in `payload`) what must become of it."""

    label: str
    topic: str
    payload: Case
    route: str  # "telemetry", "other" (a routable topic of another channel) or "none" (not routable)
    ref: tuple[str, str, str] | None
    declared: str | None  # the kind the lab declares the device with (None: not declared)
    open_mode: bool
    retain: bool
    qos: int
    dup: bool
    language: str

    @property
    def kind(self) -> str | None:
        """The device's kind at the hub: declared, generic in an open lab, else unknown."""
        return self.declared or ("generic" if self.open_mode else None)


@st.composite
def ingest_cases(draw: st.DrawFn) -> IngestCase:
    """Mostly telemetry of a device the lab knows, with a payload of its kind; some to an undeclared device of a
    closed lab, some retained, some on other channels, some on topics that route nowhere."""
    case = draw(ingest_payloads)
    qos, dup, language = pick(draw, 2), draw(st.booleans()), draw(st.sampled_from(["en", "fr"]))
    where = pick(draw, 20)
    if where >= 18:
        bad = draw(st.one_of(near_valid_topics(), garbage_topics.filter(lambda t: t.parts is None)))
        return IngestCase(
            bad.label, bad.topic, case, "none", None, None, draw(st.booleans()), False, qos, dup, language
        )
    if where >= 16:
        channel = draw(st.sampled_from(["status", "ack", "errors", "commands"]))
        other = draw(valid_topics(channel=channel))
        assert other.parts is not None
        return IngestCase(
            f"channel {channel}", other.topic, case, "other", other.parts[:3], None, True, False, qos, dup, language
        )
    topic = draw(valid_topics(channel="telemetry", field_name=case.field))
    assert topic.parts is not None
    retain = pick(draw, 10) == 9
    if pick(draw, 12) == 11:
        declared, open_mode, label = None, False, "undeclared device, closed lab"
    elif case.kind == "air_quality":
        declared, open_mode, label = "air_quality", draw(st.booleans()), "declared air_quality"
    elif draw(st.booleans()):
        declared, open_mode, label = "generic", draw(st.booleans()), "declared generic"
    else:
        declared, open_mode, label = None, True, "undeclared device, open lab"
    if retain:
        label = "retained"
    return IngestCase(
        label, topic.topic, case, "telemetry", topic.parts[:3], declared, open_mode, retain, qos, dup, language
    )
