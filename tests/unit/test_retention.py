"""Retention per cohort, the pure parts: the config's `retention`, the statements, and the writer's grouping
(a hub with no retention writes each batch in one call with no policy, exactly as before)."""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef
from hub.adapters.influxql import in_policy, purge_statements, readings_query, retention_statements
from hub.config import ConfigError, parse_config
from hub.ingest.spool import AUDIT_KEY, Record
from hub.ingest.writer import by_policy


def test_config_reads_each_cohorts_retention() -> None:
    cfg = parse_config({"cohorts": {"a": {"retention": "90d"}, "b": {"language": "fr"}}})
    assert cfg.retention == {"a": "90d"}
    assert parse_config({}).retention == {}


@pytest.mark.parametrize("bad", ["90", "0d", "90 d", "1y", 90, "-3d", "9999999d"])
def test_config_refuses_a_duration_influxdb_would_not_take(bad: object) -> None:
    with pytest.raises(ConfigError, match=r"cohorts\.a\.retention"):
        parse_config({"cohorts": {"a": {"retention": bad}}})


def test_config_refuses_retention_on_the_v2_backend() -> None:
    with pytest.raises(ConfigError, match=r"1\.x backend"):
        parse_config({"influx": {"backend": "v2", "org": "o", "bucket": "b"}, "cohorts": {"a": {"retention": "90d"}}})


def test_statements() -> None:
    assert retention_statements("lab", "c1", "90d") == [
        'CREATE RETENTION POLICY "rp_c1" ON "lab" DURATION 90d REPLICATION 1',
        'ALTER RETENTION POLICY "rp_c1" ON "lab" DURATION 90d',
        'CREATE RETENTION POLICY "rollup_1m" ON "lab" DURATION INF REPLICATION 1',
        'CREATE CONTINUOUS QUERY "rollup_1m_c1" ON "lab" BEGIN SELECT mean(*) INTO "lab"."rollup_1m".:MEASUREMENT '
        'FROM "lab"."rp_c1"./.*/ GROUP BY time(1m), * END',
    ]
    assert purge_statements("lab", "c1")[0] == "DROP SERIES FROM /.*/ WHERE cohort = 'c1'"
    q = readings_query("air_quality", DeviceRef("c1", "l", "d"), 1, 2)
    assert in_policy(q, "rp_c1").startswith('SELECT * FROM "rp_c1"."air_quality" WHERE cohort = ')


def _record(key: str) -> Record[str]:
    return Record(0, 0, 0, key, f"line of {key}", key)


def test_by_policy_groups_a_batch_by_cohort_keeping_order() -> None:
    records = [_record(k) for k in ("a/l/d", "b/l/d", AUDIT_KEY + "a/l/e", "a/m/d")]
    groups = by_policy(records, {"a": "rp_a"})
    assert {p: [r.key for r in rs] for p, rs in groups.items()} == {
        "rp_a": ["a/l/d", AUDIT_KEY + "a/l/e", "a/m/d"],
        None: ["b/l/d"],
    }
