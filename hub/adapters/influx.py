"""Storage: the one async writer, and the InfluxDB backends.

Batching is natural: the writer takes everything spooled (up to `batch_max`) as soon as it is free, so
at low rates a reading is written within milliseconds and under load batches grow by themselves.
Nothing is dropped. What the database answers decides what happens to a batch:

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

Only this module sees aiohttp's client and influxdb-client.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import aiohttp

from hub.config import InfluxConfig
from hub.ingest.spool import Record, Spool
from hub.pace import Backoff

log = logging.getLogger(__name__)

T = TypeVar("T")
WRITE_BACKOFF = Backoff(first_s=0.1, cap_s=5.0)
LOUD_EVERY_S = 30.0  # a configuration error is logged at ERROR at least this often while it lasts


class StorageError(Exception):
    """The database could not be reached or refused to work (retry later)."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StorageConfigError(StorageError):
    """The database refuses this hub's credentials or names (401, 403, 2.x's 404): an operator must act."""


class WriteRejected(ValueError):
    """The database refused some points of a write as invalid (1.x: 400; 2.x: 400, 422)."""


class BatchTooLarge(ValueError):
    """The database refused a whole write for its size (HTTP 413); smaller writes may pass."""


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
    splits: int = 0  # batches cut in two because the database found them too large (413)
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
        self.max_body_bytes: int | None = None  # learnt from 413s: later batches are cut below it
        self._loud_at = 0.0

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
        lines = [r.line for r in records]
        limit = self.max_body_bytes
        if limit is not None and len(records) > 1 and sum(len(line) + 1 for line in lines) > limit:
            await self._split(records)
            return
        try:
            await self._write_retrying(lines)
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
            await self._split(records)
            return
        except WriteRejected as err:
            if len(records) == 1:
                self._reject(records[0], str(err))
                return
            await self._split(records)
            return
        self._on_stored(records)

    async def _split(self, records: list[Record[T]]) -> None:
        mid = len(records) // 2
        await self._write(records[:mid])
        await self._write(records[mid:])

    def _reject(self, record: Record[T], detail: str) -> None:
        self.stats.rejected += 1
        self._on_rejected(record, detail)

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
            # A file-like body: aiohttp streams it (raw bytes over 1 MiB make it warn that the loop may block).
            data = io.BytesIO(body.encode())
            async with self.session.post(f"{self.url}/write", params=params, data=data) as resp:
                if resp.status == 204:
                    return
                text = await resp.text()
                message = _v1_error(text)
                if resp.status == 400:
                    raise WriteRejected(message)
                if resp.status == 413:
                    raise BatchTooLarge(f"HTTP 413: {message}")
                if resp.status in (401, 403):
                    raise StorageConfigError(
                        f"HTTP {resp.status}: {message} (check [influx] username and the hub's InfluxDB password)"
                    )
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
            raise v2_error(err.status, _v2_error(err.body) or str(err.reason), err.headers) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as err:
            raise StorageError(f"{type(err).__name__}: {err}") from None

    async def field_types(self) -> dict[tuple[str, str], str]:
        return {}  # 2.x has no cheap equivalent of SHOW FIELD KEYS; conflicts are learnt from 422s


V2_CONFIG_HINTS = {
    401: "the token is missing or refused; check [influx] token",
    403: "the token may not write to this bucket; give it write permission or check [influx] token",
    404: "no such bucket or organisation; check [influx] org and bucket",
}


def v2_error(status: int, message: str, headers: Any = None) -> Exception:
    """What an InfluxDB 2.x `/api/v2/write` answer other than 204 means for the writer."""
    if status in (400, 422):
        return WriteRejected(message)  # 400: malformed, whole batch refused; 422: partial write, rest stored
    if status == 413:
        return BatchTooLarge(f"HTTP 413: {message}")
    if status in V2_CONFIG_HINTS:
        return StorageConfigError(f"HTTP {status}: {message} ({V2_CONFIG_HINTS[status]})")
    return StorageError(f"HTTP {status}: {message}", _retry_after(headers))  # 429, 500, 503, ...


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
