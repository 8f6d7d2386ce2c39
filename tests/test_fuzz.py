"""Property tests (hypothesis) over decoding, validation and line protocol, the round trip through the real influxd.

1. Nothing a device sends raises out of the pipeline: any bytes on any topic are either accepted or refused
   with problems that render in both languages.
2. Every accepted reading encodes to line protocol that the real influxd accepts, and the values read back
   are the values sent.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.kinds import AIR_QUALITY, GENERIC, FieldType
from hub.decode import decode_payload
from hub.ingest import Ingest
from hub.lineproto import encode_line, series_prefix
from hub.messages import render
from hub.mqtt import Message
from hub.problems import PayloadRejected
from hub.topics import TopicError, parse_topic
from hub.validate import validate
from tests.conftest import Services, unique
from tests.support import influx_query

NOW = 1_800_000_000 * 10**9
LIMIT = 16384

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
nasty_keys = st.text(alphabet=st.sampled_from(list('abcXYZ019_ ,="\\\n\t.-é💡{}[]:')), min_size=0, max_size=12)
json_objects = st.dictionaries(
    nasty_keys | st.sampled_from(["pm2_5", "pm25", "temperature", "ts", "time"]), json_values, max_size=8
)


def pipeline(payload: bytes, field: str | None = None) -> list[str]:
    """decode → validate (both kinds) → encode; return the lines; only PayloadRejected may come out."""
    lines = []
    for kind in (AIR_QUALITY, GENERIC):
        try:
            decoded = decode_payload(payload, field, LIMIT)
            readings = [validate(kind, d, NOW, {}) for d in decoded]
        except PayloadRejected as err:
            assert err.problems
            for problem in err.problems:
                for lang in ("en", "fr"):
                    rendered = render(problem, lang)
                    assert rendered["code"] == problem.code and rendered["message"]
            continue
        prefix = series_prefix(kind.measurement, {"cohort": "c", "learner": "l", "device": "d"})
        lines.extend(encode_line(prefix, r.fields, r.timestamp_ns or NOW) for r in readings)
    return lines


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=600))
def test_random_bytes_never_raise(payload: bytes) -> None:
    pipeline(payload)
    pipeline(payload, "x")


@settings(max_examples=400, deadline=None)
@given(json_objects)
def test_json_objects_with_nasty_keys_and_values_never_raise(obj: dict[str, Any]) -> None:
    for lines in (pipeline(json.dumps(obj).encode()), pipeline(json.dumps(obj, ensure_ascii=False).encode())):
        for line in lines:
            assert "\n" not in line


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_line_protocol_text_never_raises(text: str) -> None:
    pipeline(("m " + text).encode())


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120))
def test_any_topic_is_parsed_or_refused(topic: str) -> None:
    try:
        parsed = parse_topic(topic)
    except TopicError:
        return
    for part in (parsed.ref.cohort, parsed.ref.learner, parsed.ref.device):
        assert part and all(c.isascii() and (c.isalnum() or c in "_-") for c in part)


def test_huge_and_deep_payloads_are_refused_not_raised() -> None:
    cases = [b"{" + b'"a":' * 100_000, b"[" * 200_000, b'{"a": 1' + b"0" * 1_000_000 + b"}", b"\x00" * (1 << 20)]
    for payload in cases:
        assert pipeline(payload) == []


def test_the_ingest_hot_path_survives_everything() -> None:
    sent: list[tuple[str, bytes]] = []
    ingest = Ingest(
        [],
        enqueue=lambda *a: None,
        publish=lambda t, p: sent.append((t, p)),
        language=lambda c: "fr",
        open_mode=True,
        max_payload_bytes=LIMIT,
        errors_per_second=1e9,
    )

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.text(max_size=60), st.binary(max_size=300), st.integers(0, 1), st.booleans())
    def check(topic: str, payload: bytes, qos: int, dup: bool) -> None:
        ingest.handle(Message(topic, payload, qos, False, 1, dup))

    check()
    for _, payload in sent:
        assert json.loads(payload)["code"]


# The round trip through the real influxd ------------------------------------------------------------

field_names = st.from_regex(r"\A[A-Za-z][A-Za-z0-9_]{0,20}\Z").filter(
    lambda n: n not in ("cohort", "learner", "device", "time", "ts", "timestamp")
)
field_values = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=64),
    st.booleans(),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=60),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda n: f"{n}i"),
)


def _to_line_protocol(values: dict[str, Any]) -> str:
    """A learner's line-protocol payload for `values` (integers are given as '42i' strings above)."""
    parts = []
    for name, value in values.items():
        if isinstance(value, str) and value.endswith("i") and value[:-1].lstrip("-").isdigit():
            parts.append(f"{name}={value}")
        elif isinstance(value, bool):
            parts.append(f"{name}={'true' if value else 'false'}")
        elif isinstance(value, float):
            parts.append(f"{name}={value!r}")
        else:
            escaped = value.replace("\\", "\\\\").replace('"', '\\"')
            parts.append(f'{name}="{escaped}"')
    return "anything " + ",".join(parts)


def _write(port: int, db: str, line: str) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/write?db={db}&precision=ns", data=line.encode(), method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.mark.parametrize("source", ["json", "line_protocol"])
def test_every_accepted_reading_is_stored_by_influxd_and_reads_back_identical(services: Services, source: str) -> None:
    db = unique("fuzz")
    influx_query(services.influx_port, db, f'CREATE DATABASE "{db}"')
    counter = iter(range(10**9))

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.dictionaries(field_names, field_values, min_size=1, max_size=6))
    def check(values: dict[str, Any]) -> None:
        device = f"d{next(counter)}"
        if source == "json":
            values = {
                k: (int(v[:-1]) if isinstance(v, str) and v.endswith("i") and v[:-1].lstrip("-").isdigit() else v)
                for k, v in values.items()
            }
            payload = json.dumps(values).encode()
        else:
            payload = _to_line_protocol(values).encode()
        decoded = decode_payload(payload, None, LIMIT)
        reading = validate(GENERIC, decoded[0], NOW, {})
        # Each example is its own measurement: a field keeps its type across examples otherwise.
        prefix = series_prefix(f"g{device}", {"cohort": "fuzz", "learner": "l", "device": device})
        status, error = _write(services.influx_port, db, encode_line(prefix, reading.fields, NOW))
        assert status == 204, error
        series = influx_query(services.influx_port, db, f'SELECT * FROM "g{device}"')
        row = dict(zip(series[0]["columns"], series[0]["values"][0], strict=True))
        for name, sent in reading.fields.items():
            got = row[name]
            if reading.types[name] is FieldType.FLOAT:
                assert float(got) == sent, (name, sent, got)
            else:
                assert got == sent and type(got) is type(sent), (name, sent, got)

    check()
