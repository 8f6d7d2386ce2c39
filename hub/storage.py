"""Storage: the one async writer, and the InfluxDB backends.

Batching is natural: the writer takes everything spooled (up to `batch_max`) as soon as it is free, so
at low rates a reading is written within milliseconds and under load batches grow by themselves.
Transient failures (refused, timeout, 5xx, 429, auth) are retried with capped backoff, forever: the
batch stays in hand and the spool grows on disk; past its limit the spool pauses intake. Nothing is
dropped.

A 400 means some points are bad. The batch is split in halves and each half written again until the
offending points are isolated; the others are stored. This covers InfluxDB 1.x's `partial write`
(the rest is already stored; writing it again is idempotent: same series, same timestamp, same
values) and its whole-batch `field type conflict` on a new shard alike, and 2.x's 400s.

Only this module sees aiohttp's client and influxdb-client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from hub.config import InfluxConfig
from hub.mqtt import Backoff
from hub.spool import Record, Spool

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)


class StorageError(Exception):
    """The database could not be reached or refused to work (retry later)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class WriteRejected(ValueError):
    """The database refused some points of a write as invalid (HTTP 400)."""


@dataclass(frozen=True, slots=True)
class FieldConflict:
    measurement: str
    field: str
    got: str
    existing: str


_CONFLICT = re.compile(
    r'input field \\?"(?P<field>[^"\\]+)\\?" on measurement \\?"(?P<m>[^"\\]+)\\?" is type (?P<got>\w+), '
    r"already exists as type (?P<existing>\w+)"
)


def parse_conflict(message: str) -> FieldConflict | None:
    """The field type conflict InfluxDB reports in a 400, if that is what it is."""
    match = _CONFLICT.search(message)
    if match is None:
        return None
    return FieldConflict(match["m"], match["field"], match["got"], match["existing"])


class Backend(Protocol):
    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, body: str) -> None: ...

    async def field_types(self) -> dict[tuple[str, str], str]: ...


# Writer ------------------------------------------------------------------------------------------


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    points: int = 0
    retries: int = 0
    rejected: int = 0
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
    ) -> None:
        self.backend = backend
        self.spool = spool
        self.batch_max = batch_max
        self._on_stored = on_stored
        self._on_rejected = on_rejected
        self._backoff = backoff
        self.stats = WriterStats()
        self.busy = False

    async def run(self) -> None:
        while True:
            batch = await self.spool.take(self.batch_max)
            self.busy = True
            try:
                await self._write(batch.records)
                self.spool.done(batch)
            finally:
                self.busy = False

    async def drain(self, timeout: float) -> int:
        """At shutdown: write what is in memory within `timeout`; return how many points are left (they stay spooled)."""
        deadline = time.monotonic() + timeout
        while self.spool.in_memory() or self.busy:
            if time.monotonic() > deadline:
                return self.spool.in_memory()
            await asyncio.sleep(0.02)
        return 0

    async def _write(self, records: list[Record[T]]) -> None:
        try:
            await self._write_retrying([r.line for r in records])
        except WriteRejected as err:
            if len(records) == 1:
                self.stats.rejected += 1
                self._on_rejected(records[0], str(err))
                return
            mid = len(records) // 2
            await self._write(records[:mid])
            await self._write(records[mid:])
            return
        self._on_stored(records)

    async def _write_retrying(self, lines: list[str]) -> None:
        body = "\n".join(lines)
        attempt = 0
        while True:
            started = time.perf_counter()
            try:
                await self.backend.write(body)
            except StorageError as err:
                self.stats.retries += 1
                self.stats.last_error = str(err)
                if self.stats.failing_since is None:
                    self.stats.failing_since = time.time()
                delay = err.retry_after if err.retry_after is not None else self._backoff.delay(attempt)
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


# Backends ----------------------------------------------------------------------------------------


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return min(60.0, float(value)) if value is not None else None
    except ValueError:
        return None


class InfluxV1:
    """InfluxDB 1.x HTTP API: `/write` and `/query` (the Debian `influxd` 1.6)."""

    name = "influxdb-v1"

    def __init__(self, cfg: InfluxConfig, password: str | None = None) -> None:
        self.url = cfg.url.rstrip("/")
        self.database = cfg.database
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        # Basic auth in a header, never u=/p= in the URL (URLs end up in logs).
        self._auth = aiohttp.BasicAuth(cfg.username, password) if cfg.username and password else None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout, auth=self._auth)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("InfluxV1 used before start()")
        return self._session

    async def write(self, body: str) -> None:
        params = {"db": self.database, "precision": "ns"}
        try:
            async with self.session.post(f"{self.url}/write", params=params, data=body.encode()) as resp:
                if resp.status == 204:
                    return
                text = await resp.text()
                message = _v1_error(text)
                if resp.status == 400:
                    raise WriteRejected(message)
                if resp.status == 404 and "database not found" in message:
                    if await self.ensure_database():
                        raise StorageError("database was missing; created it", retry_after=0.0)
                    raise StorageError(f"database {self.database!r} does not exist (and this user may not create it)")
                raise StorageError(f"HTTP {resp.status}: {message}", _retry_after(resp.headers))
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise StorageError(f"{type(err).__name__}: {err}") from None

    async def ensure_database(self) -> bool:
        """Create the database if this user may (True); a least-privilege user relies on the admin (False)."""
        try:
            await self.query(f'CREATE DATABASE "{self.database}"', method="POST")
        except StorageError as err:
            if "admin privilege" not in str(err):
                raise
            return False
        return True

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL; return the `series` of the first statement (times in ns)."""
        params = {"db": self.database, "q": q, "epoch": "ns"}
        try:
            async with self.session.request(method, f"{self.url}/query", params=params) as resp:
                data = await resp.json(content_type=None)
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise StorageError(f"{type(err).__name__}: {err}") from None
        if resp.status != 200 or "error" in data:
            raise StorageError(f"query failed: HTTP {resp.status}: {data.get('error', data)}")
        result = data.get("results", [{}])[0]
        if "error" in result:
            raise StorageError(f"query failed: {result['error']}")
        series: list[dict[str, Any]] = result.get("series", [])
        return series

    async def field_types(self) -> dict[tuple[str, str], str]:
        """Every field's type, by (measurement, field)."""
        series = await self.query("SHOW FIELD KEYS")
        return {(s["name"], row[0]): row[1] for s in series for row in s.get("values", [])}


def _v1_error(text: str) -> str:
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text.strip()[:500]


class InfluxV2:
    """InfluxDB 2.x/3.x through influxdb-client's async API (`/api/v2/write`)."""

    name = "influxdb-v2"

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self._client: Any = None
        self._write_api: Any = None

    async def start(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self._client = InfluxDBClientAsync(
            url=self.cfg.url, token=self.cfg.token, org=self.cfg.org, timeout=int(self.cfg.timeout_s * 1000)
        )
        self._write_api = self._client.write_api()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def write(self, body: str) -> None:
        from influxdb_client.domain.write_precision import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            await self._write_api.write(
                bucket=self.cfg.bucket, org=self.cfg.org, record=body, write_precision=WritePrecision.NS
            )
        except ApiException as err:
            message = _v2_error(err.body) or str(err.reason)
            if err.status == 400:
                raise WriteRejected(message) from None
            raise StorageError(f"HTTP {err.status}: {message}", _retry_after(err.headers)) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise StorageError(f"{type(err).__name__}: {err}") from None

    async def field_types(self) -> dict[tuple[str, str], str]:
        return {}  # 2.x has no cheap equivalent of SHOW FIELD KEYS; conflicts are learnt from 400s


def _v2_error(body: Any) -> str:
    if not body:
        return ""
    try:
        return str(json.loads(body).get("message", body))
    except (ValueError, AttributeError):
        return str(body)[:500]


def make_backend(cfg: InfluxConfig, password: str | None = None) -> InfluxV1 | InfluxV2:
    """`password`: the v1 user's (`cfg.username`); v2 authenticates with `cfg.token`."""
    return InfluxV1(cfg, password) if cfg.backend == "v1" else InfluxV2(cfg)
