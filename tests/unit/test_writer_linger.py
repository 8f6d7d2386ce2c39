"""A slow stream's writes linger: a classroom's readings share InfluxDB writes instead of one write each, and
grading or stopping cuts the linger short. The spool is real (a temp dir); the database is a recording stub,
since what is tested is when the writer writes, not what InfluxDB answers (tests/unit/test_storage.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hub.ingest import writer as writer_module
from hub.ingest.spool import Spool
from hub.ingest.writer import Writer
from tests.support import wait_until

LONG_S = 30.0  # a linger no test waits out: a write that comes sooner was not held back by it


@dataclass
class Recorded:
    """The database: every body written, in order."""

    bodies: list[str] = field(default_factory=list)

    async def write(self, body: str, policy: str | None = None) -> None:
        self.bodies.append(body)


@dataclass
class Rig:
    spool: Spool[str]
    writer: Writer[str]
    db: Recorded
    stored: list[str]
    task: asyncio.Task[None]
    sent: int = 0

    async def send(self, n: int = 1) -> None:
        """`n` readings accepted together (one intake cycle: appended, then committed)."""
        for _ in range(n):
            self.spool.append(1_700_000_000_000_000_000 + self.sent, 0, "c/l/d", f"m x={self.sent}", f"r{self.sent}")
            self.sent += 1
        await self.spool.commit(sync=False)  # on disk for the writer; no fsync to wait for

    async def all_stored(self) -> None:
        await wait_until(lambda: len(self.stored) == self.sent, what=f"{self.sent} readings stored")


@contextlib.asynccontextmanager
async def rig(tmp_path: Path, linger_s: float, batch_max: int = 10_000) -> AsyncIterator[Rig]:
    spool: Spool[str] = Spool(tmp_path / "spool", 1 << 30, on_full=lambda: None, on_drained=lambda: None)
    spool.open()
    db = Recorded()
    stored: list[str] = []
    writer = Writer(
        db,  # type: ignore[arg-type]
        spool,
        batch_max,
        on_stored=lambda records: stored.extend(str(r.owner) for r in records),
        on_rejected=lambda record, detail: None,
        linger_s=linger_s,
    )
    task = asyncio.create_task(writer.run())
    try:
        yield Rig(spool, writer, db, stored, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        spool.close()


class Clock:
    """The linger's clock in the test's hands (hub.ingest.writer.clock): time moves only when the test says."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(writer_module, "clock", lambda: self.now)


async def settle() -> None:
    """Let the writer's task take its turns (it wakes at each admission)."""
    for _ in range(50):
        await asyncio.sleep(0)


async def test_a_slow_streams_readings_share_the_next_write_after_a_linger(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Clock(monkeypatch)  # however long sending takes here, they came at the same instant: not a fast stream
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await r.all_stored()  # the first reading after a quiet spell is written at once
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        for _ in range(5):  # five boards' readings, each in its own intake cycle
            await r.send()
            await asyncio.sleep(0)
        assert len(r.db.bodies) == 1, "a reading was written while the writer lingered"
        r.writer.hurry()  # as grading does
        await r.all_stored()
        assert len(r.db.bodies) == 2
        assert r.db.bodies[1].count("\n") == 4, "the five readings did not share one write"


async def test_without_a_linger_each_reading_is_written_as_it_comes(tmp_path: Path) -> None:
    async with rig(tmp_path, 0.0) as r:
        for i in range(1, 4):
            await r.send()
            await r.all_stored()
            assert len(r.db.bodies) == i
        assert r.writer.stats.lingers == 0


async def test_a_fast_streams_batches_never_linger(tmp_path: Path) -> None:
    """Under load (the hub's benchmarks: 500 devices), a batch of a few hundred readings is followed at once by
    the next: a linger would hold a fast stream's readings back for nothing."""
    async with rig(tmp_path, LONG_S) as r:
        await r.send(500)
        await r.all_stored()
        await r.send(500)
        await r.all_stored()
        assert r.writer.stats.lingers == 0


async def test_stopping_writes_what_waits_without_waiting_out_the_linger(tmp_path: Path) -> None:
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        await r.send(3)
        left = await asyncio.wait_for(r.writer.drain(timeout=5.0), 10.0)
        assert left == 0
        await r.all_stored()


@pytest.mark.parametrize("linger_s", [0.05, 0.2])
async def test_a_lingering_writer_still_writes_within_its_linger(tmp_path: Path, linger_s: float) -> None:
    """Nothing hurries it: the readings that came during a linger are written when it ends."""
    async with rig(tmp_path, linger_s) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        await r.send(2)
        await r.all_stored()
        assert len(r.db.bodies) == 2


async def test_after_a_quiet_spell_a_fast_stream_lingers_once(tmp_path: Path) -> None:
    """At 500/s intake reads every 10 ms, so batches are small: what was written over the last second, not the
    batch's size, says the stream is fast. A stream that turns fast lingers once: the batch that comes during
    that linger ends it, and no linger follows while the rate builds up (a linger per small batch during its
    first second held readings back 200 ms: p99 publish→queryable went from 15 to 160 ms)."""
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        await r.send(50)  # what 100 ms of 500/s bring
        await r.all_stored()  # within wait_until's 10 s: the linger (LONG_S) ended for them
        for _ in range(3):
            await r.send(5)  # 10 ms of 500/s
            await r.all_stored()  # at once: no linger holds them
        assert r.writer.stats.lingers == 1


async def test_full_batches_never_linger_whatever_the_batch_size(tmp_path: Path) -> None:
    """A backlog written in batches of `batch_max_points` (here 10, below a slow stream's batch) goes out
    back to back."""
    async with rig(tmp_path, LONG_S, batch_max=10) as r:
        await r.send(300)
        await r.all_stored()
        assert r.writer.stats.lingers == 0


@pytest.mark.parametrize("turns", [0, 1, 2, 3])
async def test_a_writer_hurried_then_cancelled_stops(tmp_path: Path, turns: int) -> None:
    """The hub's stop: drain (which hurries the writer), then cancel every task. A linger that ends as the
    cancellation comes must not swallow it (asyncio.wait_for in Python 3.11 did: the hub never stopped)."""
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        r.writer.hurry()
        for _ in range(turns):  # each turn of the loop lets the linger's wait go one step further
            await asyncio.sleep(0)
        r.task.cancel()
        done, _ = await asyncio.wait([r.task], timeout=5.0)
        assert done, "the writer swallowed its cancellation"


async def test_a_linger_ends_when_a_fast_streams_readings_wait(tmp_path: Path) -> None:
    """A stream that turns fast does not wait out the linger: once a fast stream's batch waits, it is written."""
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        await r.send(150)
        await r.all_stored()  # within wait_until's 10 s: far less than LONG_S


async def test_a_linger_ends_once_readings_come_at_a_fast_streams_pace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A stream that turns fast (500 devices coming back) is written within about FAST_SPAN_S, not once a batch
    of 32 waits: that wait (64 ms at 500/s, looked at every 50 ms) was the slowest reading of a stream's first
    second (90-107 ms publish->queryable, 30 ms with no linger at all)."""
    clock = Clock(monkeypatch)
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        await r.send(writer_module.FAST_POINTS - 1)
        await settle()
        assert len(r.db.bodies) == 1, "fewer than FAST_POINTS ended the linger"
        clock.now += 2 * writer_module.FAST_SPAN_S  # 20 ms: 5 readings in 20 ms is 250/s
        await r.send()
        await settle()  # the admission itself wakes the linger: no timer (LINGER_CHECK_S) is waited for
        assert len(r.stored) == r.sent, "the linger did not end as the fifth reading came"


async def test_a_burst_of_boards_at_one_instant_is_not_a_fast_stream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thirty boards started together publish together: their readings come at once, then nothing for a second.
    That is a classroom, and the linger holds: at once is not a pace, and 31 readings over half a second are 62/s."""
    clock = Clock(monkeypatch)
    async with rig(tmp_path, LONG_S) as r:
        await r.send()
        await wait_until(lambda: r.writer.stats.lingers == 1, what="the writer lingering")
        for _ in range(30):
            await r.send()
        await settle()
        clock.now += 0.5
        await r.send()
        await settle()
        assert len(r.db.bodies) == 1, "the burst ended the linger"
        r.writer.hurry()
        await r.all_stored()
        assert len(r.db.bodies) == 2
