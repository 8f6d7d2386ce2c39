"""What every handler module shares: the app's dependencies and the caller's token (typed keys), JSON errors,
the access policy's verdict as a 403, device names from the path, the database for reading, and the wrapper around
registry changes."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

from aiohttp import web

from devices.topics import DeviceRef, TopicError
from hub.access.dynsec import DynsecError
from hub.access.policy import Action, Place, allows
from hub.access.records import RegistryError, Token
from hub.adapters.influx_read import Reader, ReadNotSupported
from hub.web.deps import WebDeps

DEPS_KEY: web.AppKey[WebDeps] = web.AppKey("deps", WebDeps)
TOKEN_KEY: web.RequestKey[Token] = web.RequestKey("token", Token)


def deps_of(request: web.Request) -> WebDeps:
    return request.app[DEPS_KEY]


def token_of(request: web.Request) -> Token:
    """The caller's token (the security middleware put it there: every non-public route has one)."""
    return request[TOKEN_KEY]


def error(cls: type[web.HTTPException], message: str, headers: dict[str, str] | None = None) -> web.HTTPException:
    """API errors are JSON too: {"error": "..."}."""
    return cls(text=json.dumps({"error": message}), content_type="application/json", headers=headers)


def require(request: web.Request, action: Action, where: Place | None, what: str) -> None:
    """403 unless the policy lets the caller's token do `action` at `where`; `what` names it for the caller."""
    if not allows(token_of(request), action, where):
        raise error(web.HTTPForbidden, f"this token may not {what}")


def ref_of(request: web.Request) -> DeviceRef:
    info = request.match_info
    try:
        return DeviceRef.parse(f"{info['cohort']}/{info['learner']}/{info['device']}")
    except TopicError as err:
        raise error(web.HTTPBadRequest, str(err)) from None


def readable(request: web.Request, ref: DeviceRef) -> None:
    require(request, Action.READ, Place.of(ref), f"see {ref.key}")


def managed_cohort(request: web.Request, cohort: str) -> None:
    require(request, Action.MANAGE, Place(cohort), f"manage cohort {cohort!r}")


def reader_of(request: web.Request) -> Reader:
    """The database, for reading (history, overview, grades); 501 where this backend cannot read yet."""
    reader = deps_of(request).reader
    try:
        reader.check_readable()
    except ReadNotSupported as err:
        raise error(web.HTTPNotImplemented, str(err)) from None
    return reader


MAX_WAIT_S = 30.0


def wait_s(request: web.Request) -> float:
    try:
        return max(0.0, min(MAX_WAIT_S, float(request.query.get("wait", "0"))))
    except ValueError:
        raise error(web.HTTPBadRequest, "wait must be a number of seconds") from None


@contextlib.contextmanager
def registry_change(request: web.Request) -> Iterator[None]:
    """Around a registry change: bad input → 400/404/409, the broker unreachable → 503; then the hub follows."""
    try:
        yield
    except RegistryError as err:
        text = str(err)
        status = 404 if text.startswith("no ") else 409 if "already" in text else 400
        raise error({404: web.HTTPNotFound, 409: web.HTTPConflict}.get(status, web.HTTPBadRequest), text) from None
    except DynsecError as err:
        raise error(web.HTTPServiceUnavailable, f"the broker's accounts could not be changed: {err}") from None
    deps_of(request).apply_registry()
