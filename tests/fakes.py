"""Stand-ins for what no test here may start: a local endpoint answering as InfluxDB 2.x's write API and its 1.x
compatibility `/query` do (no 2.x server installs here). The `fake_v2` fixture (tests/conftest.py) serves it on a
free loopback port; given a real influxd (1.x), it stores what it accepts there and runs InfluxQL on it, as 2.x
runs InfluxQL with the 1.x engine on the bucket a database is mapped to."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp
from aiohttp import web

from hub.config import InfluxConfig

# InfluxDB 2.x contract -----------------------------------------------------------------------------
#
# No 2.x server installs here, so a local endpoint answers as InfluxDB OSS 2.x documents and does
# ("Troubleshoot issues writing data", the API's response codes, and 2.7.x answers quoted in issue
# reports): every error is a JSON body {"code": ..., "message": ...} with the platform's error codes.

UNAUTHORIZED = {"code": "unauthorized", "message": "unauthorized access"}
FORBIDDEN = {"code": "forbidden", "message": "insufficient permissions for write"}
TOO_LARGE = {"code": "request too large", "message": "unable to read data: points batch is too large"}
LINE = re.compile(r"^[^ ]+ [^ =]+=[^ ]+ \d+$")  # what this endpoint parses: `measurement field=value time`


@dataclass
class FakeV2:
    """`/api/v2/write` as InfluxDB OSS 2.x answers it, checked in the order the server checks:

    401 without a known token; 413 over `max_body_bytes` (the whole batch, nothing written); 404 for an
    unknown bucket; 403 for a token without write permission on it; 400 for malformed line protocol (the
    first bad line named, the whole batch refused); 422 `partial write: field type conflict … dropped=N`
    for points writing a string into the float field `bad` (the other points are written); else 204.
    `script` answers the next requests instead (429, 500, 503 …) once authorised.
    """

    tokens: dict[str, bool] = field(default_factory=lambda: {"secret-token": True, "read-only": False})
    buckets: set[str] = field(default_factory=lambda: {"labhub"})
    max_body_bytes: int = 1 << 20
    script: list[Callable[[str], web.Response]] = field(default_factory=list)
    requests: list[tuple[dict[str, str], dict[str, str], str]] = field(default_factory=list)
    stored: list[str] = field(default_factory=list)
    dbrp: dict[str, str] = field(default_factory=lambda: {"labhub": "labhub"})  # database -> bucket (DBRP mappings)
    influxd: str = ""  # a real influxd (1.x) URL: accepted points go to its database named as the bucket
    canned: dict[str, list[dict[str, object]]] = field(default_factory=dict)  # InfluxQL -> series, without influxd
    queries: list[tuple[dict[str, str], dict[str, str]]] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/api/v2/write", self.write)
        app.router.add_route("*", "/query", self.query)

    async def write(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = gzip.decompress(raw).decode() if request.headers.get("Content-Encoding") == "gzip" else raw.decode()
        self.requests.append((dict(request.query), dict(request.headers), body))
        token = request.headers.get("Authorization", "").removeprefix("Token ")
        if token not in self.tokens:
            return web.json_response(UNAUTHORIZED, status=401)
        if len(raw) > self.max_body_bytes:
            return web.json_response(TOO_LARGE, status=413)
        bucket = request.query.get("bucket", "")
        if bucket not in self.buckets:
            return web.json_response({"code": "not found", "message": f'bucket "{bucket}" not found'}, status=404)
        if not self.tokens[token]:
            return web.json_response(FORBIDDEN, status=403)
        if self.script:
            return self.script.pop(0)(body)
        lines = body.splitlines()
        malformed = [line for line in lines if not LINE.match(line)]
        if malformed:
            message = f"unable to parse '{malformed[0]}': missing field value"
            return web.json_response({"code": "invalid", "message": message}, status=400)
        bad = [line for line in lines if 'bad="' in line]
        self.stored.extend(line for line in lines if line not in bad)
        if self.influxd:
            await self._forward(
                "POST",
                "/write",
                {"db": bucket, "precision": "ns"},
                "\n".join(line for line in lines if line not in bad),
            )
        if bad:
            message = (
                "failure writing points to database: partial write: field type conflict: "
                f'input field "bad" on measurement "m" is type string, already exists as type float dropped={len(bad)}'
            )
            return web.json_response({"code": "unprocessable entity", "message": message}, status=422)
        return web.Response(status=204)

    async def query(self, request: web.Request) -> web.Response:
        """`/query` as 2.x's 1.x compatibility API answers it: 401 without a known token (`Token` scheme); a
        database with no DBRP mapping is a statement error `database not found: <db>` (HTTP 200, as the 1.x
        engine words it); else the query runs on the mapped bucket (influxd) or answers from `canned`."""
        params = dict(request.query)
        if request.method == "POST":
            params.update({k: str(v) for k, v in (await request.post()).items()})
        self.queries.append((params, dict(request.headers)))
        token = request.headers.get("Authorization", "").removeprefix("Token ")
        if token not in self.tokens:
            return web.json_response(UNAUTHORIZED, status=401)
        database, q = params.get("db", ""), params.get("q", "")
        if database not in self.dbrp:
            return web.json_response({"results": [{"statement_id": 0, "error": f"database not found: {database}"}]})
        if self.influxd:
            query = {"db": self.dbrp[database], "q": q, "epoch": params.get("epoch", "ns")}
            status, text = await self._forward("GET", "/query", query, None)
            return web.Response(status=status, text=text, content_type="application/json")
        result: dict[str, object] = {"statement_id": 0}
        if self.canned.get(q):
            result["series"] = self.canned[q]
        return web.json_response({"results": [result]})

    async def _forward(self, method: str, path: str, params: dict[str, str], body: str | None) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session:
            async with session.request(method, self.influxd + path, params=params, data=body) as resp:
                return resp.status, await resp.text()

    def bodies(self) -> list[str]:
        return [body for _, _, body in self.requests]


def v2_config(url: str, token: str = "secret-token", bucket: str = "labhub") -> InfluxConfig:
    return InfluxConfig(backend="v2", url=url, org="lab", bucket=bucket, token=token, timeout_s=5, launch=False)
