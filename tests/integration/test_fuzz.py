"""Property tests (hypothesis) that reach the code they name, and fail when it breaks.

Each property states the path it targets. Its strategy (tests/strategies.py) mixes valid-looking input with
near misses and garbage, and every case carries what must become of it, computed from the generated input by
the README's rules. Each example records the branch it took (a Hypothesis `event`, and a tally); the test fails
when no more than half of the examples reach the target path, so a strategy that drifts off it is caught.

| property | path it targets |
| --- | --- |
| test_parse_topic_… | `parse_topic` splits a routable topic into its parts |
| test_decode_… | `decode_payload` gets past the byte checks (size, UTF-8, empty) into a form parser |
| test_json_… | a JSON reading is decoded, validated (both kinds) and encoded |
| test_line_protocol_… | line-protocol readings are decoded, validated and encoded |
| test_ingest_… | `Ingest.handle` routes telemetry to a known device and gives a verdict |
| test_round_trip_… | accepted readings are stored by the real influxd and read back as generated |

The meta-tests at the end break each feature in turn (a monkeypatch) and check that its property then fails.
Examples are drawn from fixed seeds without the example database, so every run checks the same examples.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
import re
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, event, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import HypothesisException

import devices.decode as decode
import devices.topics as topics
import devices.validate as validation
import hub.ingest.device_table as device_table
import hub.ingest.lineproto as lineproto
import hub.ingest.pipeline as ingest_module
from devices.feedback import CATALOGUE, render
from devices.kinds import KINDS, DeviceKind, FieldType
from devices.problems import PayloadRejected, Problem, reject
from devices.topics import DeviceRef, TopicError
from hub.adapters.mqtt import Message
from hub.config import DeviceConfig
from hub.ingest.pipeline import Ingest
from tests import strategies as S
from tests.conftest import unique
from tests.integration.conftest import Services
from tests.support import influx_query

NOW = S.NOW_NS
LIMIT = S.LIMIT
SHARE = 0.5  # more than this share of a property's examples must reach its target path
BYTE_CODES = frozenset({"payload_too_large", "bad_utf8", "empty_payload"})
TYPES = {float: FieldType.FLOAT, int: FieldType.INTEGER, bool: FieldType.BOOLEAN, str: FieldType.STRING}
INFLUX_TYPES = {float: "float", int: "integer", bool: "boolean", str: "string"}


# Running a property and counting where its examples went ------------------------------------------------------------


@dataclass
class Tally:
    """Which branches a property's examples took; `check` fails unless the target took more than SHARE."""

    name: str
    target: str
    examples: int = 0
    branches: Counter[str] = field(default_factory=Counter)

    def record(self, branches: Sequence[str]) -> None:
        self.examples += 1
        for branch in dict.fromkeys(branches):
            event(branch)
            self.branches[branch] += 1

    def share(self, branch: str) -> float:
        return self.branches[branch] / self.examples if self.examples else 0.0

    def table(self) -> str:
        rows = [f"{self.name}: {self.examples} examples, target {self.target!r}"]
        rows += [f"  {count / self.examples:6.1%}  {branch}" for branch, count in sorted(self.branches.items())]
        return "\n".join(rows)

    def check(self, minimum: float = SHARE) -> Tally:
        print(self.table())  # shown with `pytest -rP` (or -s)
        assert self.share(self.target) > minimum, (
            f"only {self.share(self.target):.1%} of the examples reached {self.target!r}:\n{self.table()}"
        )
        return self


@dataclass(frozen=True)
class Property:
    name: str
    strategy: st.SearchStrategy[Any]
    target: str
    examples: int
    seed: int


def explore(prop: Property, check: Callable[[Any], Sequence[str]], fast: bool = False) -> Tally:
    """Run `check` on `prop.examples` examples of its strategy (fixed seed, no database). `fast` (meta-tests):
    stop at the first failure without shrinking it."""
    tally = Tally(prop.name, prop.target)
    phases = (Phase.generate,) if fast else (Phase.explicit, Phase.generate, Phase.shrink)

    @settings(
        max_examples=prop.examples,
        deadline=None,
        database=None,
        phases=phases,
        report_multiple_bugs=False,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @seed(prop.seed)
    @given(prop.strategy)
    def run(case: Any) -> None:
        tally.record(check(case))

    run()
    return tally


# Shared checks ------------------------------------------------------------------------------------------------------


def check_problems(problems: list[Problem]) -> str:
    """Every problem has a catalogued code and renders in both languages; returns the first code."""
    assert problems, "a rejection without a problem"
    for problem in problems:
        assert problem.code in CATALOGUE, f"no message for {problem.code!r}"
        assert problem.code != "internal_error"
        for lang in ("en", "fr"):
            rendered = render(problem, lang)
            assert rendered["code"] == problem.code and rendered["message"], rendered
    return problems[0].code


def same_value(got: object, sent: object) -> bool:
    """Equal and of the same type (a float 21.0 is not the integer 21, True is not 1)."""
    return type(got) is type(sent) and got == sent


def lp_value(value: object) -> str:
    """A field value as line protocol (the README's rules, written here independently of hub.ingest.lineproto)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        return repr(value)
    assert isinstance(value, str)
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


@dataclass
class Stamps:
    """The timestamps the hub must give a device's readings (README: unique receipt stamps per device; a device
    timestamp equal to the previous one is stored, with a `timestamp_collision` warning)."""

    last: int = 0
    last_device: int | None = None
    warnings: int = 0

    def next(self, ts_ns: int | None) -> int:
        if ts_ns is None:
            self.last = max(NOW, self.last + 1)
            return self.last
        if ts_ns == self.last_device:
            self.warnings += 1
        self.last_device = ts_ns
        return ts_ns


# 1. Topics ----------------------------------------------------------------------------------------------------------

TOPICS = Property("parse_topic", S.topic_cases, "parsed", examples=300, seed=1201)


def check_topic(case: S.TopicCase) -> list[str]:
    """`parse_topic` returns exactly the parts of a routable topic and refuses anything else (TopicError)."""
    assert S.topic_oracle(case.topic) == case.parts, f"strategy and oracle disagree on {case.topic!r}"
    try:
        parsed = topics.parse_topic(case.topic)
    except TopicError:
        assert case.parts is None, f"routable topic {case.topic!r} refused"
        return ["refused", case.label]
    assert case.parts is not None, f"{case.topic!r} accepted: {parsed}"
    got = (parsed.ref.cohort, parsed.ref.learner, parsed.ref.device, parsed.channel, parsed.field)
    assert got == case.parts, (case.topic, got)
    assert parsed.ref.topic(parsed.channel) == "/".join(case.topic.split("/")[:5])
    return ["parsed", case.label]


def test_parse_topic_splits_routable_topics_and_refuses_the_rest() -> None:
    explore(TOPICS, check_topic).check()


# 2.-4. Decode → validate → encode -----------------------------------------------------------------------------------


def check_pipeline(case: S.Case) -> list[str]:
    """decode → validate (the case's kind) → encode. Only PayloadRejected may come out, with catalogued codes; a
    case that names its outcome gets exactly it (the readings as generated, or the code)."""
    kind = KINDS[case.kind]
    source = "?"
    try:
        decoded = decode.decode_payload(case.payload, case.field, LIMIT)
        source = str(decoded[0].source) if decoded else "nothing"
        readings = [validation.validate(kind, d, NOW, {}, names=case.names) for d in decoded]
    except PayloadRejected as err:
        code = check_problems(err.problems)
        assert case.readings is None, f"valid {case.label} refused ({code}): {case.payload[:300]!r}"
        assert case.code in (None, code), f"{case.label}: refused with {code}, not {case.code}: {case.payload[:300]!r}"
        stage = "stopped at the byte checks" if code in BYTE_CODES else "past the byte checks"
        return [case.label, stage, f"refused: {code}", f"reached {source}" if source != "?" else "not decoded"]
    assert case.code is None, f"{case.label} accepted, must be refused with {case.code}: {case.payload[:300]!r}"
    assert readings, "accepted without a reading"
    if case.readings is not None:
        assert len(readings) == len(case.readings), (len(readings), case.payload[:300])
        for got, want in zip(readings, case.readings, strict=True):
            assert got.timestamp_ns == want.ts_ns, (got.timestamp_ns, want.ts_ns, case.payload[:300])
            assert got.fields.keys() == want.fields.keys(), (list(got.fields), list(want.fields))
            for name, sent in want.fields.items():
                assert same_value(got.fields[name], sent), (name, sent, got.fields[name], case.payload[:300])
            if kind.open_fields:
                assert got.types == {n: TYPES[type(v)] for n, v in want.fields.items()}
    prefix = lineproto.series_prefix(kind.measurement_for("c", "l"), {"cohort": "c", "learner": "l", "device": "d"})
    for reading in readings:
        line = lineproto.encode_line(prefix, reading.fields, reading.timestamp_ns or NOW)
        assert "\n" not in line and "\r" not in line, line
    return [case.label, "past the byte checks", f"accepted: {source}", f"reached {source}"]


DECODE = Property("decode", S.payload_cases, "past the byte checks", examples=250, seed=1202)
JSON = Property("json", S.json_cases, "accepted: json", examples=250, seed=1203)
LINES = Property("line protocol", S.lp_cases, "accepted: line_protocol", examples=200, seed=1204)


def test_decode_gets_past_the_byte_checks_and_refuses_by_name() -> None:
    """Valid payloads of every form (JSON, line protocol, bare values), each with one mistake, broken at the byte
    level (invalid UTF-8 inserted: `bad_utf8`; one byte over the cap: `payload_too_large`; blank:
    `empty_payload`), mutated, and random bytes."""
    tally = explore(DECODE, check_pipeline).check()
    assert tally.branches["stopped at the byte checks"] > 0 and tally.branches["reached bare"] > 0


def test_json_readings_are_validated_and_encoded_as_sent() -> None:
    """Valid JSON readings of both kinds (edges of every range and of the timestamp window, 64 fields, a payload of
    exactly 16 KiB, a device at its 64th name), each with one mistake and its code, the beginner's syntax
    mistakes, and hostile JSON."""
    tally = explore(JSON, check_pipeline).check()
    assert tally.share("accepted: json") < 0.95, "no refusals: the defects do not reach validation"


def test_line_protocol_readings_are_validated_and_encoded_as_sent() -> None:
    """One to three valid lines (every boolean spelling, `42i`/`42u`, floats written as integers, escaped strings,
    any measurement and tags, timestamps in every unit), lines with one mistake, and hostile line protocol."""
    tally = explore(LINES, check_pipeline).check()
    assert tally.share("accepted: line_protocol") < 0.95, "no refusals: the defects do not reach validation"


def test_huge_and_deep_payloads_are_refused_by_name() -> None:
    """Over the cap they are refused unread; under a cap large enough for the parsers to see them, by their own code."""
    cases = [
        (b"[" * 200_000, "json_too_deep"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "json_too_deep"),
        (b'{"a": 1' + b"0" * 1_000_000 + b"}", "number_too_long"),
        (b"\x00" * (1 << 20), "unrecognised_payload"),
        (b"m v=1 " + b"9" * 400, "timestamp_out_of_range"),
        (b"m v=1 " + b"9" * 400_000, "timestamp_invalid"),  # beyond what int() reads
    ]
    for payload, code in cases:
        for limit in (LIMIT, 2 << 20):
            want = "payload_too_large" if len(payload) > limit else code
            with pytest.raises(PayloadRejected) as info:
                for decoded in decode.decode_payload(payload, None, limit):
                    validation.validate(KINDS["generic"], decoded, NOW, {})
            assert check_problems(info.value.problems) == want, (payload[:20], limit)


def test_line_separator_inside_a_line_protocol_string() -> None:
    """Found by these strategies: U+2028 is not a control character, JSON stores it, and line protocol must too
    (str.splitlines() used to cut the line in two there)."""
    (decoded,) = decode.decode_payload('m s="a\u2028b"'.encode(), None, LIMIT)
    assert decoded.values == {"s": "a\u2028b"}


def test_a_field_changing_type_between_two_lines_of_one_message() -> None:
    """Found by the round trip: `m a=1i` then `m a=1.5` in one message both passed validation; influxd then
    refused the second line and kept the first, so the message was half stored. The README's rules (all or
    nothing; a field keeps its type) say: refused whole, `type_changed`."""
    enqueued: list[str] = []
    published: list[dict[str, Any]] = []
    ingest = Ingest(
        [],
        enqueue=lambda now, digest, key, line, entry: enqueued.append(line),
        publish=lambda topic, payload: published.append(json.loads(payload)),
        language=lambda cohort: "en",
        open_mode=True,
        max_payload_bytes=LIMIT,
        errors_per_second=1.0,
        clock=lambda: NOW,
    )
    ingest.handle(Message("lab/c/l/d/telemetry", b"m a=1i\nm a=1.5", 0, False))
    assert not enqueued and [m["code"] for m in published] == ["type_changed"], (enqueued, published)


# 5. The ingest hot path ---------------------------------------------------------------------------------------------

INGEST = Property("ingest", S.ingest_cases(), "telemetry verdict", examples=250, seed=1205)


def check_ingest(case: S.IngestCase) -> list[str]:
    """One message, twice (the second time through the route cache), into a fresh hub ingest. Whatever happens
    must be a real outcome: lines spooled for the device (exactly the expected ones, in its measurement, stamped
    as the README says) or a rejection with the expected code on the device's errors topic; never an
    internal_error, never an exception (in the hub that would be a failure at the MQTT boundary, Hub._on_message:
    here it fails the test)."""
    enqueued: list[tuple[str, str]] = []
    published: list[tuple[str, dict[str, Any]]] = []
    cleared: list[str] = []
    declared = [DeviceConfig(DeviceRef(*case.ref), case.declared)] if case.ref and case.declared else []
    ingest = Ingest(
        declared,
        enqueue=lambda now, digest, key, line, entry: enqueued.append((key, line)),
        publish=lambda topic, payload: published.append((topic, json.loads(payload))),
        language=lambda cohort: case.language,
        open_mode=case.open_mode,
        max_payload_bytes=LIMIT,
        errors_per_second=1.0,
        clock=lambda: NOW,
        clear_retained=cleared.append,
    )
    stamps = Stamps()
    payload = case.payload
    branches = [case.label]
    for attempt in (1, 2):
        enqueued.clear()
        published.clear()
        entry = ingest.handle(Message(case.topic, payload.payload, case.qos, case.retain, 1, case.dup))
        codes = [message["code"] for _, message in published]
        assert "internal_error" not in codes, (case, published)
        if case.route != "telemetry":
            assert entry is None and not enqueued and not published, (case.topic, enqueued, published)
            if case.route == "none":
                assert ingest.totals.bad_topics == attempt
            branches.append("not routed" if case.route == "none" else "another channel")
            continue
        assert case.ref is not None
        cohort, learner, device = case.ref
        key = f"{cohort}/{learner}/{device}"
        if case.retain:
            assert entry is None and not enqueued and not published
            assert cleared == ([case.topic] * attempt if payload.payload else [])
            branches.append("retained: ignored")
            continue
        assert {topic for topic, _ in published} <= {f"lab/{key}/errors"}, published
        if case.kind is None:
            assert entry is None and not enqueued and codes == ["unknown_device"], (enqueued, codes)
            branches.append("unknown device")
            continue
        branches.append("telemetry verdict")
        if enqueued:
            assert payload.code is None, f"{payload.label} stored, must be refused with {payload.code}: {enqueued}"
            assert {k for k, _ in enqueued} == {key} and set(codes) <= {"timestamp_collision"}, (enqueued, codes)
            assert entry is not None and entry.pending == len(enqueued)
            measurement = "air_quality" if case.kind == "air_quality" else f"generic.{cohort}.{learner}"
            prefix = f"{measurement},cohort={cohort},device={device},learner={learner} "
            lines = [line for _, line in enqueued]
            assert all(line.startswith(prefix) and "\n" not in line for line in lines), (prefix, lines)
            if payload.readings is not None:
                before = stamps.warnings
                want = [
                    prefix + ",".join(f"{k}={lp_value(v)}" for k, v in r.fields.items()) + f" {stamps.next(r.ts_ns)}"
                    for r in payload.readings
                ]
                assert lines == want, (payload.payload[:300], lines, want)
                assert len(codes) == stamps.warnings - before, (codes, payload.readings)
            branches.append("accepted")
        else:
            assert payload.readings is None, f"valid {payload.label} refused: {codes} {payload.payload[:300]!r}"
            assert entry is None and len(published) == 1, published
            message = published[0][1]
            assert message["code"] in CATALOGUE and message["message"] and message["problems"], message
            assert message["device"] == key and message["topic"] == case.topic, message
            assert payload.code in (None, message["code"]), (payload.label, message["code"], payload.payload[:300])
            branches.append(f"refused: {message['code']}")
    assert "internal_error" not in ingest.totals.rejected
    return branches


def test_ingest_hot_path_gives_every_routed_message_a_real_outcome() -> None:
    tally = explore(INGEST, check_ingest).check()
    assert tally.branches["accepted"] > 0 and tally.branches["not routed"] > 0 and tally.branches["unknown device"] > 0


# 6. The round trip through the real influxd ---------------------------------------------------------------------

ROUND_TRIP = Property("round trip", S.round_trip_cases, "read back as generated", examples=100, seed=1206)


def _write(port: int, db: str, lines: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/write?db={db}&precision=ns", data=lines.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def round_trip_check(services: Services, db: str) -> Callable[[S.Case], list[str]]:
    """Each example is its own device (and, for open kinds, its own learner: its own measurement, so no field type
    carries over). The hub's ingest makes the lines, influxd stores them, and what a query returns is compared
    with the generated input (README rules: JSON numbers as floats, `42i` as integers), not with what the
    validator produced."""
    counter = itertools.count()
    port = services.influx_port

    def check(case: S.Case) -> list[str]:
        n = next(counter)
        cohort, learner, device = "fuzz", f"l{n}", f"d{n}"
        lines: list[str] = []
        published: list[dict[str, Any]] = []
        ingest = Ingest(
            [DeviceConfig(DeviceRef(cohort, learner, device), case.kind)],
            enqueue=lambda now, digest, key, line, entry: lines.append(line),
            publish=lambda topic, payload: published.append(json.loads(payload)),
            language=lambda cohort: "en",
            open_mode=False,
            max_payload_bytes=LIMIT,
            errors_per_second=1.0,
            clock=lambda: NOW,
        )
        topic = f"lab/{cohort}/{learner}/{device}/telemetry" + (f"/{case.field}" if case.field is not None else "")
        ingest.handle(Message(topic, case.payload, 1, False, 1, False))
        if case.readings is None:
            assert not lines and [m["code"] for m in published] == [case.code], (case.label, published)
            return [case.label, "refused"]
        assert len(lines) == len(case.readings), (case.payload[:300], published)
        status, error = _write(port, db, "\n".join(lines))
        assert status == 204, (error, lines)
        stamps = Stamps()
        want: dict[int, dict[str, object]] = {}  # InfluxDB keeps one point per series and time: later fields win
        for reading in case.readings:
            want.setdefault(stamps.next(reading.ts_ns), {}).update(reading.fields)
        measurement = f"generic.{cohort}.{learner}" if case.kind == "generic" else "air_quality"
        series = influx_query(port, db, f'SELECT * FROM "{measurement}" WHERE "device" = \'{device}\'')
        assert len(series) == 1, series
        rows = [dict(zip(series[0]["columns"], values, strict=True)) for values in series[0]["values"]]
        types = {
            name: kind for name, kind in influx_query(port, db, f'SHOW FIELD KEYS FROM "{measurement}"')[0]["values"]
        }
        assert [row["time"] for row in rows] == sorted(want), ([row["time"] for row in rows], sorted(want))
        for row in rows:
            sent = want[row["time"]]
            assert (row.pop("cohort"), row.pop("learner"), row.pop("device")) == (cohort, learner, device)
            row.pop("time")
            assert {k for k, v in row.items() if v is not None} == set(sent), (row, sent)
            for name, value in sent.items():
                got = row[name]
                assert types[name] == INFLUX_TYPES[type(value)], (name, value, types[name])
                if isinstance(value, float):  # influxd writes 21.0 as 21: the field type above says float
                    got = float(got) if type(got) in (int, float) else got
                assert same_value(got, value), (name, value, got)
        return [case.label, "read back as generated"]

    return check


def test_round_trip_reads_back_the_generated_input(services: Services) -> None:
    db = unique("fuzz")
    influx_query(services.influx_port, db, f'CREATE DATABASE "{db}"')
    explore(ROUND_TRIP, round_trip_check(services, db)).check()


# Meta-tests: each feature broken in turn, each property must fail ---------------------------------------------------

Patch = Callable[[pytest.MonkeyPatch], None]


def _wrap(
    monkeypatch: pytest.MonkeyPatch, target: Any, name: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]
) -> None:
    monkeypatch.setattr(target, name, make(getattr(target, name)))


def _refuse_all(topic: str) -> Any:
    raise TopicError("routing removed")


def _clamp(original: Callable[..., Any]) -> Callable[..., Any]:
    def check(kind: DeviceKind, name: str, value: object, fields: dict[str, Any]) -> Any:
        spec = kind.fields.get(name)
        if spec is not None and type(value) is float and math.isfinite(value):
            value = min(max(value, spec.minimum), spec.maximum)
        return original(kind, name, value, fields)

    return check


def _integral_floats_as_ints(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        reading = original(*args, **kwargs)
        reading.fields = {
            k: int(v) if type(v) is float and v.is_integer() and abs(v) < 2**63 else v
            for k, v in reading.fields.items()
        }
        return reading

    return run


def _rounded(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(*args: Any, **kwargs: Any) -> Any:
        reading = original(*args, **kwargs)
        reading.fields = {k: float(f"{v:.6g}") if type(v) is float else v for k, v in reading.fields.items()}
        return reading

    return run


def _bug_on_three_fields(original: Callable[..., Any]) -> Callable[..., Any]:
    def run(kind: DeviceKind, decoded: decode.Decoded, *args: Any, **kwargs: Any) -> Any:
        if len(decoded.values) >= 3:
            raise RuntimeError("a bug of ours")
        return original(kind, decoded, *args, **kwargs)

    return run


PURE_BREAKAGES: dict[str, tuple[Property, Callable[[Any], Sequence[str]], Patch]] = {
    # parse_topic
    "topic: names of any characters": (
        TOPICS,
        check_topic,
        lambda mp: mp.setattr(topics, "SEGMENT_RE", re.compile(r"[^/]{1,64}")),
    ),
    "topic: every topic refused": (TOPICS, check_topic, lambda mp: mp.setattr(topics, "parse_topic", _refuse_all)),
    "topic: the field level dropped": (
        TOPICS,
        check_topic,
        lambda mp: _wrap(mp, topics, "parse_topic", lambda f: lambda t: dataclasses.replace(f(t), field=None)),
    ),
    "topic: old strategy (st.text)": (
        dataclasses.replace(
            TOPICS, strategy=st.text(max_size=120).map(lambda t: S.TopicCase(t, S.topic_oracle(t), "text"))
        ),
        check_topic,
        lambda mp: None,
    ),
    # decode_payload's byte checks and parsers
    "decode: no UTF-8 check": (
        DECODE,
        check_pipeline,
        lambda mp: _wrap(
            mp, decode, "decode_payload", lambda f: lambda p, fd, m: f(p.decode("utf-8", "replace").encode(), fd, m)
        ),
    ),
    "decode: no size cap": (
        DECODE,
        check_pipeline,
        lambda mp: _wrap(mp, decode, "decode_payload", lambda f: lambda p, fd, m: f(p, fd, 10**9)),
    ),
    "decode: a bare-value parser that raises": (
        DECODE,
        check_pipeline,
        lambda mp: mp.setattr(decode, "_decode_bare", lambda field, text: [][0]),
    ),
    "decode: old strategy (st.binary)": (
        dataclasses.replace(DECODE, strategy=st.binary(max_size=600).map(lambda b: S.Case("bytes", b))),
        check_pipeline,
        lambda mp: None,
    ),
    # JSON readings
    "json: any field name": (
        JSON,
        check_pipeline,
        lambda mp: mp.setattr(validation, "FIELD_NAME_RE", re.compile(r".*", re.S)),
    ),
    "json: no range check": (JSON, check_pipeline, lambda mp: _wrap(mp, validation, "_check_kind_field", _clamp)),
    "json: no beginner diagnosis": (
        JSON,
        check_pipeline,
        lambda mp: mp.setattr(decode, "_diagnose_json", lambda text, err: reject("invalid_json", value=text)),
    ),
    "json: numbers kept as integers": (
        JSON,
        check_pipeline,
        lambda mp: _wrap(mp, validation, "validate", _integral_floats_as_ints),
    ),
    "json: no distinct-name cap": (
        JSON,
        check_pipeline,
        lambda mp: mp.setattr(validation, "MAX_DISTINCT_FIELDS", 10**6),
    ),
    "json: no timestamp window": (
        JSON,
        check_pipeline,
        lambda mp: _wrap(
            mp,
            validation,
            "_check_timestamp",
            lambda f: lambda raw, now, limits: f(raw, now, validation.Limits(10**30, 10**30)),
        ),
    ),
    # line protocol
    "lp: integers read as floats": (
        LINES,
        check_pipeline,
        lambda mp: _wrap(
            mp, decode, "_lp_value", lambda f: lambda raw, line: float(v) if type(v := f(raw, line)) is int else v
        ),
    ),
    "lp: timestamps taken as nanoseconds": (
        LINES,
        check_pipeline,
        lambda mp: mp.setattr(validation, "timestamp_to_ns", lambda raw: (int(raw), "ns")),
    ),
    "lp: quotes ignored when splitting": (
        LINES,
        check_pipeline,
        lambda mp: _wrap(mp, decode, "_split_unescaped", lambda f: lambda text, sep, quotes: f(text, sep, False)),
    ),
    "lp: string escapes kept": (
        LINES,
        check_pipeline,
        lambda mp: _wrap(
            mp,
            decode,
            "_lp_value",
            lambda f: lambda raw, line: raw[1:-1] if raw[:1] == raw[-1:] == '"' and len(raw) > 1 else f(raw, line),
        ),
    ),
    # the ingest hot path
    "ingest: a bug in validation (internal_error)": (
        INGEST,
        check_ingest,
        lambda mp: _wrap(mp, ingest_module, "validate", _bug_on_three_fields),
    ),
    "ingest: accepted readings not spooled": (
        INGEST,
        check_ingest,
        lambda mp: mp.setattr(Ingest, "_accept", lambda *a: None),
    ),
    "ingest: rejections not answered": (
        INGEST,
        check_ingest,
        lambda mp: mp.setattr(Ingest, "_send_error", lambda *a: None),
    ),
    "ingest: open kinds in one measurement": (
        INGEST,
        check_ingest,
        lambda mp: mp.setattr(DeviceKind, "measurement_for", lambda self, cohort, learner: self.name),
    ),
    "ingest: every topic refused": (
        INGEST,
        check_ingest,
        lambda mp: mp.setattr(device_table, "parse_topic", _refuse_all),
    ),
    "ingest: old strategy (st.text topics, random bytes)": (
        dataclasses.replace(
            INGEST,
            strategy=st.builds(
                lambda t, p: S.IngestCase(
                    "old", t, S.Case("bytes", p), "none", None, None, True, False, 0, False, "fr"
                ),
                st.text(max_size=60).filter(lambda t: S.topic_oracle(t) is None),
                st.binary(max_size=300),
            ),
        ),
        check_ingest,
        lambda mp: None,
    ),
}


@pytest.mark.parametrize("breakage", list(PURE_BREAKAGES))
def test_each_property_fails_when_its_feature_breaks(breakage: str, monkeypatch: pytest.MonkeyPatch) -> None:
    prop, check, patch = PURE_BREAKAGES[breakage]
    patch(monkeypatch)
    with pytest.raises(Exception) as info:
        explore(prop, check, fast=True).check()
    assert not isinstance(info.value, HypothesisException), info.value


def test_the_size_and_depth_cases_fail_when_the_parsers_lose_their_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "_decode_json", lambda text: (_ for _ in ()).throw(reject("invalid_json")))
    with pytest.raises(AssertionError):
        test_huge_and_deep_payloads_are_refused_by_name()


ROUND_TRIP_BREAKAGES: dict[str, Patch] = {
    # The previous round trip compared influxd with the validator's output: it passed with this one.
    "a validator that rounds floats": lambda mp: _wrap(mp, ingest_module, "validate", _rounded),
    "strings written without escaping backslashes": lambda mp: mp.setattr(
        lineproto, "_STRING_ESCAPES", str.maketrans({'"': '\\"'})
    ),
    "open kinds in one measurement": lambda mp: mp.setattr(
        DeviceKind, "measurement_for", lambda self, cohort, learner: self.name
    ),
}


@pytest.mark.parametrize("breakage", list(ROUND_TRIP_BREAKAGES))
def test_the_round_trip_fails_when_storage_breaks(
    breakage: str, services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = unique("fuzzbreak")
    influx_query(services.influx_port, db, f'CREATE DATABASE "{db}"')
    ROUND_TRIP_BREAKAGES[breakage](monkeypatch)
    # The search also meets a plain case with a backslash in a string field: which strings Hypothesis draws
    # depends on the literals of every module imported (its constants pool), so in the whole suite the
    # derandomized search once drew none and this meta-test stayed green with backslashes broken.
    backslash = S.Case("json valid", b'{"s": "a\\\\b"}', readings=(S.Expected({"s": "a\\b"}),))
    searched = dataclasses.replace(ROUND_TRIP, strategy=st.one_of(st.just(backslash), ROUND_TRIP.strategy))
    with pytest.raises(Exception) as info:
        explore(searched, round_trip_check(services, db), fast=True).check()
    assert not isinstance(info.value, HypothesisException), info.value
