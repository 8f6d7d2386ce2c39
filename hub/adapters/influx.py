"""The InfluxDB backends: 1.x through its HTTP API (`/write`, `/query`), 2.x/3.x through influxdb-client for
writes and InfluxQL over `/query` for reads; and what their answers mean, as errors the writer
(`hub.ingest.writer`) and the readers act on.

Only this module sees aiohttp's client and influxdb-client. Reads: `hub.adapters.influx_read`.
"""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from hub.adapters import influxql
from hub.adapters.influx_read import InfluxQLReader
from hub.config import InfluxConfig, LabConfig


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
    """What the writer needs of a backend (reads: `hub.adapters.influx_read.Reader`)."""

    name: str

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def write(self, body: str, policy: str | None = None) -> None:
        """Write line protocol; `policy`: a retention policy other than the default (1.x only)."""
        ...


# Backends ----------------------------------------------------------------------------------------


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers else None
    try:
        return min(60.0, float(value)) if value is not None else None
    except ValueError:
        return None


class InfluxV1(InfluxQLReader):
    """InfluxDB 1.x HTTP API: `/write` and `/query` (the Debian `influxd` 1.6); reads in InfluxQL."""

    name = "influxdb-v1"

    def __init__(self, cfg: InfluxConfig, password: str | None = None, retention: Mapping[str, str] = {}) -> None:
        self.url = cfg.url.rstrip("/")
        self.database = cfg.database
        self._timeout = aiohttp.ClientTimeout(total=cfg.timeout_s)
        # Basic auth in a header, never u=/p= in the URL (URLs end up in logs). Built here: aiohttp 3.14 deprecates
        # its BasicAuth, and the encode_basic_auth that replaces it does not exist before 3.14.
        self._headers = {"Authorization": basic_auth(cfg.username, password)} if cfg.username and password else {}
        self._session: aiohttp.ClientSession | None = None
        self.policies = {cohort: influxql.policy_name(cohort) for cohort in retention}  # cohort → its policy

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("InfluxV1 used before start()")
        return self._session

    async def write(self, body: str, policy: str | None = None) -> None:
        params = {"db": self.database, "precision": "ns"}
        if policy is not None:
            params["rp"] = policy
        try:
            # A file-like body: aiohttp streams it (raw bytes over 1 MiB make it warn that the loop may block).
            data = io.BytesIO(body.encode())
            async with self.session.post(f"{self.url}/write", params=params, data=data) as resp:
                if resp.status == 204:
                    return
                text = await resp.text()
                message = error_text(text)
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
            await self.query(influxql.create_database_query(self.database), method="POST")
        except StorageError as err:
            if "admin privilege" not in str(err):
                raise
            return False
        return True

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL; return the `series` of the first statement (times in ns)."""
        return await run_query(self.session, self.url, {"db": self.database, "q": q, "epoch": "ns"}, method)


def basic_auth(username: str, password: str) -> str:
    """An HTTP Basic `Authorization` value (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def error_text(text: str) -> str:
    """The message of an InfluxDB 1.x error answer (JSON `{"error": …}`), or its text."""
    try:
        return str(json.loads(text).get("error", text))
    except (ValueError, AttributeError):
        return text.strip()[:500]


V1_QUERY_HINT = "check [influx] username and the hub's InfluxDB password"


async def run_query(
    session: aiohttp.ClientSession,
    url: str,
    params: dict[str, str],
    method: str = "GET",
    refused_hint: str = V1_QUERY_HINT,
    missing_hint: str = "",
) -> list[dict[str, Any]]:
    """InfluxQL over `/query`, as 1.x, 2.x (its 1.x compatibility API) and 3.x serve it: the `series` of the first
    statement. Errors as each documents them: 1.x `{"error": …}`, 2.x/3.x `{"code": …, "message": …}`, a
    statement's own `error` in `results`; 401/403 and a database the server does not know (2.x: no DBRP mapping)
    need an operator (StorageConfigError, with `refused_hint` / `missing_hint`)."""
    try:
        async with session.request(method, f"{url}/query", params=params) as resp:
            status, text, retry = resp.status, await resp.text(), _retry_after(resp.headers)
    except (TimeoutError, aiohttp.ClientError, OSError) as err:
        raise StorageError(f"{type(err).__name__}: {err}") from None
    data = query_answer(text)
    if data is None:  # an HTML page or a proxy's text: not an InfluxDB /query at this URL
        raise StorageError(f"query failed: HTTP {status}: not an InfluxQL answer: {text.strip()[:200]!r}")
    message = data.get("error") or data.get("message")
    if status in (401, 403):
        raise StorageConfigError(f"query refused: HTTP {status}: {message} ({refused_hint})")
    if status != 200 or message:
        raise StorageError(f"query failed: HTTP {status}: {message or data}", retry)
    result = (data.get("results") or [{}])[0]
    if "error" in result:
        if missing_hint and str(result["error"]).startswith("database not found"):
            raise StorageConfigError(f"query failed: {result['error']} ({missing_hint})")
        raise StorageError(f"query failed: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def query_answer(text: str) -> dict[str, Any] | None:
    """A `/query` answer's JSON object, or None if the body is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


class InfluxV2(InfluxQLReader):
    """InfluxDB 2.x/3.x: writes through influxdb-client's async API (`/api/v2/write`, into `bucket`); reads in
    InfluxQL over `/query`, which 2.x serves for a database mapped to the bucket (`influx v1 dbrp create`) and 3.x
    for its databases, with the same token (`influx.database`, default the bucket's name)."""

    name = "influxdb-v2"

    def __init__(self, cfg: InfluxConfig) -> None:
        self.cfg = cfg
        self.url = cfg.url.rstrip("/")
        self.database = cfg.database
        self._client: Any = None
        self._write_api: Any = None
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self._client = InfluxDBClientAsync(
            url=self.cfg.url, token=self.cfg.token, org=self.cfg.org, timeout=int(self.cfg.timeout_s * 1000)
        )
        self._write_api = self._client.write_api()
        timeout = aiohttp.ClientTimeout(total=self.cfg.timeout_s)
        self._session = aiohttp.ClientSession(timeout=timeout, headers={"Authorization": f"Token {self.cfg.token}"})

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        """Run InfluxQL over `/query`; return the `series` of the first statement (times in ns)."""
        if self._session is None:
            raise RuntimeError("InfluxV2 used before start()")
        params = {"db": self.database, "q": q, "epoch": "ns"}
        missing = (
            f"map the bucket to database {self.database!r}: influx v1 dbrp create --db {self.database} "
            "--rp autogen --bucket-id <the bucket's id> --default; or set [influx] database"
        )
        return await run_query(self._session, self.url, params, method, V2_QUERY_HINT, missing)

    async def ensure_database(self) -> bool:
        """Nothing to create: the bucket is the operator's (False, as for a 1.x user who may not create it)."""
        return False

    async def write(self, body: str, policy: str | None = None) -> None:
        """`policy` is never given here: the config refuses cohort retention on 2.x/3.x (buckets have theirs)."""
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


V2_QUERY_HINT = "the token is missing or may not read the bucket; check [influx] token"
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


def lab_backend(cfg: LabConfig) -> InfluxV1 | InfluxV2:
    """The lab's database as its config says: the hub's password, and the cohorts kept in their own retention
    policies (every reader of a cohort's points must know them, or it reads the default policy and finds nothing)."""
    return make_backend(cfg.influx, cfg.influx_password(), cfg.retention)


def make_backend(
    cfg: InfluxConfig, password: str | None = None, retention: Mapping[str, str] = {}
) -> InfluxV1 | InfluxV2:
    """`password`: the v1 user's (`cfg.username`); v2 authenticates with `cfg.token`. `retention`: cohort →
    duration, for the cohorts whose points go to their own retention policy (1.x only: the config refuses it on v2)."""
    return InfluxV1(cfg, password, retention) if cfg.backend == "v1" else InfluxV2(cfg)
