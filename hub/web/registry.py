"""The registry over HTTP, for trainers: devices and learners with their broker accounts (add, remove, disable,
enable, rotate), and a cohort CSV import. New passwords are answered once and never kept."""

from __future__ import annotations

from aiohttp import web

from hub.access.cohort_csv import decode_csv, parse_csv
from hub.access.policy import Action, listing
from hub.access.records import RegistryError
from hub.config import ARM_PROFILES
from hub.web.bodies import object_body, text_field
from hub.web.common import deps_of, error, managed_cohort, ref_of, registry_change, require, token_of


def cohort_filter(request: web.Request) -> str | None:
    """The cohort a registry listing shows (?cohort=, narrowed to the token's scope; None: all)."""
    require(request, Action.ADMINISTER, None, "see the registry (trainers only)")
    cohort = request.query.get("cohort")
    shown = listing(token_of(request), cohort)
    if shown is None:
        raise error(web.HTTPForbidden, f"this token may not manage cohort {cohort!r}")
    return shown[0]


async def registry_devices(request: web.Request) -> web.Response:
    cohort = cohort_filter(request)
    return web.json_response({"devices": [d.as_json() for d in deps_of(request).registry.devices(cohort)]})


async def registry_add_device(request: web.Request) -> web.Response:
    """Register a device: 201 with its broker username and password (shown this once)."""
    body = await object_body(request)
    key = text_field(body, "id")
    managed_cohort(request, key.split("/", 1)[0])
    profile = body.get("profile")
    kind, description = text_field(body, "kind", "generic"), text_field(body, "description", "")
    with registry_change(request):
        credential = await deps_of(request).accounts.add_device(
            key, kind, str(profile) if profile else None, description
        )
    return web.json_response({"username": credential.username, "password": credential.password}, status=201)


async def registry_remove_device(request: web.Request) -> web.Response:
    ref = ref_of(request)
    managed_cohort(request, ref.cohort)
    with registry_change(request):
        await deps_of(request).accounts.remove_device(ref.key)
    return web.json_response({"removed": ref.key})


async def registry_device_action(request: web.Request) -> web.Response:
    """disable (cuts it off at once), enable, or rotate (a new password; the old one stops working)."""
    ref = ref_of(request)
    managed_cohort(request, ref.cohort)
    accounts = deps_of(request).accounts
    action = request.match_info["action"]
    if action == "rotate":
        with registry_change(request):
            credential = await accounts.rotate_device(ref.key)
        return web.json_response({"username": credential.username, "password": credential.password})
    if action not in ("disable", "enable"):
        raise error(web.HTTPNotFound, f"no action {action!r}: disable, enable or rotate")
    with registry_change(request):
        await accounts.set_device_enabled(ref.key, action == "enable")
    return web.json_response({"device": ref.key, "enabled": action == "enable"})


async def registry_learners(request: web.Request) -> web.Response:
    cohort = cohort_filter(request)
    rows = deps_of(request).registry.learners(cohort)
    return web.json_response(
        {"learners": [{"id": r.key, "enabled": r.enabled, "mqtt_account": r.has_account} for r in rows]}
    )


async def registry_add_learner(request: web.Request) -> web.Response:
    """A learner's MQTT account (for an MQTT phone app): 201 with its password (shown this once)."""
    body = await object_body(request)
    key = text_field(body, "id")
    managed_cohort(request, key.split("/", 1)[0])
    with registry_change(request):
        credential = await deps_of(request).accounts.add_learner(key)
    return web.json_response({"username": credential.username, "password": credential.password}, status=201)


async def registry_learner_action(request: web.Request) -> web.Response:
    cohort, learner = request.match_info["cohort"], request.match_info["learner"]
    managed_cohort(request, cohort)
    accounts = deps_of(request).accounts
    action = request.match_info["action"]
    key = f"{cohort}/{learner}"
    if action == "rotate":
        with registry_change(request):
            credential = await accounts.rotate_learner(key)
        return web.json_response({"username": credential.username, "password": credential.password})
    if action not in ("disable", "enable"):
        raise error(web.HTTPNotFound, f"no action {action!r}: disable, enable or rotate")
    with registry_change(request):
        await accounts.set_learner_enabled(key, action == "enable")
    return web.json_response({"learner": key, "enabled": action == "enable"})


async def registry_import(request: web.Request) -> web.Response:
    """A cohort CSV (cohort,learner,device,kind,profile,description): 201 with the new accounts' passwords."""
    try:
        text = decode_csv(await request.read())
        lines = parse_csv(text, frozenset(ARM_PROFILES))
    except RegistryError as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    for cohort in {line.cohort for line in lines}:
        managed_cohort(request, cohort)
    with registry_change(request):
        made = await deps_of(request).accounts.import_lines(lines)
    return web.json_response({"accounts": [{"username": c.username, "password": c.password} for c in made]}, status=201)
