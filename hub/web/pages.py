"""The pages and their files: the index, the phone page, the dashboards, their scripts, the OpenAPI description;
and each page's Content-Security-Policy (its own scripts and styles only, never inside a frame)."""

from __future__ import annotations

import base64
import hashlib
import re
from pathlib import Path

from aiohttp import web

from hub.web.common import deps_of, error
from hub.web.openapi import spec

INDEX = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>LabHub</title></head>
<body><h1>LabHub</h1><p>API:</p><ul>
<li><a href="/healthz">/healthz</a> — ok or degraded (the reasons with a trainer's or viewer's token)</li>
<li><a href="/api/stats">/api/stats</a> — counters</li>
<li><a href="/metrics">/metrics</a> — the same, for Prometheus</li>
<li><a href="/dashboard">/dashboard</a> — the live cohort dashboard (trainers, classroom screens)</li>
<li><a href="/phone">/phone</a> — the phone control page for arms</li>
<li><a href="/board">/board</a> — my board: a learner's connection checklist and the lab doctor's findings</li>
<li><a href="/board/showcases">/board/showcases</a> — showcases: publish a project for employers, approve, revoke</li>
<li><a href="/api/openapi.json">/api/openapi.json</a> — the API's OpenAPI description</li>
<li><a href="/api/devices">/api/devices</a> — devices, their state and rejections</li>
<li>/api/devices/&lt;cohort&gt;/&lt;learner&gt;/&lt;device&gt;/inspector — the last messages and their verdicts</li>
</ul></body></html>"""

STATIC = Path(__file__).resolve().parent / "static"
PAGES = {
    "/phone": "phone.html",
    "/board": "board.html",
    "/board/showcases": "showcases.html",
    "/dashboard": "dashboard.html",
    "/dashboard/device": "device.html",
    "/dashboard/replay": "replay.html",
}
SCRIPTS = {"labhub.js", "diagnosis.js", "replay.js"}  # the pages' own shared scripts
VENDOR = {"uPlot.iife.min.js", "uPlot.min.css", "LICENSE"}

API_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
INLINE_RE = re.compile(r"<(script|style)>(.*?)</\1>", re.DOTALL)  # inline blocks only (no src attribute)


def page_policy(html: str) -> str:
    """A page's Content-Security-Policy: its own scripts and styles (files from this hub, and its inline
    blocks by SHA-256), the API and live WebSocket on this origin, never inside a frame."""
    hashes: dict[str, list[str]] = {"script": [], "style": []}
    for tag, body in INLINE_RE.findall(html):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        hashes[tag].append(f"'sha256-{digest}'")
    return (
        f"default-src 'none'; script-src 'self' {' '.join(hashes['script'])}; "
        f"style-src 'self' {' '.join(hashes['style'])}; img-src 'self' data:; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    )


def page_policies() -> dict[str, str]:
    policies = {path: page_policy((STATIC / name).read_text()) for path, name in PAGES.items()}
    policies["/"] = page_policy(INDEX)
    return policies


async def index(request: web.Request) -> web.Response:
    return web.Response(text=INDEX, content_type="text/html")


async def page(request: web.Request) -> web.FileResponse:
    """A page shell (PAGES): static HTML that logs in with a token and then calls the API."""
    return web.FileResponse(STATIC / PAGES[request.path], headers={"Cache-Control": "no-cache"})


async def vendor(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in VENDOR:
        raise error(web.HTTPNotFound, "no such file")
    return web.FileResponse(STATIC / "vendor" / "uplot" / name, headers={"Cache-Control": "max-age=86400"})


async def shared_script(request: web.Request) -> web.FileResponse:
    name = request.path.rsplit("/", 1)[-1]
    if name not in SCRIPTS:
        raise error(web.HTTPNotFound, "no such file")
    return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})


async def ca_certificate(request: web.Request) -> web.Response:
    """The lab CA, for boards (`--cafile`, a sketch's root certificate) and phones (install, then trust)."""
    pem = deps_of(request).ca_certificate
    if pem is None:
        raise error(web.HTTPNotFound, "no lab CA: the lab runs without LAN mode (labhub up --lan)")
    return web.Response(body=pem, content_type="application/x-x509-ca-cert", headers={"Cache-Control": "no-cache"})


async def openapi(request: web.Request) -> web.Response:
    return web.json_response(spec())
