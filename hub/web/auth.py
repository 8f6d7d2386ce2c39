"""API tokens over HTTP: who am I (pages adapt to the answer), and the trainers' token list, grants and revokes.
A new token's secret is answered once; only its digest is kept."""

from __future__ import annotations

from aiohttp import web

from hub.access.policy import Action, Place, allows, may_grant
from hub.web.bodies import object_body, text_field
from hub.web.common import deps_of, error, registry_change, require, token_of


async def whoami(request: web.Request) -> web.Response:
    """The token's role and scope (pages adapt to them)."""
    token = token_of(request)
    return web.json_response({"id": token.id, "role": token.role, "scope": token.scope, "label": token.label})


async def tokens_list(request: web.Request) -> web.Response:
    require(request, Action.ADMINISTER, None, "list tokens (trainers only)")
    token = token_of(request)
    rows = [
        t.as_json() for t in deps_of(request).registry.tokens() if allows(token, Action.MANAGE, Place.of_scope(t.scope))
    ]
    return web.json_response({"tokens": rows})


async def tokens_add(request: web.Request) -> web.Response:
    """A new token: 201 with its secret (shown this once; only a digest is kept)."""
    body = await object_body(request)
    role, scope = text_field(body, "role"), text_field(body, "scope")
    if not may_grant(token_of(request), role, scope):
        raise error(web.HTTPForbidden, f"this token may not create a {role} token for {scope!r}")
    registry = deps_of(request).registry
    label = text_field(body, "label", "")
    with registry_change(request):
        token, secret = registry.add_token(role, scope, label)
    return web.json_response(token.as_json() | {"token": secret}, status=201)


async def tokens_revoke(request: web.Request) -> web.Response:
    require(request, Action.ADMINISTER, None, "revoke tokens (trainers only)")
    registry = deps_of(request).registry
    target = registry.token(request.match_info["id"])
    if target is None:
        raise error(web.HTTPNotFound, "no such token")
    if not may_grant(token_of(request), target.role, target.scope):
        raise error(web.HTTPForbidden, "this token may not revoke this token")
    with registry_change(request):
        registry.revoke_token(target.id)
    return web.json_response({"revoked": target.id})
