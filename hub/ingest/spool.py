"""The disk spool: accepted points are appended to an on-disk log before they count as accepted.

Intake appends records to a pending group; `commit()` writes the group and fsyncs it (group commit: one
fsync for everything that arrived meanwhile, a few ms). Only then are QoS 1 messages acknowledged to the
broker. A group nobody waits for (QoS 0 readings, evidence) may be committed unsynced: written at once (the page
cache survives a killed hub) and fsynced by `sync()` soon after. The writer takes committed records in order — from memory while it keeps up, from disk when
memory overflowed while InfluxDB failed, or after a restart — and `done()` moves the checkpoint, below which
segment files are deleted. Live records and the replayed backlog are interleaved, so an outage's backlog
does not starve live data.

Replaying from the checkpoint may write points InfluxDB already holds: each record's line carries its
timestamp, so writing it again stores the same point (same series, time and values) — idempotent.

Records are framed and checked as `hub.ingest.spool_format` says. A torn record at the end of the last
segment (a crash mid-write) was never acknowledged: it is cut off at open, and the broker sends that message
again. A corrupt record anywhere else (a bad sector, a stray write) is skipped, counted and logged, and reading
resumes at the next record whose header and CRC check out: every later, acknowledged record is still replayed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from hub.ingest.redelivery import RecentDigests
from hub.ingest.spool_files import SpoolFiles
from hub.ingest.spool_format import encode_body, frame

log = logging.getLogger(__name__)

T = TypeVar("T")
BEHIND_PATIENCE_S = 2.0  # intake waits for a writer that is behind, as long as it stores a batch this often
AUDIT_KEY = "cmd:"  # spool records of evidence (commands, rejections, presence) carry this before the device key


Pending = tuple[int, int, str, str, T | None, bytes]  # received ns, digest, key, line, owner, body


@dataclass(slots=True)
class Record(Generic[T]):
    start: int
    end: int
    received_ns: int
    key: str
    line: str
    owner: T | None


@dataclass(slots=True)
class Batch(Generic[T]):
    records: list[Record[T]]
    from_disk: bool

    @property
    def lines(self) -> list[str]:
        return [r.line for r in self.records]


class SpoolError(RuntimeError):
    """The spool's files cannot be written: the hub cannot promise durability and must say so."""


class Spool(Generic[T]):
    def __init__(
        self,
        directory: Path,
        max_bytes: int,
        on_full: Callable[[], None],
        on_drained: Callable[[], None],
        memory_points: int = 100_000,
        segment_bytes: int = 64 << 20,
        on_behind: Callable[[bool], None] = lambda behind: None,
    ) -> None:
        self.directory = directory
        self._files = SpoolFiles(directory)
        self.max_bytes = max_bytes
        self.memory_points = memory_points
        self.segment_bytes = segment_bytes
        self._on_full = on_full
        self._on_drained = on_drained
        self._on_behind = on_behind
        self.behind = False  # InfluxDB takes writes, more slowly than readings come: intake waits for the writer
        self.behind_pauses = 0
        self._write_failing = False  # the writer's last attempt failed (InfluxDB away or refusing)
        self._batches_done = 0
        self._pending: list[Pending[T]] = []
        self._pending_event = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self.on_admitted: Callable[[], None] = lambda: None  # the writer's wake-up in a linger: more has come
        self._live: deque[Record[T]] = deque()
        self._backlog: deque[list[int]] = deque()  # [cursor, end) ranges on disk only
        self._spilling = False
        self._disk_turn = False
        self._in_flight: Batch[T] | None = None
        self.committed_end = 0
        self.unsynced = False  # committed bytes written but not yet fsynced
        self._unsynced_event = asyncio.Event()
        self.checkpoint = 0
        self._checkpoint_saved = 0.0
        self.recent = RecentDigests()  # for redelivery checks
        self.full = False
        self.commits = 0
        self.replayed = 0
        self.backlog_started_ns: int | None = None

    # Opening and recovery ----------------------------------------------------------------------

    def open(self) -> int:
        """Recover the spool; return how many bytes of unstored records will be replayed."""
        segments = self._files.prepare()
        self.checkpoint = max(self._files.load_checkpoint(), segments[0] if segments else 0)
        end = segments[-1] if segments else 0
        if segments:
            end = self._files.recover_tail(segments[-1])
        self.committed_end = end
        # After a power cut, the checkpoint may be past what the disk kept of the log: nothing beyond is owed.
        self.checkpoint = min(self.checkpoint, end)
        self._files.open_segment(segments[-1] if segments else 0)
        for start in segments[-2:]:
            self._index_digests(start)
        if self.committed_end > self.checkpoint:
            self._backlog.append([self.checkpoint, self.committed_end])
            self.backlog_started_ns = time.time_ns()
            self._ready.set()
            log.info(
                "spool: %d bytes of accepted readings not yet in InfluxDB; replaying them",
                self.committed_end - self.checkpoint,
            )
        return self.committed_end - self.checkpoint

    def _index_digests(self, start: int) -> None:
        for at, _, _, digest, key, _ in self._files.read(start, 0, None, size=-1):
            self.recent.remember(key, digest, at)

    def close(self) -> None:
        self._save_checkpoint(force=True)
        if self.unsynced:
            self._files.sync()
            self.unsynced = False
        self._files.close()

    # Intake side -------------------------------------------------------------------------------

    def append(self, received_ns: int, digest: int, key: str, line: str, owner: T | None) -> None:
        """Add a record to the next group commit (not durable until commit() returns). It is encoded here, so
        text that cannot be UTF-8 fails the caller (inside its input's boundary), never the commit that holds
        everyone's readings."""
        body = encode_body(key, line)
        self._pending.append((received_ns, digest, key, line, owner, body))
        self._pending_event.set()
        if len(self._pending) + len(self._live) >= self.memory_points and not self.behind and not self._write_failing:
            # Overload, not an outage: intake waits here, as memory fills, not at the next commit (by then a
            # burst already read would be in memory beyond it, and after an outage live data would wait behind it).
            self._set_behind(True)

    def seen(self, key: str, digest: int) -> bool:
        """Is this payload from this device already in the spool (a redelivery after a crash)?"""
        return (key, digest) in self.recent

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def wait_pending(self) -> None:
        while not self._pending:
            self._pending_event.clear()
            await self._pending_event.wait()

    async def commit(self, sync: bool = True) -> list[T | None]:
        """Write and fsync everything appended so far; return the owners, in order. `sync=False`: only write, on
        the loop (far cheaper than the hop to the fsync thread); the next `sync()` or synced commit fsyncs it."""
        async with self._commit_lock:
            return await self._commit(sync)

    async def sync(self) -> None:
        async with self._commit_lock:
            if self.unsynced:
                self.unsynced = False
                await asyncio.to_thread(self._files.sync)

    async def wait_unsynced(self) -> None:
        while not self.unsynced:
            self._unsynced_event.clear()
            await self._unsynced_event.wait()

    async def _commit(self, sync: bool) -> list[T | None]:
        group, self._pending = self._pending, []
        if not group:
            return []
        chunks: list[bytes] = []
        records: list[Record[T]] = []
        position = self.committed_end
        for received_ns, digest, key, line, owner, body in group:
            chunk = frame(received_ns, digest, body)
            chunks.append(chunk)
            end = position + len(chunk)
            records.append(Record(position, end, received_ns, key, line, owner))
            self.recent.remember(key, digest, position)
            position = end
        data = b"".join(chunks)
        try:
            if sync:
                await asyncio.to_thread(self._files.write_and_sync, data)
                self.unsynced = False
            else:
                self._files.write(data)
                self.unsynced = True
                self._unsynced_event.set()
            if position - self._files.segment_start >= self.segment_bytes:
                if self.unsynced:  # the old segment's file is closed: its tail is synced first
                    await asyncio.to_thread(self._files.sync)
                    self.unsynced = False
                self._files.open_segment(position)
        except OSError as err:
            raise SpoolError(f"cannot write the spool in {self.directory}: {err.strerror}") from err
        self.committed_end = position
        self.commits += 1
        self._admit(records)
        self._check_full()
        return [r.owner for r in records]

    def _admit(self, records: list[Record[T]]) -> None:
        """Committed records go to memory, or stay on disk only while memory is full and InfluxDB is failing: once
        a write succeeds, memory again (intake then waits for the writer), never behind the whole backlog."""
        for record in records:
            if self._spilling and not self._write_failing:
                self._spilling = False
                if self._backlog and self._backlog[-1][0] >= self._backlog[-1][1]:
                    self._backlog.pop()  # the writer already caught up with it
            if not self._spilling and len(self._live) >= self.memory_points and self._write_failing:
                self._spilling = True
                self._backlog.append([record.start, record.start])
                if self.backlog_started_ns is None:
                    self.backlog_started_ns = record.received_ns
                log.warning("spool: InfluxDB is behind by %d points; new readings wait on disk", len(self._live))
            if self._spilling:
                self._backlog[-1][1] = record.end
            else:
                self._live.append(record)
        self._ready.set()
        self.on_admitted()

    # Writer side -------------------------------------------------------------------------------

    def _backlog_waiting(self) -> bool:
        """Is there a disk range with records left? (The range being spilled into may be empty for now.)"""
        backlog = self._backlog
        return bool(backlog) and (backlog[0][0] < backlog[0][1] or len(backlog) > 1)

    async def take(self, most: int) -> Batch[T]:
        """The next batch to write: live records and the disk backlog by turns (oldest first within each); under
        load batches fill by themselves, and a slow stream shares writes (intake and the writer linger)."""
        while True:
            while not self._live and not self._backlog_waiting():
                self._ready.clear()
                await self._ready.wait()
            if self._backlog_waiting() and self._live:  # both waiting: take turns, so live data is not starved
                self._disk_turn = not self._disk_turn
                use_disk = self._disk_turn
            else:
                use_disk = not self._live
            if not use_disk:
                batch = Batch([self._live.popleft() for _ in range(min(most, len(self._live)))], False)
                break
            records = await asyncio.to_thread(self._read_backlog, most)
            if records:
                batch = Batch(records, True)
                break
            if not (self._spilling and len(self._backlog) == 1):
                self._backlog.popleft()  # a finished range; the range being spilled into stays
        self._in_flight = batch
        return batch

    def write_failed(self) -> None:
        """The writer could not write: records beyond memory now wait on disk (an outage can last), and
        intake no longer waits for a writer that cannot catch up."""
        self._write_failing = True
        if self.behind:
            self._set_behind(False)

    def _set_behind(self, behind: bool) -> None:
        self.behind = behind
        self.behind_pauses += behind
        self._on_behind(behind)
        if behind:
            self._watch_progress(self._batches_done)

    def _watch_progress(self, done_before: int) -> None:
        """While intake waits, the writer must keep storing: one stuck in a write (InfluxDB frozen) is failing."""

        def check() -> None:
            if not self.behind:
                return
            if self._batches_done == done_before:
                log.warning(
                    "spool: no batch stored for %.0f s while intake waited; spilling to disk", BEHIND_PATIENCE_S
                )
                self.write_failed()
            else:
                self._watch_progress(self._batches_done)

        asyncio.get_running_loop().call_later(BEHIND_PATIENCE_S, check)

    def done(self, batch: Batch[T]) -> None:
        """The batch is in InfluxDB (or refused as invalid): move the checkpoint past it."""
        self._in_flight = None
        self._write_failing = False
        self._batches_done += 1
        if self.behind and len(self._live) < self.memory_points // 2:
            self._set_behind(False)
        if batch.from_disk and self._backlog:
            self.replayed += len(batch.records)
            head = self._backlog[0]
            head[0] = batch.records[-1].end
            if head[0] >= head[1] and not (self._spilling and len(self._backlog) == 1):
                self._backlog.popleft()
        if not self._backlog:
            self.backlog_started_ns = None
        self._advance()
        self._check_full()

    def _advance(self) -> None:
        starts = [self.committed_end]
        if self._live:
            starts.append(self._live[0].start)
        if self._backlog_waiting():
            starts.append(self._backlog[0][0])
        if self._in_flight is not None and self._in_flight.records:
            starts.append(self._in_flight.records[0].start)
        checkpoint = min(starts)
        if checkpoint > self.checkpoint:
            self.checkpoint = checkpoint
            self._save_checkpoint()
            self._files.delete_below(checkpoint, self.committed_end)

    def _save_checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checkpoint_saved < 1.0:  # a later one only re-writes stored points after a crash
            return
        self._checkpoint_saved = now
        self._files.save_checkpoint(self.checkpoint)

    def _read_backlog(self, most: int) -> list[Record[T]]:
        cursor, end = self._backlog[0]
        records: list[Record[T]] = []
        segments = self._files.segments()
        for start in reversed(segments):
            if start <= cursor:
                for at, stop, received_ns, _, key, line in self._files.read(start, cursor - start, end):
                    records.append(Record(at, stop, received_ns, key, line, None))
                    if len(records) >= most:
                        break
                break
        if not records and cursor < end:
            # The cursor sits at the end of a segment: move to the next one.
            later = [s for s in segments if s > cursor]
            if later:
                self._backlog[0][0] = later[0]
                return self._read_backlog(most)
        return records

    # State -------------------------------------------------------------------------------------

    @property
    def corrupt_bytes(self) -> int:
        return self._files.corrupt_bytes

    @property
    def unstored_bytes(self) -> int:
        return self.committed_end - self.checkpoint

    def oldest_age_s(self) -> float:
        oldest = [r.received_ns for r in (self._live[0],)] if self._live else []
        if self.backlog_started_ns is not None:
            oldest.append(self.backlog_started_ns)
        return (time.time_ns() - min(oldest)) / 1e9 if oldest else 0.0

    def _check_full(self) -> None:
        used = self.unstored_bytes
        if not self.full and used >= self.max_bytes:
            self.full = True
            log.error(
                "spool full: %d bytes of readings wait for InfluxDB (limit %d); intake paused", used, self.max_bytes
            )
            self._on_full()
        elif self.full and used < self.max_bytes * 0.9:
            self.full = False
            log.warning("spool below its limit again (%d bytes); intake resumes", used)
            self._on_drained()

    def in_memory(self) -> int:
        """Records not yet in InfluxDB that are held in memory (pending commit or waiting for the writer)."""
        return len(self._live) + len(self._pending)
