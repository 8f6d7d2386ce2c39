"""Hostile names through the real influxd: each write lands exactly one point, in the sender's own series. The
exact line-protocol strings are unit-tested (tests/unit/test_lineproto.py)."""

from __future__ import annotations

import urllib.error
import urllib.request

from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest.lineproto import encode_line, series_prefix
from tests.conftest import unique
from tests.integration.conftest import Services
from tests.support import influx_query

# Hostile names through the real influxd: whatever a name holds, one point lands in the sender's series ------

HOSTILE_TEXT = st.text(
    alphabet=st.sampled_from([",", "=", " ", '"', "\\", "\n", "\r", "\t", "#", "\x00", "\x7f", "a", "é", "\u2028"]),
    min_size=1,
    max_size=12,
)


def _write(port: int, db: str, line: str) -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/write?db={db}", data=line.encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


def test_hostile_names_write_exactly_one_point_in_the_senders_series(services: Services) -> None:
    db = unique("lp")
    influx_query(services.influx_port, db, f'CREATE DATABASE "{db}"')
    counter = iter(range(10**6))

    @settings(max_examples=60, deadline=None, derandomize=True)
    @given(tag=HOSTILE_TEXT, key=HOSTILE_TEXT, text=HOSTILE_TEXT, tail=HOSTILE_TEXT)
    def write_one(tag: str, key: str, text: str, tail: str) -> None:
        measurement = f"m{next(counter)}"
        sender = {"cohort": "c", "learner": "l", "device": "d"}
        prefix = series_prefix(measurement + tail, {**sender, "type": tag})
        line = encode_line(prefix, {key: text, "n": 1.5}, 1_700_000_000_000_000_000)
        assert "\n" not in line and "\r" not in line
        assert _write(services.influx_port, db, line) == 204, line
        rows = influx_query(services.influx_port, db, f"SELECT * FROM /^{measurement}([^0-9]|$)/ GROUP BY *", auth=None)
        assert len(rows) == 1, (line, rows)  # one series, in one measurement
        assert rows[0]["name"].startswith(measurement)
        tags = rows[0]["tags"]
        assert {k: tags[k] for k in sender} == sender, line  # exactly the sender's series
        assert len(rows[0]["values"]) == 1  # exactly one point

    write_one()
    names = influx_query(services.influx_port, db, "SHOW MEASUREMENTS")[0]["values"]
    assert len(names) == next(counter)  # no measurement beyond one per write
