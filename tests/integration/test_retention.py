"""Retention per cohort against the real influxd (1.x): the policy and the rollup query exist, the writer puts a
retention cohort's points (readings and evidence, in one mixed batch) into its policy and the others where they
always went, and every read of the Reader finds them where they are."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from devices.topics import DeviceRef
from hub.adapters.influx import InfluxV1
from hub.adapters.influxql import ROLLUP_POLICY, policy_name
from hub.config import InfluxConfig
from hub.ingest.spool import AUDIT_KEY
from hub.ops.influxd import apply_retention
from tests.conftest import unique
from tests.integration.conftest import Services
from tests.support import wait_until
from tests.unit.test_storage import make_writer


async def test_a_retention_cohort_is_written_to_and_read_from_its_own_policy(
    services: Services, tmp_path: Path
) -> None:
    database = unique("db")
    backend = InfluxV1(InfluxConfig(url=services.influx_url, database=database), retention={"short": "2d"})
    await backend.start()
    try:
        await backend.ensure_database()
        await asyncio.to_thread(apply_retention, services.influx_url, database, {"short": "2d"}, None)
        await asyncio.to_thread(apply_retention, services.influx_url, database, {"short": "3d"}, None)  # changed
        policies = {row[0]: row[1] for row in (await backend.query("SHOW RETENTION POLICIES"))[0]["values"]}
        assert policies[policy_name("short")] == "72h0m0s" and policies[ROLLUP_POLICY] == "0s"
        cqs = await backend.query("SHOW CONTINUOUS QUERIES")
        assert any(row[0] == f"{ROLLUP_POLICY}_short" for s in cqs if s["name"] == database for row in s["values"])

        spool, writer, outcomes = make_writer(backend, tmp_path)
        now = time.time_ns()
        lines = {
            "short-reading": ("short/ada/d1", f"generic,cohort=short,device=d1,learner=ada x=1.5 {now}"),
            "plain-reading": ("plain/bob/d1", f"generic,cohort=plain,device=d1,learner=bob x=2.5 {now}"),
            "short-evidence": (
                AUDIT_KEY + "short/ada/d1",
                f'rejections,cohort=short,device=d1,learner=ada code="x" {now}',
            ),
        }
        for owner, (key, line) in lines.items():
            spool.append(now, 0, key, line, owner)
        await spool.commit()
        task = asyncio.create_task(writer.run())
        try:
            await wait_until(lambda: len(outcomes.stored) == 3, what="three points stored")
        finally:
            task.cancel()
            spool.close()

        short = DeviceRef("short", "ada", "d1")
        plain = DeviceRef("plain", "bob", "d1")
        in_rp = await backend.query(f'SELECT count(x) FROM "{policy_name("short")}"."generic"')
        assert in_rp[0]["values"][0][1] == 1  # only the retention cohort's reading
        default = await backend.query("SELECT count(x) FROM generic")
        assert default[0]["values"][0][1] == 1  # only the other cohort's
        assert [f for _, f in await backend.readings("generic", short, now - 1, now + 1)] == [{"x": 1.5}]
        assert [f for _, f in await backend.readings("generic", plain, now - 1, now + 1)] == [{"x": 2.5}]
        assert [code for _, code in await backend.rejections(short, now - 1, now + 1)] == ["x"]
        assert [key for key, _ in await backend.latest_by_device([], "short")] == []
        latest = await backend.latest("generic", short, now - 1)
        assert latest is not None and latest[1] == {"x": 1.5}
    finally:
        await backend.close()
