"""The pure parts of exports: times and intervals as people type them, the columns decided before the first row,
RFC 4180 cells (quotes, commas, line breaks in text fields), typed JSON Lines, and the paging queries."""

from __future__ import annotations

import csv
import io
import json

import pytest

from devices.kinds import AIR_QUALITY, GENERIC
from devices.topics import DeviceRef
from hub.exports import Aggregate, Selection, Target, parse_every, parse_time, parse_window
from hub.exports.formats import Column, columns_of, csv_header, csv_rows, iso_utc, jsonl_rows
from hub.exports.queries import downsampled_query, raw_page_query, slices
from tests.unit.test_web_routes import ARM_ANA, COHORT, Lab, lab  # noqa: F401 (lab: the fixture)

ANA = DeviceRef("c1", "ana", "aq")
S = 1_000_000_000


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("1764288000", 1_764_288_000 * S),
        ("1764288000.5", 1_764_288_000 * S + S // 2),
        ("2025-11-28T00:00:00Z", 1_764_288_000 * S),
        ("2025-11-28T01:00:00+01:00", 1_764_288_000 * S),
        ("2025-11-28T00:00:00", 1_764_288_000 * S),  # no zone: UTC
        ("2025-11-28T00:00:00.25Z", 1_764_288_000 * S + S // 4),
    ],
)
def test_times_as_unix_seconds_or_iso_8601(text: str, ns: int) -> None:
    assert parse_time(text) == ns


@pytest.mark.parametrize("text", ["", "yesterday", "nan", "inf", "2025-13-01"])
def test_what_is_not_a_time_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


@pytest.mark.parametrize(("text", "s"), [("30s", 30), ("1m", 60), ("2h", 7200), ("1d", 86400), ("45", 45)])
def test_intervals(text: str, s: int) -> None:
    assert parse_every(text) == s


@pytest.mark.parametrize("text", ["0s", "1w", "-1m", "1.5m", "m", "99999999s"])
def test_bad_intervals(text: str) -> None:
    with pytest.raises(ValueError):
        parse_every(text)


def test_windows_default_to_the_last_day_and_are_bounded() -> None:
    now = 2_000_000_000 * S
    assert parse_window(None, None, now) == (now - 86400 * S, now)
    assert parse_window("100", "200", now) == (100 * S, 200 * S)
    for start, end in (("200", "100"), ("100", "100"), ("0", str(401 * 86400))):
        with pytest.raises(ValueError):
            parse_window(start, end, now)
    with pytest.raises(ValueError):
        Selection((), 5, 5)


def test_columns_are_the_schema_then_what_influx_holds_beyond_it() -> None:
    open_ref = DeviceRef("c1", "ana", "box")
    open_target = Target(open_ref, GENERIC)
    selection = Selection((Target(ANA, AIR_QUALITY), open_target), 0, 1)
    types = {
        (open_target.measurement, "zeta"): "float",
        (open_target.measurement, "label"): "string",
        ("generic.c1.ben", "other"): "float",  # another learner's measurement: not in this export
        ("air_quality", "pm2_5"): "float",
    }
    columns = columns_of(selection, types)
    assert [c.name for c in columns] == [*AIR_QUALITY.fields, "label", "zeta"]
    assert columns[1] == Column("pm2_5", "µg/m³", "float") and columns[1].title == "pm2_5 [µg/m³]"
    assert columns[-1].title == "zeta"  # no schema, no unit
    minute = Selection(selection.targets, 0, 1, 60, Aggregate.MAX)
    assert [c.name for c in columns_of(minute, types)] == [*AIR_QUALITY.fields, "zeta"]  # text cannot be downsampled


def test_csv_is_rfc_4180_with_typed_cells() -> None:
    columns = [
        Column("t", "°C", "float"),
        Column("n", "", "integer"),
        Column("ok", "", "boolean"),
        Column("s", "", "string"),
    ]
    head = csv_header(columns)
    assert head == "time_utc,time_ns,cohort,learner,device,t [°C],n,ok,s\r\n".encode()
    row = {"time_ns": 1_764_288_000 * S + 5, **ANA.tags, "t": 21, "n": 3.0, "ok": False, "s": 'a, "b"\nc'}
    body = csv_rows([row, {"time_ns": 0, **ANA.tags}], columns)
    assert (
        body.decode().split("\r\n")[0]
        == '2025-11-28T00:00:00.000000005Z,1764288000000000005,c1,ana,aq,21.0,3,false,"a, ""b""\nc"'
    )
    parsed = list(csv.reader(io.StringIO((head + body).decode(), newline="")))
    assert parsed[1][-1] == 'a, "b"\nc'
    assert parsed[2] == ["1970-01-01T00:00:00.000000000Z", "0", "c1", "ana", "aq", "", "", "", ""]


def test_json_lines_hold_typed_values_and_leave_out_missing_fields() -> None:
    columns = [Column("t", "°C", "float"), Column("n", "", "integer")]
    body = jsonl_rows([{"time_ns": 7, **ANA.tags, "t": 21}, {"time_ns": 8, **ANA.tags, "n": 2}], columns)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    assert lines[0] == {
        "time_utc": iso_utc(7),
        "time_ns": 7,
        "cohort": "c1",
        "learner": "ana",
        "device": "aq",
        "t": 21.0,
    }
    assert isinstance(lines[0]["t"], float) and "t" not in lines[1] and lines[1]["n"] == 2


def test_paging_queries() -> None:
    assert raw_page_query("air_quality", ANA, 10, 20, 5) == (
        "SELECT * FROM \"air_quality\" WHERE cohort = 'c1' AND learner = 'ana' AND device = 'aq' AND time >= 10 "
        "AND time < 20 ORDER BY time ASC LIMIT 5"
    )
    assert downsampled_query("m", ANA, ["a", "b"], "min", 0, 60 * S, 60) == (
        'SELECT min("a") AS "a", min("b") AS "b" FROM "m" WHERE cohort = \'c1\' AND learner = \'ana\' AND '
        f"device = 'aq' AND time >= 0 AND time < {60 * S} GROUP BY time(60s) fill(none)"
    )
    with pytest.raises(ValueError):
        downsampled_query("m", ANA, ["a"], "sum; DROP", 0, 1, 60)


def test_slices_cut_on_interval_boundaries_and_cover_the_window() -> None:
    cuts = slices(90 * S, 1000 * S, 60, intervals=5)  # 300 s a slice
    assert cuts == [(90 * S, 300 * S), (300 * S, 600 * S), (600 * S, 900 * S), (900 * S, 1000 * S)]
    assert slices(5, 5, 60) == []


@pytest.mark.parametrize("text", ["1e30", "1e300", "-1e300", "-5", "99999999999999999999", "1900-01-01T00:00:00Z"])
def test_times_outside_what_influxdb_keeps_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_time(text)


HOSTILE = [
    "from=nan",
    "to=1e400",
    "from=1e30&to=1e30%2B1",
    "from=" + "9" * 5000,
    "from=2025-13-01",
    "from=200&to=100",
    "from=0&to=99999999999",
    "every=0s",
    "every=1e9",
    "every=1m&agg=sum",
    "agg=mean%27%3B%20DROP%20DATABASE%20x",
    "from=%00%FF",
    "every=%F0%9F%92%A5",
]


@pytest.mark.parametrize("query", HOSTILE)
async def test_hostile_export_parameters_are_400_never_a_5xx(lab: Lab, query: str) -> None:  # noqa: F811
    lab.add_token("trainer", "trainer", COHORT)
    for path in (f"/api/devices/{ARM_ANA.key}/readings.csv", f"/api/cohorts/{COHORT}/readings.jsonl"):
        status, answer = await lab.call("GET", f"{path}?{query}", "trainer")
        assert status == 400 and "error" in answer, (path, query, status, answer)


async def test_an_unknown_format_or_device_is_404(lab: Lab) -> None:  # noqa: F811
    lab.add_token("trainer", "trainer", COHORT)
    assert (await lab.call("GET", f"/api/devices/{ARM_ANA.key}/readings.xlsx", "trainer"))[0] == 404
    assert (await lab.call("GET", f"/api/devices/{COHORT}/ana/nobody/readings.csv", "trainer"))[0] == 404
