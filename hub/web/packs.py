"""Data packs over HTTP: `GET /api/learners/<c>/<l>/pack.zip` (everything of a learner's) and
`GET /api/sessions/<id>/pack.zip` (one demo), for whoever may read that learner.

The zip is written to a temporary file first, then sent with its length: a zip's directory comes last, so a
failure half-way (InfluxDB down) is still an honest 503 rather than a download that looks whole, and memory stays
flat whatever the window.
"""

from __future__ import annotations

import logging
import tempfile
from typing import IO, Any

from aiohttp import web

from hub.access.policy import Action, Place
from hub.access.records import RegistryError, check_learner
from hub.adapters.influx import StorageError
from hub.datapack.pack import PackTarget, write_pack
from hub.grading.rubrics import RubricError
from hub.web.common import deps_of, error, reader_of, require
from hub.web.sessions import session_of

log = logging.getLogger(__name__)
CHUNK = 256 * 1024


async def _send(request: web.Request, target: PackTarget) -> web.StreamResponse:
    deps = deps_of(request)
    reader = reader_of(request)
    if not await deps.flush_evidence(3.0):
        raise error(
            web.HTTPServiceUnavailable,
            "readings accepted before now are still on their way to InfluxDB (is it down?): a pack now would miss them",
        )
    with tempfile.TemporaryFile() as tmp:
        try:
            await write_pack(reader, deps.registry, target, tmp)
        except RubricError as err:
            raise error(web.HTTPInternalServerError, f"a rubric in config/rubrics is wrong: {err}") from None
        except StorageError as err:
            raise error(web.HTTPServiceUnavailable, f"InfluxDB: {err}") from None
        return await _file(request, tmp, f"{target.label}.zip")


async def _file(request: web.Request, tmp: IO[bytes], filename: str) -> web.StreamResponse:
    response = web.StreamResponse(
        headers={
            "Content-Type": "application/zip",
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        }
    )
    response.content_length = tmp.tell()
    tmp.seek(0)
    await response.prepare(request)
    while chunk := tmp.read(CHUNK):
        await response.write(chunk)
    await response.write_eof()
    return response


async def learner_pack(request: web.Request) -> web.StreamResponse:
    cohort, learner = request.match_info["cohort"], request.match_info["learner"]
    try:
        check_learner(f"{cohort}/{learner}")
    except RegistryError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    require(request, Action.READ, Place(cohort, learner), f"see {cohort}/{learner}")
    if deps_of(request).registry.learner(cohort, learner) is None:
        raise error(web.HTTPNotFound, f"no learner {cohort}/{learner} in the registry")
    return await _send(request, PackTarget(cohort, learner))


async def session_pack(request: web.Request) -> web.StreamResponse:
    return await _send(request, PackTarget.of_session(session_of(request)))


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/learners/{cohort}/{learner}/pack.zip", learner_pack)
    app.router.add_get("/api/sessions/{id}/pack.zip", session_pack)


def openapi_paths() -> dict[str, Any]:
    """The pack routes in the OpenAPI description (`hub.web.openapi`)."""
    text = {"type": "string"}
    answers = {
        "200": "a zip: readings/<device>.csv, schema.json, grades/<session>.json|.html, analysis.ipynb",
        "403": "not yours",
        "404": "unknown (or not yours to see)",
        "503": "InfluxDB unavailable",
    }
    responses = {
        code: {"description": what, "content": {"application/zip": {"schema": {"type": "string", "format": "binary"}}}}
        for code, what in answers.items()
    }

    def path(name: str) -> dict[str, Any]:
        return {"name": name, "in": "path", "required": True, "schema": text}

    return {
        "/api/learners/{cohort}/{learner}/pack.zip": {
            "get": {
                "summary": "A learner's data pack: all their readings, grades and a notebook",
                "parameters": [path("cohort"), path("learner")],
                "responses": responses,
            }
        },
        "/api/sessions/{id}/pack.zip": {
            "get": {
                "summary": "A demo's data pack: its window's readings, its grade and a notebook",
                "parameters": [path("id")],
                "responses": responses,
            }
        },
    }
