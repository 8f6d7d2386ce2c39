"""The one reader: InfluxQL answers turned into readings (tags and nulls left out), in the order callers rely on;
the same reads for every backend (1.x, 2.x, 3.x all answer InfluxQL over `/query`)."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.adapters import influxql
from hub.adapters.influx_read import InfluxQLReader

T = TypeVar("T")
REF = DeviceRef("c1", "ana", "aq1")
COLUMNS = ["time", "cohort", "device", "learner", "pm2_5", "pm10"]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Canned(InfluxQLReader):
    """Answers each query from a table (unknown queries: no series) and records what was asked."""

    def __init__(self, answers: dict[str, list[dict[str, Any]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        self.asked.append(q)
        return self.answers.get(q, [])


def test_readings_leave_out_tags_and_nulls() -> None:
    q = influxql.readings_query("air_quality", REF, 0, 10)
    series = [{"name": "air_quality", "columns": COLUMNS, "values": [[1, "c1", "aq1", "ana", 12.5, None]]}]
    reader = Canned({q: series})
    assert run(reader.readings("air_quality", REF, 0, 10)) == [(1, {"pm2_5": 12.5})]
    assert reader.asked == [q]


def test_presence_starts_with_the_last_status_before_the_window() -> None:
    reader = Canned(
        {
            influxql.presence_before_query(REF, 5): [{"columns": ["time", "last"], "values": [[2, False]]}],
            influxql.presence_query(REF, 5, 10): [{"columns": ["time", "online"], "values": [[6, True], [8, False]]}],
        }
    )
    assert run(reader.presence(REF, 5, 10)) == [(2, False), (6, True), (8, False)]
    assert run(Canned({}).presence(REF, 5, 10)) == []


def test_rejections_and_commands() -> None:
    reader = Canned(
        {
            influxql.rejections_query(REF, 0, 9): [
                {"columns": ["time", "message", "code"], "values": [[3, "m", "out_of_range"]]}
            ],
            influxql.commands_query(REF, 0, 9): [
                {"columns": ["time", "cohort", "state", "type"], "values": [[4, "c1", "done", "stop"]]}
            ],
        }
    )
    assert run(reader.rejections(REF, 0, 9)) == [(3, "out_of_range")]
    assert run(reader.commands(REF, 0, 9)) == [(4, {"state": "done", "type": "stop"})]


def test_latest_and_history() -> None:
    latest_q = influxql.latest_query("air_quality", REF, 7)
    history_q = influxql.history_query("air_quality", REF, "pm2_5", 0, 90, 30)
    reader = Canned(
        {
            latest_q: [{"columns": COLUMNS, "values": [[9, "c1", "aq1", "ana", 3.0, 4.0]]}],
            history_q: [{"columns": ["time", "mean", "min", "max"], "values": [[0, None, None, None], [30, 2, 1, 3]]}],
        }
    )
    assert run(reader.latest("air_quality", REF, 7)) == (9, {"pm2_5": 3.0, "pm10": 4.0})
    assert run(Canned({}).latest("air_quality", REF, 7)) is None
    assert run(reader.history("air_quality", REF, "pm2_5", 0, 90, 30)) == [(0, None, None, None), (30, 2, 1, 3)]


def test_overview_reads_each_source_once_in_order() -> None:
    air, generic = KINDS["air_quality"], KINDS["generic"]
    air_q = influxql.latest_by_device_query('"air_quality"', "c1", "ana")
    generic_q = influxql.latest_by_device_query("/^generic\\.c1\\./", "c1", "ana")
    reader = Canned(
        {
            air_q: [
                {
                    "tags": {"learner": "ana", "device": "aq1"},
                    "columns": COLUMNS,
                    "values": [[5, "c1", "aq1", "ana", 1, 2]],
                }
            ],
            generic_q: [{"tags": {"learner": "ana", "device": "b"}, "columns": ["time", "n"], "values": [[6, 7]]}],
        }
    )
    got = run(reader.latest_by_device([generic, air, air], "c1", "ana"))
    assert got == [(("ana", "aq1"), (5, {"pm2_5": 1, "pm10": 2})), (("ana", "b"), (6, {"n": 7}))]
    assert reader.asked == [air_q, generic_q]  # '"' sorts before '/'


def test_sparklines_leave_out_empty_intervals() -> None:
    air = KINDS["air_quality"]
    q = influxql.sparkline_query('"air_quality"', "c1", "pm2_5", 300, 5)
    reader = Canned({q: [{"tags": {"learner": "ana", "device": "aq1"}, "values": [[0, None], [5, 1.5]]}]})
    got = run(reader.sparklines([(air, "pm2_5"), (air, "pm2_5")], "c1", 300, 5))
    assert got == [("pm2_5", ("ana", "aq1"), [(5, 1.5)])]
    assert reader.asked == [q]


def test_field_types() -> None:
    reader = Canned({"SHOW FIELD KEYS": [{"name": "m", "values": [["x", "float"], ["s", "string"]]}]})
    assert run(reader.field_types()) == {("m", "x"): "float", ("m", "s"): "string"}
