"""The writer and the 2.x backend against a local endpoint reproducing InfluxDB 2.x's write contract (tests/fakes.py):
every answer mapped to what the writer does, refused points isolated, transient ones retried. No service is started."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from hub.adapters.influx import (
    BatchTooLarge,
    InfluxV1,
    InfluxV2,
    StorageConfigError,
    StorageError,
    WriteRejected,
    parse_conflict,
    v2_error,
)
from hub.config import InfluxConfig
from hub.ingest import writer as writer_module
from hub.ingest.spool import Spool
from hub.ingest.writer import Writer
from hub.ops.services import free_port
from hub.pace import Backoff
from tests.fakes import FakeV2, v2_config
from tests.support import wait_until

FAST = Backoff(first_s=0.01, cap_s=0.05)


@dataclass
class Outcomes:
    stored: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def make_writer(
    backend: InfluxV1 | InfluxV2, directory: Path, batch_max: int = 5000
) -> tuple[Spool[str], Writer[str], Outcomes]:
    outcomes = Outcomes()
    spool: Spool[str] = Spool(directory, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
    spool.open()
    writer = Writer(
        backend,
        spool,
        batch_max,
        on_stored=lambda records: outcomes.stored.extend(str(r.owner) for r in records),
        on_rejected=lambda record, detail: outcomes.rejected.append((str(record.owner), detail)),
        backoff=FAST,
    )
    return spool, writer, outcomes


async def write_all(writer: Writer[str], spool: Spool[str], lines: dict[str, str], outcomes: Outcomes) -> None:
    """Spool `lines` (owner → line) as one batch and run the writer until every owner has an outcome."""
    for owner, line in lines.items():
        spool.append(time.time_ns(), 0, "c/l/d", line, owner)
    await spool.commit()
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: len(outcomes.stored) + len(outcomes.rejected) == len(lines), what="all outcomes")
    finally:
        task.cancel()
        spool.close()


def test_parse_conflict_reads_influxdb_messages() -> None:
    message = (
        'partial write: field type conflict: input field "speed" on measurement "generic" is type string, '
        "already exists as type float dropped=1"
    )
    conflict = parse_conflict(message)
    assert conflict is not None
    assert (conflict.measurement, conflict.field, conflict.got, conflict.existing) == (
        "generic",
        "speed",
        "string",
        "float",
    )
    assert parse_conflict("field type conflict") is None


async def run_v2(
    url: str, directory: Path, lines: dict[str, str], cfg: InfluxConfig | None = None
) -> tuple[Writer[str], Outcomes]:
    backend = InfluxV2(cfg or v2_config(url))
    await backend.start()
    spool, writer, outcomes = make_writer(backend, directory)
    try:
        await write_all(writer, spool, lines, outcomes)
    finally:
        await backend.close()
    return writer, outcomes


@pytest.mark.parametrize(
    ("status", "kind", "retry_after"),
    [
        (400, WriteRejected, None),
        (422, WriteRejected, None),
        (413, BatchTooLarge, None),
        (401, StorageConfigError, None),
        (403, StorageConfigError, None),
        (404, StorageConfigError, None),
        (429, StorageError, 2.0),
        (500, StorageError, None),
        (503, StorageError, 3.0),
    ],
)
def test_v2_answers_map_to_what_the_writer_does(status: int, kind: type[Exception], retry_after: float | None) -> None:
    headers = {"Retry-After": str(int(retry_after))} if retry_after is not None else {}
    err = v2_error(status, "the message", headers)
    assert type(err) is kind
    if isinstance(err, StorageError):
        assert err.retry_after == retry_after


async def test_v2_write_sends_org_bucket_precision_and_token(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    fake, url = fake_v2
    _, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.5 1700000000000000000", "b": "m x=2.5 1700000000000000001"})
    assert sorted(outcomes.stored) == ["a", "b"]
    query, headers, body = fake.requests[0]
    assert query == {"org": "lab", "bucket": "labhub", "precision": "ns"}
    assert headers["Authorization"] == "Token secret-token"
    assert body.splitlines() == ["m x=1.5 1700000000000000000", "m x=2.5 1700000000000000001"]


@pytest.mark.parametrize(
    ("bad_line", "says"),
    [
        ("m x= 1700000000000000100", "unable to parse 'm x= 1700000000000000100'"),  # 400: whole batch refused
        ('m bad="s" 1700000000000000100', 'input field "bad" on measurement "m" is type string'),  # 422: partial
    ],
    ids=["400-malformed", "422-field-type-conflict"],
)
async def test_v2_refused_points_are_isolated_and_never_retried(
    fake_v2: tuple[FakeV2, str], tmp_path: Path, bad_line: str, says: str
) -> None:
    fake, url = fake_v2
    lines = {f"ok{i}": f"m x={i}.0 {1700000000000000000 + i}" for i in range(7)}
    lines["bad"] = bad_line
    writer, outcomes = await run_v2(url, tmp_path, lines)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "bad")
    [(owner, detail)] = outcomes.rejected
    assert owner == "bad" and says in detail
    assert sorted(set(fake.stored)) == sorted(line for o, line in lines.items() if o != "bad")
    assert writer.stats.retries == 0 and writer.stats.last_error == ""
    assert len(fake.bodies()) == len(set(fake.bodies())), "a refused body was sent again"
    assert [body for body in fake.bodies() if body == bad_line] == [bad_line]  # isolated once, then given up


async def test_v2_conflict_detail_names_the_field(fake_v2: tuple[FakeV2, str], tmp_path: Path) -> None:
    """The 422 message of a 2.7.x server reads as a field conflict (the hub's `type_conflict` relies on it)."""
    _, url = fake_v2
    _, outcomes = await run_v2(url, tmp_path, {"bad": 'm bad="s" 1700000000000000000'})
    [(_, detail)] = outcomes.rejected
    conflict = parse_conflict(detail)
    assert conflict is not None and (conflict.measurement, conflict.field, conflict.got, conflict.existing) == (
        "m",
        "bad",
        "string",
        "float",
    )


async def test_v2_too_large_batch_is_split_and_a_too_large_point_rejected(
    fake_v2: tuple[FakeV2, str], tmp_path: Path
) -> None:
    fake, url = fake_v2
    fake.max_body_bytes = 300
    lines = {f"ok{i:02d}": f"m x={i}.0 {1700000000000000000 + i}" for i in range(40)}  # ~1,200 bytes in all
    lines["huge"] = f"m x={'1' * 400}.0 1700000000000000999"
    writer, outcomes = await run_v2(url, tmp_path, lines)
    assert sorted(outcomes.stored) == sorted(o for o in lines if o != "huge")
    [(owner, detail)] = outcomes.rejected
    assert owner == "huge" and "HTTP 413" in detail and "points batch is too large" in detail
    assert sorted(set(fake.stored)) == sorted(line for o, line in lines.items() if o != "huge")
    assert writer.stats.splits >= 1 and writer.stats.retries == 0
    assert writer.max_body_bytes is not None and writer.max_body_bytes < 1300


@pytest.mark.parametrize(
    ("status", "cfg", "fix", "hint"),
    [
        (401, {"token": "wrong"}, lambda fake: fake.tokens.update(wrong=True), "check [influx] token"),
        (403, {"token": "read-only"}, lambda fake: fake.tokens.update({"read-only": True}), "write permission"),
        (404, {"bucket": "nope"}, lambda fake: fake.buckets.add("nope"), "check [influx] org and bucket"),
    ],
    ids=["401", "403", "404"],
)
async def test_v2_configuration_errors_are_loud_and_hold_the_points(
    fake_v2: tuple[FakeV2, str],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    cfg: dict[str, str],
    fix: Callable[[FakeV2], None],
    hint: str,
) -> None:
    """Refused credentials or names: logged at ERROR again and again, shown as the last error (→ /healthz),
    nothing dropped or rejected; stored as soon as the server accepts them."""
    fake, url = fake_v2
    monkeypatch.setattr(writer_module, "LOUD_EVERY_S", 0.0)  # every retry says it (30 s apart in service)
    backend = InfluxV2(v2_config(url, **cfg))
    await backend.start()
    spool, writer, outcomes = make_writer(backend, tmp_path)
    spool.append(time.time_ns(), 0, "c/l/d", "m x=1.0 1700000000000000000", "a")
    await spool.commit()
    task = asyncio.create_task(writer.run())
    try:
        await wait_until(lambda: writer.stats.retries >= 3, what="three refused writes")
        loud = [r for r in caplog.records if r.name == writer_module.__name__ and r.levelno == logging.ERROR]
        assert len(loud) >= 3 and all(f"HTTP {status}" in r.getMessage() for r in loud)
        assert "NOTHING IS STORED" in loud[0].getMessage() and hint in loud[0].getMessage()
        assert writer.stats.last_error.startswith(f"HTTP {status}: ") and hint in writer.stats.last_error
        assert writer.stats.failing_since is not None
        assert outcomes.stored == [] and outcomes.rejected == [] and fake.stored == []
        fix(fake)
        await wait_until(lambda: outcomes.stored == ["a"], what="stored once the server accepts")
        assert writer.stats.last_error == "" and writer.stats.failing_since is None and outcomes.rejected == []
    finally:
        task.cancel()
        spool.close()
        await backend.close()


class LongWaits:
    """asyncio as the writer sees it, except that a wait of a second or more is recorded, not slept: a
    Retry-After counts in whole seconds, which a unit test cannot afford to sleep."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __getattr__(self, name: str) -> object:
        return getattr(asyncio, name)

    async def sleep(self, delay: float) -> None:
        if delay >= 1:
            self.waits.append(delay)
            delay = 0
        await asyncio.sleep(delay)


@pytest.mark.parametrize(("status", "retry_after"), [(429, "1"), (503, "1"), (500, None)])
async def test_v2_transient_answers_are_retried(
    fake_v2: tuple[FakeV2, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    status: int,
    retry_after: str | None,
) -> None:
    fake, url = fake_v2
    code = {429: "too many requests", 500: "internal error", 503: "unavailable"}[status]
    headers = {"Retry-After": retry_after} if retry_after else {}
    fake.script.append(
        lambda body: web.json_response({"code": code, "message": "try later"}, status=status, headers=headers)
    )
    clock = LongWaits()
    monkeypatch.setattr(writer_module, "asyncio", clock)
    writer, outcomes = await run_v2(url, tmp_path, {"a": "m x=1.0 1700000000000000000"})
    assert outcomes.stored == ["a"] and outcomes.rejected == [] and writer.stats.retries == 1
    assert clock.waits == ([float(retry_after)] if retry_after else [])  # the server's Retry-After, once
    assert len(fake.requests) == 2 and fake.stored == ["m x=1.0 1700000000000000000"]


async def test_v2_unauthorized_is_a_configuration_error(fake_v2: tuple[FakeV2, str]) -> None:
    fake, url = fake_v2
    backend = InfluxV2(v2_config(url, token="wrong"))
    await backend.start()
    try:
        with pytest.raises(StorageConfigError, match=r"HTTP 401: unauthorized access \(.*check \[influx\] token"):
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
    assert fake.stored == []


async def test_v2_unreachable_is_a_storage_error() -> None:
    backend = InfluxV2(v2_config(f"http://127.0.0.1:{free_port()}"))
    await backend.start()
    try:
        with pytest.raises(StorageError) as caught:
            await backend.write("m x=1.0 1")
    finally:
        await backend.close()
    assert not isinstance(caught.value, StorageConfigError)
