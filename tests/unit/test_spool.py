"""The disk spool on a real filesystem: group commit, ordered replay, recovery from a torn write, spilling, limits."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hub.ingest import spool as spool_module
from hub.ingest.spool import Spool
from hub.ingest.spool_format import HEADER, payload_digest, scan


@pytest.fixture
def spool_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "spool"
    yield path
    shutil.rmtree(path, ignore_errors=True)


class Flags:
    def __init__(self) -> None:
        self.full = 0
        self.drained = 0


def make(path: Path, flags: Flags | None = None, **options: int) -> Spool[str]:
    flags = flags or Flags()
    spool: Spool[str] = Spool(
        path,
        options.pop("max_bytes", 1 << 30),
        on_full=lambda: setattr(flags, "full", flags.full + 1),
        on_drained=lambda: setattr(flags, "drained", flags.drained + 1),
        **options,
    )
    spool.open()
    return spool


async def fill(spool: Spool[str], n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        spool.append(
            1_700_000_000_000_000_000 + i, payload_digest(f"p{i}".encode()), f"c/l/d{i % 3}", f"m x={i}", f"o{i}"
        )
    await spool.commit()


async def drain(spool: Spool[str], most: int = 4) -> list[str]:
    """Take and acknowledge batches until nothing is left; the lines in the order the writer saw them."""
    lines: list[str] = []
    while spool.in_memory() or spool.unstored_bytes:
        batch = await spool.take(most)
        lines.extend(batch.lines)
        spool.done(batch)
    return lines


async def test_committed_records_are_taken_in_order_and_checkpointed(spool_dir: Path) -> None:
    spool = make(spool_dir)
    await fill(spool, 10)
    assert spool.unstored_bytes > 0 and spool.commits == 1
    assert await drain(spool) == [f"m x={i}" for i in range(10)]
    assert spool.checkpoint == spool.committed_end and spool.unstored_bytes == 0
    spool.close()
    again = make(spool_dir)
    assert again.unstored_bytes == 0 and again.in_memory() == 0
    again.close()


async def test_a_restart_replays_what_was_not_stored_in_order(spool_dir: Path) -> None:
    spool = make(spool_dir)
    await fill(spool, 10)
    batch = await spool.take(4)
    spool.done(batch)  # four stored, six not
    spool.close()  # like a crash after the checkpoint was saved
    again = make(spool_dir)
    batch = await again.take(100)
    assert batch.from_disk
    assert batch.lines == [f"m x={i}" for i in range(4, 10)]
    assert [r.key for r in batch.records] == [f"c/l/d{i % 3}" for i in range(4, 10)]
    assert all(r.owner is None for r in batch.records)
    again.done(batch)
    assert again.unstored_bytes == 0
    again.close()


async def test_a_torn_write_at_the_end_is_cut_off(spool_dir: Path) -> None:
    spool = make(spool_dir)
    await fill(spool, 3)
    spool.close()
    [segment] = spool_dir.glob("*.log")
    with open(segment, "ab") as fh:
        fh.write(HEADER.pack(100, 0, 0, 0) + b"half a record")
    again = make(spool_dir)
    assert segment.stat().st_size == again.committed_end
    assert (await again.take(100)).lines == ["m x=0", "m x=1", "m x=2"]
    again.close()


async def test_when_memory_is_full_records_wait_on_disk_and_live_data_takes_turns(spool_dir: Path) -> None:
    spool = make(spool_dir, memory_points=4)
    spool.write_failed()  # InfluxDB is away
    await fill(spool, 10)  # 4 in memory, 6 on disk only
    assert spool.in_memory() == 4
    await fill(spool, 2, start=10)  # still spilling: memory is full
    assert spool.in_memory() == 4
    seen = []
    while spool.unstored_bytes:
        batch = await spool.take(2)
        seen.append((batch.from_disk, batch.lines))
        spool.done(batch)
    sources = [from_disk for from_disk, _ in seen]
    assert sources[:4] == [True, False, True, False]  # disk backlog and live records by turns
    lines = [line for _, batch_lines in seen for line in batch_lines]
    assert sorted(lines, key=lambda s: int(s.split("=")[1])) == [f"m x={i}" for i in range(12)]  # each exactly once
    assert [line for from_disk, batch in seen if from_disk for line in batch] == [f"m x={i}" for i in range(4, 12)]
    spool.close()


async def test_once_influxdb_takes_a_write_new_records_go_to_memory_not_behind_the_backlog(spool_dir: Path) -> None:
    """After an outage, memory is still full and the backlog long: a reading that comes once a write succeeded is
    written within the next turns, not after the whole backlog (intake waits for the writer meanwhile)."""
    calls: list[bool] = []
    spool = make(spool_dir, memory_points=4, on_behind=calls.append)  # type: ignore[arg-type]
    spool.write_failed()  # InfluxDB is away
    await fill(spool, 20)  # 4 in memory, 16 on disk only
    spool.done(await spool.take(2))  # InfluxDB is back: its first write succeeded (from the backlog, by turns)
    await fill(spool, 1, start=20)  # memory still full
    assert spool.in_memory() == 5 and calls == [True]  # in memory; intake waits for the writer, not spilling
    order = await drain(spool, most=2)
    assert order.index("m x=20") < order.index("m x=19")  # before the backlog's last record
    written = {"m x=4", "m x=5"}  # the first batch, the backlog's head
    assert sorted(order, key=lambda s: int(s.split("=")[1])) == [
        f"m x={i}" for i in range(21) if f"m x={i}" not in written
    ]
    spool.close()


async def test_past_its_limit_the_spool_asks_to_pause_and_resumes_below_it(spool_dir: Path) -> None:
    flags = Flags()
    spool = make(spool_dir, flags, max_bytes=300)
    await fill(spool, 10)
    assert spool.full and flags.full == 1
    await drain(spool)
    assert not spool.full and flags.drained == 1
    spool.close()


async def test_a_redelivered_payload_is_recognised_after_a_restart(spool_dir: Path) -> None:
    spool = make(spool_dir)
    await fill(spool, 5)
    spool.close()
    again = make(spool_dir)
    assert again.seen("c/l/d1", payload_digest(b"p4"))
    assert not again.seen("c/l/d2", payload_digest(b"p4"))  # same payload, another device
    assert not again.seen("c/l/d1", payload_digest(b"p5"))
    again.close()


async def test_segments_rotate_and_stored_ones_are_deleted(spool_dir: Path) -> None:
    spool = make(spool_dir, segment_bytes=200)
    for i in range(10):
        await fill(spool, 3, start=3 * i)
    assert len(list(spool_dir.glob("*.log"))) > 3
    assert await drain(spool, most=100) == [f"m x={i}" for i in range(30)]
    assert len(list(spool_dir.glob("*.log"))) == 1
    spool.close()
    again = make(spool_dir)
    assert again.unstored_bytes == 0
    again.close()


async def test_catching_up_with_the_range_being_spilled_into(spool_dir: Path) -> None:
    spool = make(spool_dir, memory_points=4)
    spool.write_failed()
    await fill(spool, 10)  # 4 live, 6 spilled
    delivered: list[str] = []
    while len(delivered) < 10:  # the spilled range and the live records, by turns
        batch = await spool.take(6)
        delivered.extend(batch.lines)
        spool.done(batch)
    assert sorted(delivered, key=lambda s: int(s.split("=")[1])) == [f"m x={i}" for i in range(10)]
    await fill(spool, 3, start=10)  # memory has room again: live
    batch = await spool.take(10)
    assert not batch.from_disk and batch.lines == ["m x=10", "m x=11", "m x=12"]
    spool.done(batch)
    assert spool.unstored_bytes == 0
    spool.close()


async def test_a_writer_that_writes_but_slower_than_intake_holds_intake_instead_of_spilling(spool_dir: Path) -> None:
    """Overload is not an outage: past memory the spool asks intake to wait (the broker holds the readings)
    and keeps them in memory; it lets go once the writer has caught up with half, or once it fails to write."""
    calls: list[bool] = []
    spool = make(spool_dir, memory_points=4, on_behind=calls.append)  # type: ignore[arg-type]
    await fill(spool, 6)
    assert calls == [True] and spool.behind and spool.behind_pauses == 1
    assert spool.in_memory() == 6  # nothing on disk only: no read-back costs while the writer keeps up
    await fill(spool, 2, start=6)  # what was already on its way still comes in
    assert calls == [True] and spool.in_memory() == 8
    batch = await spool.take(5)
    spool.done(batch)
    assert calls == [True]  # 3 left: not below half of memory yet
    batch = await spool.take(2)
    spool.done(batch)
    assert calls == [True, False] and not spool.behind
    assert not batch.from_disk and batch.lines == ["m x=5", "m x=6"]
    await fill(spool, 4, start=8)
    assert calls == [True, False, True]
    spool.write_failed()  # InfluxDB went away while intake waited: stop waiting, spill from now on
    assert calls == [True, False, True, False] and not spool.behind
    await fill(spool, 3, start=12)
    assert calls == [True, False, True, False] and spool.in_memory() == 5  # the 3 new ones wait on disk
    assert sorted(await drain(spool), key=lambda s: int(s.split("=")[1])) == [f"m x={i}" for i in range(7, 15)]
    spool.close()


# Hostile bytes on disk: the spool file is an input surface too -----------------------------------------------


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    victim=st.integers(0, 19),
    garbage=st.binary(min_size=1, max_size=64),
    at=st.integers(0, 200),
    tail=st.binary(max_size=40),
)
def test_corrupt_bytes_anywhere_never_lose_the_intact_records(
    victim: int, garbage: bytes, at: int, tail: bytes
) -> None:
    """Overwrite part of one record with hostile bytes (and maybe leave a torn tail): opening never raises,
    every record outside the damage is replayed, in order, and the damage is counted."""
    import asyncio
    import tempfile

    lines = [f"m n={i} {i}" for i in range(20)]

    async def scenario(directory: Path) -> tuple[list[str], int, list[tuple[int, int]]]:
        spool: Spool[None] = Spool(directory, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
        spool.open()
        for line in lines:
            spool.append(1, 0, "c/l/d", line, None)
            await spool.commit()
        spool.close()
        segment = next(directory.glob("*.log"))
        data = bytearray(segment.read_bytes())
        bounds = [(a, b) for a, b, *_ in scan(bytes(data), 0)[0]]  # where each record lies, before the damage
        start = bounds[victim][0] + at % (bounds[victim][1] - bounds[victim][0])
        data[start : start + len(garbage)] = garbage[: len(data) - start]
        segment.write_bytes(bytes(data) + tail)
        hit = [i for i, (a, b) in enumerate(bounds) if a < start + len(garbage) and start < b]
        again: Spool[None] = Spool(directory, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
        again.open()
        got = (await again.take(100)).lines if again.unstored_bytes else []
        corrupt = again.corrupt_bytes
        again.close()
        return got, corrupt, [(i, 0) for i in hit]

    with tempfile.TemporaryDirectory() as tmp:
        got, corrupt, hit = asyncio.run(scenario(Path(tmp)))
    hit_ids = {i for i, _ in hit}
    intact = [line for i, line in enumerate(lines) if i not in hit_ids]
    changed = [line for i, line in enumerate(lines) if i in hit_ids]
    assert [line for line in got if line not in changed] == intact  # every undamaged record, in order
    # Damage is counted, unless the bytes written were the same, or only the last record was hit: with nothing
    # valid after it, that is indistinguishable from a write torn by a crash, and cut as one.
    assert corrupt > 0 or got == lines or hit_ids == {len(lines) - 1}


async def test_a_writer_stuck_in_a_write_while_intake_waits_counts_as_failing(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """InfluxDB frozen (a write that never returns) is an outage, not overload: intake must not wait forever."""
    monkeypatch.setattr(spool_module, "BEHIND_PATIENCE_S", 0.01)
    released = asyncio.Event()
    calls: list[bool] = []

    def on_behind(behind: bool) -> None:
        calls.append(behind)
        if not behind:
            released.set()

    spool = make(spool_dir, memory_points=4, on_behind=on_behind)  # type: ignore[arg-type]
    await fill(spool, 5)
    stuck = await spool.take(2)  # the writer's write never returns
    await asyncio.wait_for(released.wait(), 5)
    assert calls == [True, False] and not spool.behind
    await fill(spool, 3, start=5)
    assert spool.in_memory() == 4  # memory is full again after one: the other two wait on disk
    spool.done(stuck)
    spool.close()


async def test_a_writer_that_keeps_storing_keeps_intake_waiting(
    spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Patience runs from the moment intake waits, before the group commit's fsync: a slow disk must not
    # look like a stuck writer, so the test's patience is far above an fsync and its writer stores faster.
    monkeypatch.setattr(spool_module, "BEHIND_PATIENCE_S", 0.5)
    calls: list[bool] = []
    spool = make(spool_dir, memory_points=100, on_behind=calls.append)  # type: ignore[arg-type]
    await fill(spool, 120)
    for _ in range(15):  # a batch stored at every tick, 5 ticks a check: still behind, still waiting
        ticked = asyncio.get_running_loop().create_future()
        asyncio.get_running_loop().call_later(0.1, ticked.set_result, None)
        spool.done(await spool.take(1))
        await ticked
    assert calls == [True] and spool.behind
    spool.close()


async def test_intake_waits_as_memory_fills_not_at_the_next_commit(spool_dir: Path) -> None:
    """A burst read before a commit would otherwise all land in memory beyond its limit (and after an outage,
    live readings would wait behind that overshoot)."""
    calls: list[bool] = []
    spool = make(spool_dir, memory_points=4, on_behind=calls.append)  # type: ignore[arg-type]
    for i in range(3):
        spool.append(1, 0, "c/l/d", f"m x={i}", None)
    assert calls == []
    spool.append(1, 0, "c/l/d", "m x=3", None)
    assert calls == [True] and spool.behind  # before any commit
    await spool.commit()
    spool.close()
