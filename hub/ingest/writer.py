"""The one task that writes to InfluxDB, in the spool's order, and hands each record back as stored or rejected.

Batching is natural: the writer takes everything spooled (up to `batch_max`) as soon as it is free, so
under load batches grow by themselves. A slow stream (a classroom's boards: under SLOW_BELOW_PER_S points
written over the last second) is written at most every `linger_s`, since each write costs InfluxDB and the hub
far more than a point (30 boards at 1 Hz, one write per reading, took 4-5% of a core in influxd alone). The
first write after a quiet spell is made at once; a linger ends early when a fast stream's batch waits, and
grading or stopping (`hurry`) cuts it short. Nothing is dropped. What the database answers decides what
happens to a batch:

- **Rejected points** (1.x: 400; 2.x: 400 malformed line protocol, 422 `partial write` such as a field
  type conflict): never retried as they are. The batch is split in halves and each half written again
  until the offending points are isolated and handed back as rejected; the others are stored. This
  covers 1.x's and 2.x's `partial write` (the rest is already stored; writing it again is idempotent:
  same series, same timestamp, same values) and 1.x's whole-batch `field type conflict` on a new shard.
- **Too large** (413): the whole batch was refused for its size. It is split in halves (and later
  batches are cut below the size refused); a single point still too large is rejected.
- **Configuration** (401, 403; 2.x's 404 for a missing bucket or organisation): this hub's token,
  account or names are refused, and nothing will be written until an operator fixes them. Held and
  retried (the spool grows, then intake pauses), and said loudly: logged at ERROR at once and at least
  every `LOUD_EVERY_S` while it lasts, and in `stats.last_error` (which the health view shows).
- **Transient** (unreachable, timeout, 429, 5xx, anything else): retried with capped backoff, forever,
  after the server's `Retry-After` when it gives one; the batch stays in hand and the spool grows.

Cohorts with a retention (`[cohorts.<c>] retention`) keep their points in their own retention policy: only
when the backend has such `policies` does the writer group a batch by policy (by each record's device key, so
replayed records go to the same place); otherwise a batch is written exactly as it always was.

The database itself is reached through `hub.adapters.influx` (its `Backend`s and the errors they raise).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from hub.adapters.influx import Backend, BatchTooLarge, StorageConfigError, StorageError, WriteRejected
from hub.ingest.spool import AUDIT_KEY, Record, Spool
from hub.pace import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)
LOUD_EVERY_S = 30.0  # a configuration error is logged at ERROR at least this often while it lasts
SLOW_BELOW_PER_S = 100.0  # points a second written: below, a small batch is followed by a linger
SMALL_BATCH = 32  # points: a larger batch never lingers (the stream is not slow, whatever the rate said)
RATE_WINDOW_S = 1.0
LINGER_CHECK_S = 0.05  # a timer callback (next to nothing beside a write), besides a wake-up at each admission
# A linger also ends once FAST_POINTS wait that came at SLOW_BELOW_PER_S or faster over at least FAST_SPAN_S: a
# stream that turns fast is written within about FAST_SPAN_S (it waited for a batch of 32 before: 64 ms at 500/s,
# the slowest readings of a stream's first second), while a burst of boards at the same instant is not a stream.
FAST_POINTS = 5
FAST_SPAN_S = 0.01
clock = time.monotonic  # the linger's clock (a test moves it)


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    points: int = 0
    retries: int = 0
    rejected: int = 0
    splits: int = 0  # batches cut in two because the database found them too large (413)
    lingers: int = 0  # pauses after a slow stream's write, so the next one carries what came meanwhile
    last_batch: int = 0
    max_write_ms: float = 0.0
    last_error: str = ""
    failing_since: float | None = None
    write_ms: list[float] = field(default_factory=list)  # recent write durations, for the health view


class Writer(Generic[T]):
    """The one task that writes to InfluxDB, in the spool's order; hands records back as stored or rejected."""

    def __init__(
        self,
        backend: Backend,
        spool: Spool[T],
        batch_max: int,
        on_stored: Callable[[list[Record[T]]], None],
        on_rejected: Callable[[Record[T], str], None],
        backoff: Backoff = WRITE_BACKOFF,
        linger_s: float = 0.0,
    ) -> None:
        self.backend = backend
        self.linger_s = linger_s
        self._recent: deque[tuple[float, int]] = deque()  # (when, points) of the batches of the last RATE_WINDOW_S
        self._recent_points = 0
        self._wake = asyncio.Event()  # a lingering writer looks again: hurried, or the spool admitted more
        self._hurried = False
        self._hurry_until = 0.0  # monotonic: no linger before then
        self.spool = spool
        spool.on_admitted = self._wake.set
        self.batch_max = batch_max
        self._small = min(SMALL_BATCH, batch_max, spool.memory_points)  # a batch this big is not a slow stream's
        self._on_stored = on_stored
        self._on_rejected = on_rejected
        self._backoff = backoff
        self.stats = WriterStats()
        self.busy = False
        self.max_body_bytes: int | None = None  # learnt from 413s: later batches are cut below it
        self._loud_at = 0.0
        # cohort → retention policy; None (no cohort has a retention): every batch goes the one way it always went
        self._policies: Mapping[str, str] | None = getattr(backend, "policies", None) or None

    async def run(self) -> None:
        while True:
            batch = await self.spool.take(self.batch_max)
            self.busy = True
            try:
                if self._policies is None:
                    await self._write(batch.records)
                else:
                    for policy, records in by_policy(batch.records, self._policies).items():
                        await self._write(records, policy)
                self.spool.done(batch)
            finally:
                self.busy = False
            if self._lingers(len(batch.records)):
                await self._linger()

    def hurry(self, for_s: float = 0.0) -> None:
        """What is spooled is wanted in InfluxDB now (grading, stopping): no linger for `for_s`, and one under
        way ends."""
        self._hurry_until = max(self._hurry_until, time.monotonic() + for_s)
        self._hurried = True
        self._wake.set()

    def _lingers(self, points: int) -> bool:
        """Should the writer pause before the next batch? Only after a small one (not a full one, whatever
        `batch_max`), with fewer than SLOW_BELOW_PER_S points written over the last RATE_WINDOW_S (this batch
        included), and never while intake waits for the writer or a backlog waits on disk."""
        now = time.monotonic()
        recent = self._recent
        recent.append((now, points))
        self._recent_points += points
        while recent[0][0] <= now - RATE_WINDOW_S:
            self._recent_points -= recent.popleft()[1]
        slow = self._recent_points < SLOW_BELOW_PER_S * RATE_WINDOW_S
        spool = self.spool
        waiting = spool.behind or spool.backlog_started_ns is not None
        return self.linger_s > 0 and points < self._small and slow and not waiting and now >= self._hurry_until

    async def _linger(self) -> None:
        """Until `linger_s` passes, someone hurries (even during the write before), or a fast stream has come (a
        batch waiting, or FAST_POINTS at a fast stream's pace: looked at on each admission and every
        LINGER_CHECK_S): then no linger for RATE_WINDOW_S, as its rate builds up. Not asyncio.wait_for: in Python
        3.11 it swallows a cancellation that comes as the wait ends (a hurried writer then outlived the hub's
        stop)."""
        self.stats.lingers += 1
        spool = self.spool
        start = clock()
        end = start + self.linger_s
        while not self._hurried:
            now = clock()
            waiting, span = spool.in_memory(), now - start
            streaming = waiting >= FAST_POINTS and span >= FAST_SPAN_S and waiting >= SLOW_BELOW_PER_S * span
            if waiting >= self._small or streaming or spool.behind:
                self._hurry_until = time.monotonic() + RATE_WINDOW_S
                return
            if now >= end:
                return
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(min(end - now, LINGER_CHECK_S)):
                    await self._wake.wait()
        self._hurried = False

    async def drain(self, timeout: float) -> int:
        """At shutdown: write what is in memory within `timeout`; return how many points are left (they stay spooled)."""
        deadline = time.monotonic() + timeout
        self.hurry(timeout)
        while self.spool.in_memory() or self.busy:
            if time.monotonic() > deadline:
                return self.spool.in_memory()
            await asyncio.sleep(0.02)
        return 0

    async def _write(self, records: list[Record[T]], policy: str | None = None) -> None:
        lines = [r.line for r in records]
        limit = self.max_body_bytes
        if limit is not None and len(records) > 1 and sum(len(line) + 1 for line in lines) > limit:
            await self._split(records, policy)
            return
        try:
            await self._write_retrying(lines, policy)
        except BatchTooLarge as err:
            size = sum(len(line) + 1 for line in lines)
            self.max_body_bytes = size - 1 if limit is None else min(limit, size - 1)
            if len(records) == 1:
                self._reject(records[0], f"{err} (a single point larger than InfluxDB accepts)")
                return
            self.stats.splits += 1
            log.warning(
                "InfluxDB refused %d points (%d bytes) as too large (%s); writing them in halves",
                len(records),
                size,
                err,
            )
            await self._split(records, policy)
            return
        except WriteRejected as err:
            if len(records) == 1:
                self._reject(records[0], str(err))
                return
            await self._split(records, policy)
            return
        self._on_stored(records)

    async def _split(self, records: list[Record[T]], policy: str | None = None) -> None:
        mid = len(records) // 2
        await self._write(records[:mid], policy)
        await self._write(records[mid:], policy)

    def _reject(self, record: Record[T], detail: str) -> None:
        self.stats.rejected += 1
        self._on_rejected(record, detail)

    async def _write_retrying(self, lines: list[str], policy: str | None = None) -> None:
        body = "\n".join(lines)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                if policy is None:
                    await self.backend.write(body)
                else:
                    await self.backend.write(body, policy)
            except StorageError as err:
                self.spool.write_failed()
                self.stats.retries += 1
                self.stats.last_error = str(err)
                if self.stats.failing_since is None:
                    self.stats.failing_since = time.time()
                delay = err.retry_after if err.retry_after is not None else self._backoff.delay(attempt)
                if isinstance(err, StorageConfigError):
                    now = time.monotonic()
                    if attempt == 0 or now - self._loud_at >= LOUD_EVERY_S:
                        self._loud_at = now
                        log.error(
                            "InfluxDB refuses this hub's configuration (%s): NOTHING IS STORED until it is fixed; "
                            "%d points held, retry %d in %.2f s, %d bytes spooled",
                            err,
                            len(lines),
                            attempt + 1,
                            delay,
                            self.spool.unstored_bytes,
                        )
                else:
                    level = logging.WARNING if attempt < 3 or attempt % 20 == 0 else logging.DEBUG
                    log.log(
                        level,
                        "InfluxDB write of %d points failed (%s); retry %d in %.2f s, %d bytes spooled",
                        len(lines),
                        err,
                        attempt + 1,
                        delay,
                        self.spool.unstored_bytes,
                    )
                attempt += 1
                await asyncio.sleep(delay)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            stats = self.stats
            if stats.failing_since is not None:
                log.info("InfluxDB writes work again after %.1f s", time.time() - stats.failing_since)
                stats.failing_since = None
                stats.last_error = ""
            stats.batches += 1
            stats.points += len(lines)
            stats.last_batch = len(lines)
            stats.max_write_ms = max(stats.max_write_ms, elapsed)
            stats.write_ms.append(elapsed)
            if len(stats.write_ms) > 512:
                del stats.write_ms[:256]
            return


def by_policy(records: list[Record[T]], policies: Mapping[str, str]) -> dict[str | None, list[Record[T]]]:
    """A batch's records by the retention policy of their cohort (None: the database's default), in order."""
    groups: dict[str | None, list[Record[T]]] = {}
    for record in records:
        cohort = record.key.removeprefix(AUDIT_KEY).partition("/")[0]
        groups.setdefault(policies.get(cohort), []).append(record)
    return groups
