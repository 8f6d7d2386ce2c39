"""The fsync-then-ack promise without a broker: a real spool in a temp folder, a fake MQTT client."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.adapters.mqtt import Message
from hub.ingest import durability
from hub.ingest.device_table import DeviceState, InspectorEntry
from hub.ingest.durability import Durability
from hub.ingest.spool import AUDIT_KEY
from hub.pace import Stamper, TokenBucket
from tests.support import wait_until


class FakeIntake:
    def __init__(self) -> None:
        self.acked: list[int] = []
        self.events: list[str] = []

    def ack(self, mid: int, qos: int) -> None:
        self.acked.append(mid)

    def pause_reading(self) -> None:
        self.events.append("pause")

    def resume_reading(self) -> None:
        self.events.append("resume")


STATE = DeviceState(
    ref=DeviceRef("c", "l", "d"),
    kind=None,
    language="en",
    declared=True,
    prefix="m",
    inspector=deque(),
    error_replies=TokenBucket(1.0, 1.0),
    stamps=Stamper(),
    events=Stamper(),
)


def entry() -> InspectorEntry:
    return InspectorEntry(1, "lab/c/l/d/telemetry", b"{}", STATE)


def qos1(mid: int) -> Message:
    return Message("lab/c/l/d/telemetry", b"{}", 1, False, mid)


@pytest.fixture
def parts(tmp_path: Path) -> Iterator[tuple[Durability, FakeIntake]]:
    intake = FakeIntake()
    made = Durability(tmp_path / "spool", 1 << 30, 1000, intake)
    made.spool.open()
    yield made, intake
    made.spool.close()


async def test_acks_wait_for_the_commit_and_keep_the_arrival_order(parts: tuple[Durability, FakeIntake]) -> None:
    keep, intake = parts
    reading = entry()
    first = keep.receive(qos1(1))
    keep.append(1, 0, "c/l/d", "m x=1 1", reading)
    assert first is not None
    keep.settle(first, reading)
    second = keep.receive(qos1(2))  # nothing to commit (a rejection, a status): ready at once
    assert second is not None
    keep.settle(second, None)
    assert intake.acked == []  # but not before the first, which waits for the disk
    assert reading.verdict == "queued"
    await keep.commit_once()
    assert intake.acked == [1, 2] and reading.verdict == "spooled"
    assert keep.spool.unstored_bytes > 0


async def test_qos0_has_nothing_to_acknowledge(parts: tuple[Durability, FakeIntake]) -> None:
    keep, intake = parts
    assert keep.receive(Message("t", b"", 0, False)) is None
    await keep.commit_once()
    assert intake.acked == []


async def test_a_new_connection_forgets_the_old_message_ids(parts: tuple[Durability, FakeIntake]) -> None:
    keep, intake = parts
    reading = entry()
    slot = keep.receive(qos1(7))
    keep.append(1, 0, "c/l/d", "m x=1 1", reading)
    assert slot is not None
    keep.settle(slot, reading)
    keep.forget_acks()  # the broker sends message 7 again on the new connection
    await keep.commit_once()
    assert intake.acked == []
    again = keep.receive(qos1(1))  # the new connection's first message is not stuck behind the old one
    assert again is not None
    keep.settle(again, None)
    assert intake.acked == [1]


async def test_too_many_records_waiting_for_the_disk_pause_intake_until_half_are_committed(
    parts: tuple[Durability, FakeIntake], monkeypatch: pytest.MonkeyPatch
) -> None:
    keep, intake = parts
    monkeypatch.setattr(durability, "MAX_PENDING_COMMIT", 3)
    for i in range(4):
        keep.append(1, 0, "c/l/d", f"m x={i} 1", entry())
    assert intake.events == ["pause"] and keep.commit_paused and keep.paused
    await keep.commit_once()
    assert intake.events == ["pause", "resume"] and not keep.paused


async def test_a_full_spool_pauses_intake_and_counts_it(tmp_path: Path) -> None:
    intake = FakeIntake()
    keep = Durability(tmp_path / "spool", 100, 1000, intake)
    keep.spool.open()
    for i in range(5):
        keep.append(1, 0, "c/l/d", f"m x={i} 1", entry())
    await keep.commit_once()
    assert intake.events == ["pause"] and keep.pauses == 1 and keep.paused
    keep.spool.close()


async def test_evidence_is_spooled_under_the_audit_key(parts: tuple[Durability, FakeIntake]) -> None:
    keep, _ = parts
    keep.audit("c/l/d", "commands x=1 1")
    await keep.commit_once()
    batch = await keep.spool.take(10)
    assert [(r.key, r.line, r.owner) for r in batch.records] == [(AUDIT_KEY + "c/l/d", "commands x=1 1", None)]


async def test_a_writer_behind_pauses_intake_and_a_full_spool_keeps_it_paused(tmp_path: Path) -> None:
    """Overload: InfluxDB takes writes more slowly than readings come, so intake waits (the broker holds the
    readings) until the writer has caught up with half; another hold (the disk behind) still holds it then."""
    intake = FakeIntake()
    keep = Durability(tmp_path / "spool", 1 << 30, 4, intake)
    keep.spool.open()
    for i in range(5):
        keep.append(1, 0, "c/l/d", f"m x={i} 1", entry())
    await keep.commit_once()
    assert intake.events == ["pause"] and keep.spool.behind and keep.paused
    keep.commit_paused = True  # as if the disk were also behind meanwhile
    keep.spool.done(await keep.spool.take(4))
    assert intake.events == ["pause"] and not keep.spool.behind and keep.paused
    keep.commit_paused = False
    keep.spool.done(await keep.spool.take(4))
    for i in range(5):
        keep.append(1, 0, "c/l/d", f"m x={i} 2", entry())
    await keep.commit_once()
    keep.spool.done(await keep.spool.take(4))
    assert intake.events == ["pause", "pause", "resume"] and not keep.paused
    keep.spool.close()


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Every fdatasync the spool makes (and still makes it)."""
    made: list[int] = []
    real = os.fdatasync

    def fdatasync(fd: int) -> None:
        made.append(fd)
        real(fd)

    monkeypatch.setattr(os, "fdatasync", fdatasync)
    return made


async def test_a_qos1_reading_is_fsynced_before_its_acknowledgement(
    parts: tuple[Durability, FakeIntake], fsyncs: list[int]
) -> None:
    keep, intake = parts
    reading = entry()
    slot = keep.receive(qos1(3))
    keep.append(1, 0, "c/l/d", "m x=1 1", reading)
    assert slot is not None
    keep.settle(slot, reading)
    await keep.commit_once()
    assert len(fsyncs) == 1 and intake.acked == [3]


async def test_qos0_readings_are_written_at_once_and_fsynced_within_the_sync_interval(
    parts: tuple[Durability, FakeIntake], fsyncs: list[int]
) -> None:
    """Nobody waits for a QoS 0 reading's fsync: it is in the file (a killed hub's page cache keeps it) when
    its commit returns, and on disk within SYNC_EVERY_S, one fsync for every commit meanwhile."""
    keep, _ = parts
    runner = asyncio.create_task(keep.run())
    try:
        for i in range(3):
            keep.append(1, 0, "c/l/d", f"m x={i} 1", entry())
            await keep.commit_once()
        segment = keep.spool.directory / f"{0:020d}.log"
        assert segment.stat().st_size == keep.spool.committed_end > 0  # written, before any fsync
        assert fsyncs == [] and keep.spool.unsynced
        started = time.monotonic()
        await wait_until(lambda: bool(fsyncs), timeout=5, what="the fsync")
        assert time.monotonic() - started <= durability.SYNC_EVERY_S + 0.2
        assert len(fsyncs) == 1 and not keep.spool.unsynced
    finally:
        runner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await runner


async def test_an_http_reading_waits_for_the_fsync(parts: tuple[Durability, FakeIntake], fsyncs: list[int]) -> None:
    keep, _ = parts
    reading = entry()
    keep.append(1, 0, "c/l/d", "m x=1 1", reading)
    waiting = asyncio.create_task(keep.spooled(reading))
    await asyncio.sleep(0)  # the handler awaits its commit
    await keep.commit_once()
    await asyncio.wait_for(waiting, 1)
    assert len(fsyncs) == 1


async def test_closing_the_spool_fsyncs_what_was_written_unsynced(tmp_path: Path, fsyncs: list[int]) -> None:
    keep = Durability(tmp_path / "spool", 1 << 30, 1000, FakeIntake())
    keep.spool.open()
    keep.append(1, 0, "c/l/d", "m x=1 1", entry())
    await keep.commit_once()
    assert fsyncs == []
    keep.spool.close()
    assert len(fsyncs) == 1
