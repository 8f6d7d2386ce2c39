"""The 2.x backend reads in InfluxQL over `/query`, against the local endpoint answering as 2.x's 1.x compatibility
API documents (tests/fakes.py): the request it sends (token, database, epoch), the answers it understands, and the
errors an operator must act on, named with what to do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from devices.topics import DeviceRef
from hub.adapters import influxql
from hub.adapters.influx import InfluxV2, StorageConfigError, StorageError
from hub.config import parse_config
from hub.ops.services import free_port
from tests.fakes import FakeV2, v2_config

REF = DeviceRef("c1", "ana", "box")


@pytest.fixture
async def v2(fake_v2: tuple[FakeV2, str]) -> AsyncIterator[InfluxV2]:
    backend = InfluxV2(v2_config(fake_v2[1]))
    await backend.start()
    yield backend
    await backend.close()


async def test_history_is_read_over_query_with_the_token_and_the_mapped_database(
    fake_v2: tuple[FakeV2, str], v2: InfluxV2
) -> None:
    fake, _ = fake_v2
    q = influxql.history_query("generic", REF, "n", 0, 20, 10)
    fake.canned[q] = [{"name": "generic", "columns": ["time", "mean", "min", "max"], "values": [[0, 1.5, 1, 2]]}]
    assert await v2.history("generic", REF, "n", 0, 20, 10) == [(0, 1.5, 1, 2)]
    [(params, headers)] = fake.queries
    assert params == {"db": "labhub", "q": q, "epoch": "ns"}
    assert headers["Authorization"] == "Token secret-token"


async def test_field_types_are_read_as_on_1x(fake_v2: tuple[FakeV2, str], v2: InfluxV2) -> None:
    """SHOW FIELD KEYS, which 2.x and 3.x answer in InfluxQL: an export's columns of an open kind come from it."""
    fake, _ = fake_v2
    fake.canned[influxql.FIELD_KEYS] = [
        {"name": "generic", "columns": ["fieldKey", "fieldType"], "values": [["n", "float"]]}
    ]
    assert await v2.field_types() == {("generic", "n"): "float"}


async def test_a_refused_token_needs_the_operator(fake_v2: tuple[FakeV2, str]) -> None:
    backend = InfluxV2(v2_config(fake_v2[1], token="wrong"))
    await backend.start()
    try:
        with pytest.raises(StorageConfigError, match=r"HTTP 401: unauthorized access .*check \[influx\] token"):
            await backend.latest("generic", REF, 0)
    finally:
        await backend.close()


async def test_an_unmapped_database_names_the_dbrp_step(fake_v2: tuple[FakeV2, str], v2: InfluxV2) -> None:
    fake, _ = fake_v2
    fake.dbrp.clear()
    with pytest.raises(StorageConfigError, match=r"database not found: labhub .*influx v1 dbrp create --db labhub"):
        await v2.readings("generic", REF, 0, 1)


async def test_a_page_that_is_not_an_influxql_answer_is_named() -> None:
    """A URL that serves a web page at /query (2.x before the compatibility API did): an error that says so."""

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="<!doctype html><title>InfluxDB 2.0</title>", content_type="text/html")

    app = web.Application()
    app.router.add_get("/query", page)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    backend = InfluxV2(v2_config(f"http://127.0.0.1:{port}"))
    await backend.start()
    try:
        with pytest.raises(StorageError, match="HTTP 200: not an InfluxQL answer: '<!doctype html>"):
            await backend.commands(REF, 0, 1)
    finally:
        await backend.close()
        await runner.cleanup()


def test_the_database_read_defaults_to_the_bucket() -> None:
    v2 = {"backend": "v2", "org": "lab", "bucket": "lab-bucket", "token": "t"}
    assert parse_config({"influx": v2}).influx.database == "lab-bucket"
    assert parse_config({"influx": {**v2, "database": "mapped"}}).influx.database == "mapped"
    assert parse_config({"influx": {"backend": "v1"}}).influx.database == "labhub"
