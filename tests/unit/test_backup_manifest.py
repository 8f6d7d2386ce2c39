"""The backup's pure half: the manifest written and read back, its checks against a folder's files, and the
stored points per device read from InfluxDB's count answer and compared after a restore."""

from __future__ import annotations

import json

import pytest

from hub.ops.backup import (
    FORMAT,
    BackupError,
    Manifest,
    check_files,
    compare_points,
    parse_manifest,
    points_from_series,
    source,
)

MANIFEST = Manifest(
    labhub="1.2.3",
    created="2026-06-30T17:00:00Z",
    database="labhub",
    online=True,
    files={"registry.sqlite3": "a" * 64, "influx/x.manifest": "b" * 64, "secrets/mqtt-admin": "c" * 64},
    points={"air_quality c/ana/aq1": 4, "arm c/ben/arm1": 7},
    registry={"devices": 2, "tokens": 1},
)


def test_a_manifest_reads_back_as_written_with_its_parts_named() -> None:
    text = MANIFEST.to_json()
    assert parse_manifest(text) == MANIFEST
    data = json.loads(text)
    assert data["format"] == FORMAT
    assert data["parts"] == ["influx", "registry.sqlite3", "secrets"]  # what is inside, in a fixed order
    assert list(data["files"]) == sorted(MANIFEST.files)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: "not json {", "is not JSON"),
        (lambda d: json.dumps([d]), "expected an object"),
        (lambda d: json.dumps(d | {"format": 99}), "format 99; this labhub reads format 1"),
        (lambda d: json.dumps(d | {"files": {"a": 1}}), "files: expected an object of str values"),
        (lambda d: json.dumps(d | {"points": {"k": "4"}}), "points: expected an object of int values"),
        (lambda d: json.dumps(d | {"registry": []}), "registry: expected an object of int values"),
        (lambda d: json.dumps({k: v for k, v in d.items() if k != "database"}), "database: expected a string"),
    ],
)
def test_a_manifest_that_is_not_one_is_refused_with_what_is_wrong(change: object, message: str) -> None:
    data = json.loads(MANIFEST.to_json())
    with pytest.raises(BackupError) as err:
        parse_manifest(change(data))  # type: ignore[operator]
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("found", "problems"),
    [
        ({"r": "1", "s": "2"}, []),
        ({"r": "1", "s": "2", "note.txt": "9"}, []),  # a trainer's note beside the backup is no problem
        ({"r": "1"}, ["missing: s"]),
        ({"r": "X", "s": "2"}, ["changed: r"]),
        ({"s": "Y"}, ["missing: r", "changed: s"]),
    ],
)
def test_check_files_names_missing_and_changed_files(found: dict[str, str], problems: list[str]) -> None:
    assert check_files({"r": "1", "s": "2"}, found) == problems


def test_points_per_device_are_the_largest_field_count_of_each_series() -> None:
    series = [
        {
            "name": "air_quality",
            "tags": {"cohort": "c", "learner": "ana", "device": "aq1"},
            "columns": ["time", "count_pm10", "count_pm2_5"],
            "values": [[0, 3, 4]],  # a reading without pm10 still counts
        },
        {
            "name": "generic.c.ben",
            "tags": {"cohort": "c", "learner": "ben", "device": "d1"},
            "columns": ["time", "count_a", "count_label"],
            "values": [[0, None, 2]],
        },
        {"name": "presence", "tags": {"cohort": "c", "learner": "ana", "device": "aq1"}, "values": [[0, 1]]},
        {"name": "empty", "tags": {"cohort": "c", "learner": "x", "device": "y"}, "values": [[0, None]]},
    ]
    assert points_from_series(series) == {
        "air_quality c/ana/aq1": 4,
        "generic.c.ben c/ben/d1": 2,
        "presence c/ana/aq1": 1,
    }


@pytest.mark.parametrize(
    ("found", "exact", "problems"),
    [
        ({"a": 4, "b": 7}, True, []),
        ({"a": 5, "b": 7}, False, []),  # an online backup: readings that came during it may be in it
        ({"a": 5, "b": 7}, True, ["a: 5 points, the backup has 4"]),
        ({"a": 3, "b": 7}, False, ["a: 3 points, the backup has 4"]),
        ({"b": 7}, False, ["a: 0 points, the backup has 4"]),
        ({"a": 4, "b": 7, "c": 1}, True, ["c: 1 points, the backup has 0"]),
    ],
)
def test_restored_points_are_compared_device_by_device(found: dict[str, int], exact: bool, problems: list[str]) -> None:
    assert compare_points({"a": 4, "b": 7}, found, exact) == problems


def test_the_count_source_quotes_the_database_name() -> None:
    assert source("labhub") == '"labhub"../.*/'
    assert source('we"ird\\') == '"we\\"ird\\\\"../.*/'
