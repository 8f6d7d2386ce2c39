"""Showcases over HTTP. The read-only side needs no token, only the share key (`?k=`), and opens nothing but
`/showcase/<slug>` and its own sub-resources: `/play` (the replay page in showcase mode), `/replay` (its demo's
timeline) and `/pack.zip` (its data pack, when the learner opted in to show the grade); `/demo-day/<cohort>` lists
the public ones. Every visitor is rate-limited by address. The API side (`/api/showcases`) takes tokens like the
rest: a learner publishes, re-keys (a lost link) and revokes their own, a trainer of the cohort approves, makes
public, sets expiry.
"""

from __future__ import annotations

import time

from aiohttp import web

from hub.access.policy import Action, Place, allows, listing
from hub.access.records import RegistryError, check_learner
from hub.datapack.pack import PackTarget
from hub.grading.rubrics import RubricError, load_rubrics
from hub.pace import RateLimiter
from hub.replay import as_json, session_timeline
from hub.showcase import content
from hub.showcase.model import Access, Showcase, ShowcaseError, access, check_slug
from hub.showcase.page import index_html, showcase_html
from hub.showcase.publish import Request, publish
from hub.showcase.store import ShowcaseStore
from hub.web.bodies import object_body, text_field
from hub.web.common import DEPS_KEY, deps_of, error, managed_cohort, reader_of, token_of
from hub.web.history import read
from hub.web.packs import _send as send_pack
from hub.web.pages import STATIC, page_policy

STORE_KEY: web.AppKey[ShowcaseStore] = web.AppKey("showcases", ShowcaseStore)
VISITORS_KEY: web.AppKey[RateLimiter] = web.AppKey("showcase visitors", RateLimiter)
VISITS_PER_SECOND = 5.0  # per address: a page and its replay are a handful of requests
PREFIXES = ("/showcase/", "/demo-day/")  # no token: the key (or a public showcase) opens them


def store_of(request: web.Request) -> ShowcaseStore:
    return request.app[STORE_KEY]


# The read-only side -----------------------------------------------------------------------------------------


def _visit(request: web.Request) -> Showcase:
    """The showcase this visitor may open, or 429/404/410; counts the visit against their address."""
    wait = request.app[VISITORS_KEY].check(request.remote or "?", time.monotonic())
    if wait:
        raise error(web.HTTPTooManyRequests, "too many requests; slow down", {"Retry-After": str(int(wait) + 1)})
    try:
        slug = check_slug(request.match_info["slug"])
    except ShowcaseError:
        raise error(web.HTTPNotFound, "no such showcase") from None
    showcase = store_of(request).get(slug)
    verdict = access(showcase, request.query.get("k"), time.time_ns())
    if verdict is Access.GONE:
        raise error(web.HTTPGone, "this showcase has expired")
    if verdict is not Access.OPEN or showcase is None:
        raise error(web.HTTPNotFound, "no such showcase (revoked, not yet approved, or the link is incomplete)")
    return showcase


def _headers(showcase: Showcase | None, policy: str, framed: bool = False) -> dict[str, str]:
    headers = {"Content-Security-Policy": policy, "Cache-Control": "no-store"}
    if showcase is None or not showcase.public:
        headers["X-Robots-Tag"] = "noindex, nofollow"
    headers["X-Frame-Options"] = "SAMEORIGIN" if framed else "DENY"
    return headers


async def showcase_page(request: web.Request) -> web.Response:
    showcase = _visit(request)
    deps = deps_of(request)
    reader = reader_of(request)
    try:
        plots = await read(content.plots_svg(reader, deps.registry, showcase))
        grade = await read(content.grade_json(reader, deps.registry, showcase, load_rubrics()))
    except RubricError as err:
        raise error(web.HTTPInternalServerError, f"a rubric in config/rubrics is wrong: {err}") from None
    text = showcase_html(showcase, request.query.get("k"), plots, grade, time.time_ns())
    policy = page_policy(text).replace("default-src 'none';", "default-src 'none'; frame-src 'self';")
    return web.Response(text=text, content_type="text/html", headers=_headers(showcase, policy))


async def showcase_play(request: web.Request) -> web.Response:
    """The replay page in showcase mode (it reads `?showcase=&k=`), framed by the showcase page only."""
    showcase = _visit(request)
    text = (STATIC / "replay.html").read_text()
    policy = page_policy(text).replace("frame-ancestors 'none'", "frame-ancestors 'self'")
    return web.Response(text=text, content_type="text/html", headers=_headers(showcase, policy, framed=True))


async def showcase_replay(request: web.Request) -> web.Response:
    showcase = _visit(request)
    deps = deps_of(request)
    session = content.shown_session(deps.registry, showcase)
    if session is None:
        raise error(web.HTTPNotFound, "this showcase has no demo to replay")
    timeline = await read(session_timeline(reader_of(request), deps.registry, session, time.time_ns()))
    return web.json_response(as_json(timeline), headers=_headers(showcase, API_POLICY_JSON))


async def showcase_pack(request: web.Request) -> web.StreamResponse:
    showcase = _visit(request)
    session = content.shown_session(deps_of(request).registry, showcase)
    if not showcase.show_grade or session is None:
        raise error(web.HTTPNotFound, "this showcase offers no data pack")
    return await send_pack(request, PackTarget.of_session(session))


async def demo_day(request: web.Request) -> web.Response:
    cohort = request.match_info["cohort"]
    now = time.time_ns()
    shown = [s for s in store_of(request).list(cohort) if s.public and access(s, None, now) is Access.OPEN]
    text = index_html(cohort, shown)
    return web.Response(text=text, content_type="text/html", headers=_headers(None, page_policy(text)))


API_POLICY_JSON = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


# The API side ---------------------------------------------------------------------------------------------


def _owned(request: web.Request) -> Showcase:
    """A showcase the caller may see (its learner, or a reader of its cohort); another's is 404."""
    try:
        showcase = store_of(request).get(check_slug(request.match_info["slug"]))
    except ShowcaseError:
        showcase = None
    if showcase is None or not allows(token_of(request), Action.READ, Place(showcase.cohort, showcase.learner)):
        raise error(web.HTTPNotFound, "no such showcase (or not yours to see)")
    return showcase


def _ns(body: dict[str, object], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**63:
        raise error(web.HTTPBadRequest, f"{name} must be a time in ns since the epoch")
    return value


def _texts(body: dict[str, object], name: str) -> tuple[str, ...]:
    value = body.get(name, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value) or len(value) > 20:
        raise error(web.HTTPBadRequest, f"{name} must be a list of at most 20 strings")
    return tuple(str(v) for v in value)


async def showcases_list(request: web.Request) -> web.Response:
    cohort = request.query.get("cohort")
    shown = listing(token_of(request), cohort, request.query.get("learner"))
    if shown is None:
        raise error(web.HTTPForbidden, f"this token may not see cohort {cohort!r}")
    now = time.time_ns()
    return web.json_response({"showcases": [s.as_json(now) for s in store_of(request).list(*shown)[:200]]})


async def showcases_publish(request: web.Request) -> web.Response:
    """Publish: 201 with the showcase and its share link (the key is shown this once). A learner's waits for a
    trainer's approval; a trainer's is approved at once."""
    body = await object_body(request)
    learner = text_field(body, "learner")
    try:
        cohort, name = check_learner(learner)
    except RegistryError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    token = token_of(request)
    if not allows(token, Action.SHOWCASE, Place(cohort, name)):
        raise error(web.HTTPForbidden, f"this token may not publish for {learner}")
    show_grade = body.get("show_grade", False)
    if not isinstance(show_grade, bool):
        raise error(web.HTTPBadRequest, "show_grade must be true or false")
    session = body.get("session")
    req = Request(
        learner,
        text_field(body, "title"),
        text_field(body, "description", ""),
        _texts(body, "devices"),
        _texts(body, "plots"),
        session if isinstance(session, str) else None,
        _ns(body, "start_ns"),
        _ns(body, "end_ns"),
        show_grade,
        _ns(body, "expires_ns"),
    )
    trainer = allows(token, Action.MANAGE, Place(cohort))
    try:
        showcase, key = publish(deps_of(request).registry, store_of(request), req, approved=trainer)
    except ShowcaseError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    return _with_key(showcase, key, status=201)


async def showcases_approve(request: web.Request) -> web.Response:
    """A trainer approves: {"public": bool, "expires_ns": int} (both optional)."""
    showcase = _owned(request)
    managed_cohort(request, showcase.cohort)
    body = await object_body(request) if request.can_read_body else {}
    public: object = body.get("public")
    if public is not None and not isinstance(public, bool):
        raise error(web.HTTPBadRequest, "public must be true or false")
    try:
        changed = store_of(request).approve(showcase.slug, public, _ns(body, "expires_ns"))
    except ShowcaseError as err:
        raise error(web.HTTPConflict, str(err)) from None
    return web.json_response(changed.as_json(time.time_ns()))


def _changed_by_owner(request: web.Request, what: str) -> Showcase:
    """A showcase the caller may change as its learner (or their trainer): another's is 404, a viewer's 403."""
    showcase = _owned(request)
    if not allows(token_of(request), Action.SHOWCASE, Place(showcase.cohort, showcase.learner)):
        raise error(web.HTTPForbidden, f"this token may not {what}")
    return showcase


def _with_key(showcase: Showcase, key: str, status: int = 200) -> web.Response:
    """A showcase with its share link and key: shown this once, never cached."""
    answer = showcase.as_json(time.time_ns()) | {"link": showcase.link(key), "key": key}
    return web.json_response(answer, status=status, headers={"Cache-Control": "no-store"})


async def showcases_revoke(request: web.Request) -> web.Response:
    showcase = _changed_by_owner(request, "revoke this showcase")
    try:
        revoked = store_of(request).revoke(showcase.slug)
    except ShowcaseError as err:
        raise error(web.HTTPConflict, str(err)) from None
    return web.json_response(revoked.as_json(time.time_ns()))


async def showcases_rekey(request: web.Request) -> web.Response:
    """A new share link for a lost one (its learner or trainer): 200 with the link and key (shown this once); the
    old link answers 404 from now on."""
    showcase = _changed_by_owner(request, "give this showcase a new link")
    try:
        changed, key = store_of(request).rekey(showcase.slug)
    except ShowcaseError as err:
        raise error(web.HTTPConflict, str(err)) from None
    return _with_key(changed, key)


def add_routes(app: web.Application) -> None:
    app[STORE_KEY] = ShowcaseStore(app[DEPS_KEY].registry.path)
    app[VISITORS_KEY] = RateLimiter(VISITS_PER_SECOND, 4 * VISITS_PER_SECOND)

    async def close(app: web.Application) -> None:
        app[STORE_KEY].close()

    app.on_cleanup.append(close)
    app.router.add_get("/showcase/{slug}", showcase_page)
    app.router.add_get("/showcase/{slug}/play", showcase_play)
    app.router.add_get("/showcase/{slug}/replay", showcase_replay)
    app.router.add_get("/showcase/{slug}/pack.zip", showcase_pack)
    app.router.add_get("/demo-day/{cohort}", demo_day)
    app.router.add_get("/api/showcases", showcases_list)
    app.router.add_post("/api/showcases", showcases_publish)
    app.router.add_post("/api/showcases/{slug}/approve", showcases_approve)
    app.router.add_post("/api/showcases/{slug}/key", showcases_rekey)
    app.router.add_delete("/api/showcases/{slug}", showcases_revoke)
