"""The spool's folder: segment files named by the position they start at, and the checkpoint file.

Every file operation of the spool is here, blocking (the spool calls the slow ones through `asyncio.to_thread`).
A segment is only ever appended to, then fdatasync'd; the folder is fsync'd when a segment is created, so a new
file survives a crash too. Files are private (0600, folder 0700): they hold every learner's readings.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from hub.ingest.spool_format import decode_body, scan

log = logging.getLogger(__name__)

SEGMENT_SUFFIX = ".log"

# A record read back from a segment: (position, end, received ns, payload digest, device key, line).
Stored = tuple[int, int, int, int, str, str]


class SpoolFiles:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.segment_start = 0  # the segment being appended to
        self._oldest = 0  # the oldest segment kept: while it is the one appended to, there is nothing to delete
        self._fd = -1
        self.corrupt_bytes = 0  # skipped when reading back (counted, logged; the records after them are kept)
        self._corrupt_seen: set[int] = set()

    def prepare(self) -> list[int]:
        """Make the folder private; return the segments' start positions, oldest first."""
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)  # also when it was made before, with the default mode
        segments = self.segments()
        self._oldest = segments[0] if segments else 0
        return segments

    def segments(self) -> list[int]:
        return sorted(int(p.stem) for p in self.directory.glob(f"*{SEGMENT_SUFFIX}") if p.stem.isdigit())

    def path(self, start: int) -> Path:
        return self.directory / f"{start:020d}{SEGMENT_SUFFIX}"

    # Checkpoint --------------------------------------------------------------------------------

    def load_checkpoint(self) -> int:
        try:
            return int((self.directory / "checkpoint").read_text().strip())
        except (OSError, ValueError):
            return 0

    def save_checkpoint(self, position: int) -> None:
        tmp = self.directory / "checkpoint.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(str(position))
        os.replace(tmp, self.directory / "checkpoint")

    # Writing -----------------------------------------------------------------------------------

    def recover_tail(self, start: int) -> int:
        """Walk the last segment's records; skip corrupt ones; cut a torn tail; return the end position."""
        path = self.path(start)
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

    def open_segment(self, start: int) -> None:
        if self._fd >= 0:
            os.close(self._fd)
        self.segment_start = start
        self._fd = os.open(self.path(start), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        dir_fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def write(self, data: bytes) -> None:
        """Append to the segment: in the kernel's page cache, so it survives the hub's own death (not the
        machine's) until `sync()`."""
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]

    def sync(self) -> None:
        os.fdatasync(self._fd)

    def write_and_sync(self, data: bytes) -> None:
        self.write(data)
        self.sync()

    def delete_below(self, checkpoint: int, committed_end: int) -> None:
        """Delete the segments wholly below the checkpoint (never the one being appended to).

        Called at each stored batch: the folder is listed only while older segments than the open one exist."""
        if self._oldest >= self.segment_start:
            return
        segments = self.segments()
        kept = []
        for start in segments:
            later = [s for s in segments if s > start]
            end = later[0] if later else committed_end
            if start != self.segment_start and end <= checkpoint:
                self.path(start).unlink(missing_ok=True)
            else:
                kept.append(start)
        self._oldest = kept[0] if kept else self.segment_start

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # Reading -----------------------------------------------------------------------------------

    def read(self, start: int, offset: int, end: int | None, size: int = 8 << 20) -> list[Stored]:
        """The good records of a segment from `offset` on (up to `size` bytes), those starting before `end`."""
        path = self.path(start)
        try:
            with open(path, "rb") as fh:
                fh.seek(offset)
                data = fh.read(size)
        except FileNotFoundError:
            return []
        records, _, skipped = scan(data, start + offset)
        self._count_corrupt(skipped, path.name)
        out: list[Stored] = []
        for at, stop, received_ns, digest, body in records:
            if end is not None and at >= end:
                break
            try:
                key, line = decode_body(body)
            except UnicodeDecodeError:  # a good CRC over bad text: written by something else; skip it
                self._count_corrupt([(at, stop - at)], path.name)
                continue
            out.append((at, stop, received_ns, digest, key, line))
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
