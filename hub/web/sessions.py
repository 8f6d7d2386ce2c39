"""Demo sessions over HTTP: list them, start and stop a learner's demo, and grade one from what InfluxDB holds
for its window. Another learner's session is answered 404, as if it did not exist."""

from __future__ import annotations

import logging

from aiohttp import web

from hub.access.policy import Action, Place, allows, listing
from hub.access.records import DemoSession, RegistryError, check_learner
from hub.adapters.influx import StorageError
from hub.grading.reports import grade_session
from hub.grading.rubrics import RubricError, load_rubrics
from hub.web.bodies import object_body, text_field
from hub.web.common import deps_of, error, managed_cohort, reader_of, registry_change, token_of

log = logging.getLogger(__name__)


async def sessions_list(request: web.Request) -> web.Response:
    cohort = request.query.get("cohort")
    shown = listing(token_of(request), cohort, request.query.get("learner"))
    if shown is None:
        raise error(web.HTTPForbidden, f"this token may not see cohort {cohort!r}")
    rows = deps_of(request).registry.sessions(*shown)
    return web.json_response({"sessions": [s.as_json() for s in rows[:200]]})


async def sessions_start(request: web.Request) -> web.Response:
    """Start a learner's demo: {"learner": "cohort/learner"} → 201 with the session."""
    body = await object_body(request)
    try:
        cohort, learner = check_learner(text_field(body, "learner"))
    except RegistryError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    managed_cohort(request, cohort)
    token = token_of(request)
    trainer = f"{token.label or 'trainer'} (token {token.id})"
    registry = deps_of(request).registry
    with registry_change(request):
        session = registry.start_session(cohort, learner, trainer)
    log.info("demo %s started for %s/%s by %s", session.id, cohort, learner, trainer)
    return web.json_response(session.as_json(), status=201)


def session_of(request: web.Request) -> DemoSession:
    session = deps_of(request).registry.session(request.match_info["id"])
    if session is None or not allows(token_of(request), Action.READ, Place(session.cohort, session.learner)):
        raise error(web.HTTPNotFound, "no such demo session (or not yours to see)")
    return session


async def sessions_stop(request: web.Request) -> web.Response:
    session = session_of(request)
    managed_cohort(request, session.cohort)
    registry = deps_of(request).registry
    with registry_change(request):
        stopped = registry.stop_session(session.id)
    log.info("demo %s of %s/%s stopped", stopped.id, stopped.cohort, stopped.learner)
    return web.json_response(stopped.as_json())


async def sessions_grade(request: web.Request) -> web.Response:
    """The session's grade from what InfluxDB holds for its window (a running session: up to now)."""
    session = session_of(request)
    deps = deps_of(request)
    reader = reader_of(request)
    if not await deps.flush_evidence(3.0):
        raise error(
            web.HTTPServiceUnavailable,
            "readings accepted before now are still on their way to InfluxDB (is it down?): a grade now would miss them",
        )
    try:
        rubrics = load_rubrics()
        report = await grade_session(reader, deps.registry, session, rubrics)
    except RubricError as err:
        raise error(web.HTTPInternalServerError, f"a rubric in config/rubrics is wrong: {err}") from None
    except StorageError as err:
        raise error(web.HTTPServiceUnavailable, f"InfluxDB: {err}") from None
    return web.json_response(report.as_json())
