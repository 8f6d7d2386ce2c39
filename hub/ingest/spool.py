"""The disk spool: accepted points are appended to an on-disk log before they count as accepted.

Intake appends records to a pending group; `commit()` writes the group and fsyncs it (group commit: one
fsync for everything that arrived meanwhile, a few ms). Only then are QoS 1 messages acknowledged to the
broker. The writer takes committed records in order — from memory while it keeps up, from disk when
memory overflowed (InfluxDB down) or after a restart — and `done()` moves the checkpoint, below which
segment files are deleted. Live records and the replayed backlog are interleaved, so an outage's backlog
does not starve live data.

Replaying from the checkpoint may write points InfluxDB already holds: each record's line carries its
timestamp, so writing it again stores the same point (same series, time and values) — idempotent.

Record layout: header `<IIQQ` (body length, crc32 of body, received ns, payload digest), then the body
`device-key NUL line`. A torn record at the end of the last segment (a crash mid-write) was never
acknowledged: it is cut off at open, and the broker sends that message again. A corrupt record anywhere
else (a bad sector, a stray write) is skipped, counted and logged, and reading resumes at the next record
whose header and CRC check out: every later, acknowledged record is still replayed.
Spool files are private (0600, folder 0700): they hold every learner's readings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")
HEADER = struct.Struct("<IIQQ")
SEGMENT_SUFFIX = ".log"
MAX_RECORD = 1 << 20
RECENT = 200_000


def scan(data: bytes, base: int) -> tuple[list[tuple[int, int, int, int, bytes]], int, list[tuple[int, int]]]:
    """Records in `data` (which starts at spool position `base`). Pure.

    Returns ([(position, end, received_ns, digest, body)], where the last whole record ends (relative to
    `data`), [(position, bytes) of each corrupt stretch skipped]). A record whose CRC fails, or whose length is impossible, is skipped by
    resynchronising on the next offset where a whole record with a good CRC starts; if none does, the rest
    is an unfinished write (a torn tail) and the scan stops before it.
    """
    out: list[tuple[int, int, int, int, bytes]] = []
    pos, end = 0, 0
    skipped: list[tuple[int, int]] = []
    size = len(data)
    while pos + HEADER.size <= size:
        length, crc, received_ns, digest = HEADER.unpack_from(data, pos)
        stop = pos + HEADER.size + length
        if 0 < length <= MAX_RECORD and stop <= size and zlib.crc32(data[pos + HEADER.size : stop]) == crc:
            out.append((base + pos, base + stop, received_ns, digest, data[pos + HEADER.size : stop]))
            pos = end = stop
            continue
        following = _resync(data, pos + 1)
        if following is None:
            break  # nothing valid after it: a torn tail
        skipped.append((base + pos, following - pos))
        pos = following
    return out, end, skipped


def _resync(data: bytes, start: int) -> int | None:
    """The first offset at or after `start` where a whole record with a good CRC begins."""
    size = len(data)
    for pos in range(start, size - HEADER.size + 1):
        length, crc = struct.unpack_from("<II", data, pos)
        stop = pos + HEADER.size + length
        if 0 < length <= MAX_RECORD and stop <= size and zlib.crc32(data[pos + HEADER.size : stop]) == crc:
            return pos
    return None


def payload_digest(payload: bytes) -> int:
    """A 64-bit digest of a raw payload, to recognise a broker's redelivery after a crash."""
    return (zlib.crc32(payload) << 32) | (len(payload) & 0xFFFFFFFF)


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
    ) -> None:
        self.directory = directory
        self.max_bytes = max_bytes
        self.memory_points = memory_points
        self.segment_bytes = segment_bytes
        self._on_full = on_full
        self._on_drained = on_drained
        self._pending: list[
            tuple[int, int, str, str, T | None, bytes]
        ] = []  # received_ns, digest, key, line, owner, body
        self._pending_event = asyncio.Event()
        self._commit_lock = asyncio.Lock()
        self._ready = asyncio.Event()
        self._live: deque[Record[T]] = deque()
        self._backlog: deque[list[int]] = deque()  # [cursor, end) ranges on disk only
        self._spilling = False
        self._disk_turn = False
        self._in_flight: Batch[T] | None = None
        self._fd = -1
        self._segment_start = 0
        self.committed_end = 0
        self.checkpoint = 0
        self._checkpoint_saved = 0.0
        self.recent: dict[tuple[str, int], int] = {}  # (device, digest) → position, for redelivery checks
        self._recent_order: deque[tuple[tuple[str, int], int]] = deque()
        self.full = False
        self.corrupt_bytes = 0  # skipped when reading back (counted, logged; the records after them are kept)
        self._corrupt_seen: set[int] = set()
        self.commits = 0
        self.replayed = 0
        self.backlog_started_ns: int | None = None

    # Opening and recovery ----------------------------------------------------------------------

    def open(self) -> int:
        """Recover the spool; return how many bytes of unstored records will be replayed."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # also when it was made before, with the default mode
        segments = self._segments()
        self.checkpoint = self._load_checkpoint(segments)
        end = segments[-1] if segments else 0
        if segments:
            end = self._recover_tail(segments[-1])
        self.committed_end = end
        self._open_segment(segments[-1] if segments else 0)
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

    def _segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())

    def _path(self, start: int) -> Path:
        return self.directory / f"{start:020d}{SEGMENT_SUFFIX}"

    def _load_checkpoint(self, segments: list[int]) -> int:
        try:
            value = int((self.directory / "checkpoint").read_text().strip())
        except (OSError, ValueError):
            value = 0
        return max(value, segments[0] if segments else 0)

    def _recover_tail(self, start: int) -> int:
        """Walk the last segment's records; skip corrupt ones; cut a torn tail; return the end position."""
        path = self._path(start)
        data = path.read_bytes()
        _, offset, skipped = scan(data, start)
        self._count_corrupt(skipped, path.name)
        if offset < len(data):
            log.warning(
                "spool: cutting %d bytes of an unfinished write at the end of %s", len(data) - offset, path.name
            )
            with open(path, "r+b") as fh:
                fh.truncate(offset)
                os.fsync(fh.fileno())
        return start + offset

    def _index_digests(self, start: int) -> None:
        for record, digest in self._read_segment(start, 0, None, size=-1):
            self._remember(record.key, digest, record.start)

    def _remember(self, key: str, digest: int, position: int) -> None:
        """Keep the last RECENT digests: enough to recognise what a broker redelivers after a crash."""
        if not digest:
            return
        self.recent[(key, digest)] = position
        self._recent_order.append(((key, digest), position))
        if len(self._recent_order) > RECENT:
            old, pos = self._recent_order.popleft()
            if self.recent.get(old) == pos:
                del self.recent[old]

    def _open_segment(self, start: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self._segment_start = start
        self._fd = os.open(self._path(start), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def close(self) -> None:
        self._save_checkpoint(force=True)
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # Intake side -------------------------------------------------------------------------------

    def append(self, received_ns: int, digest: int, key: str, line: str, owner: T | None) -> None:
        """Add a record to the next group commit (not durable until commit() returns).

        The record is encoded here, so text that cannot be UTF-8 fails the caller (inside its input's
        boundary), never the commit that holds everyone's readings."""
        body = f"{key}\0{line}".encode()
        if len(body) > MAX_RECORD:
            raise ValueError(f"a spool record of {len(body)} bytes is over {MAX_RECORD}")
        self._pending.append((received_ns, digest, key, line, owner, body))
        self._pending_event.set()

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

    async def commit(self) -> list[T | None]:
        """Write and fsync everything appended so far; return the owners, in order."""
        async with self._commit_lock:
            return await self._commit()

    async def _commit(self) -> list[T | None]:
        group, self._pending = self._pending, []
        if not group:
            return []
        chunks: list[bytes] = []
        records: list[Record[T]] = []
        position = self.committed_end
        pack, crc32, header_size = HEADER.pack, zlib.crc32, HEADER.size
        for received_ns, digest, key, line, owner, body in group:
            size = len(body)
            chunks.append(pack(size, crc32(body), received_ns, digest))
            chunks.append(body)
            end = position + header_size + size
            records.append(Record(position, end, received_ns, key, line, owner))
            if digest:
                self._remember(key, digest, position)
            position = end
        data = b"".join(chunks)
        try:
            await asyncio.to_thread(self._write_and_sync, data)
        except OSError as err:
            raise SpoolError(f"cannot write the spool in {self.directory}: {err.strerror}") from err
        self.committed_end = position
        self.commits += 1
        self._admit(records)
        if self.committed_end - self._segment_start >= self.segment_bytes:
            self._open_segment(self.committed_end)
        self._check_full()
        return [r.owner for r in records]

    def _write_and_sync(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fdatasync(self._fd)

    def _admit(self, records: list[Record[T]]) -> None:
        """Committed records go to memory for the writer, or stay on disk only while memory is full."""
        for record in records:
            if self._spilling and len(self._live) < self.memory_points // 2:
                self._spilling = False
                if self._backlog and self._backlog[-1][0] >= self._backlog[-1][1]:
                    self._backlog.pop()  # the writer already caught up with it
            if not self._spilling and len(self._live) >= self.memory_points:
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

    # Writer side -------------------------------------------------------------------------------

    def _backlog_waiting(self) -> bool:
        """Is there a disk range with records left? (The range being spilled into may be empty for now.)"""
        backlog = self._backlog
        return bool(backlog) and (backlog[0][0] < backlog[0][1] or len(backlog) > 1)

    async def take(self, most: int) -> Batch[T]:
        """The next batch to write: live records and the disk backlog by turns (oldest first within each)."""
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

    def done(self, batch: Batch[T]) -> None:
        """The batch is in InfluxDB (or refused as invalid): move the checkpoint past it."""
        self._in_flight = None
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
            for start in self._segments():
                if start != self._segment_start and self._segment_end(start) <= checkpoint:
                    self._path(start).unlink(missing_ok=True)

    def _segment_end(self, start: int) -> int:
        later = [s for s in self._segments() if s > start]
        return later[0] if later else self.committed_end

    def _save_checkpoint(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._checkpoint_saved < 0.2:
            return
        self._checkpoint_saved = now
        tmp = self.directory / "checkpoint.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(self.checkpoint))
        os.replace(tmp, self.directory / "checkpoint")

    def _read_backlog(self, most: int) -> list[Record[T]]:
        cursor, end = self._backlog[0]
        records: list[Record[T]] = []
        for start in reversed(self._segments()):
            if start <= cursor:
                for record, _ in self._read_segment(start, cursor - start, end):
                    records.append(record)
                    if len(records) >= most:
                        break
                break
        if not records and cursor < end:
            # The cursor sits at the end of a segment: move to the next one.
            later = [s for s in self._segments() if s > cursor]
            if later:
                self._backlog[0][0] = later[0]
                return self._read_backlog(most)
        return records

    def _read_segment(
        self, start: int, offset: int, end: int | None, size: int = 8 << 20
    ) -> list[tuple[Record[T], int]]:
        try:
            with open(self._path(start), "rb") as fh:
                fh.seek(offset)
                data = fh.read(size)
        except FileNotFoundError:
            return []
        records, _, skipped = scan(data, start + offset)
        self._count_corrupt(skipped, self._path(start).name)
        out: list[tuple[Record[T], int]] = []
        for at, stop, received_ns, digest, body in records:
            if end is not None and at >= end:
                break
            key, _, line = body.partition(b"\0")
            try:
                record: Record[T] = Record(at, stop, received_ns, key.decode(), line.decode(), None)
            except UnicodeDecodeError:  # a good CRC over bad text: written by something else; skip it
                self._count_corrupt([(at, stop - at)], self._path(start).name)
                continue
            out.append((record, digest))
        return out

    def _count_corrupt(self, stretches: list[tuple[int, int]], name: str) -> None:
        """Count and log each corrupt stretch once, however often it is read past."""
        for position, size in stretches:
            if position in self._corrupt_seen:
                continue
            self._corrupt_seen.add(position)
            self.corrupt_bytes += size
            log.error(
                "spool: %d corrupt bytes at %d in %s skipped; the records after them are kept", size, position, name
            )

    # State -------------------------------------------------------------------------------------

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

    def __len__(self) -> int:
        return self.in_memory()
