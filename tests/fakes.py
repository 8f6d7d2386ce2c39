"""Stand-ins for what no test here may start: a local endpoint answering as InfluxDB 2.x's write API does (no 2.x
server installs here). The `fake_v2` fixture (tests/conftest.py) serves it on a free loopback port."""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable
from dataclasses import dataclass, field

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
        if bad:
            message = (
                "failure writing points to database: partial write: field type conflict: "
                f'input field "bad" on measurement "m" is type string, already exists as type float dropped={len(bad)}'
            )
            return web.json_response({"code": "unprocessable entity", "message": message}, status=422)
        return web.Response(status=204)

    def bodies(self) -> list[str]:
        return [body for _, _, body in self.requests]


def v2_config(url: str, token: str = "secret-token", bucket: str = "labhub") -> InfluxConfig:
    return InfluxConfig(backend="v2", url=url, org="lab", bucket=bucket, token=token, timeout_s=5, launch=False)
