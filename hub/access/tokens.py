"""Who is calling the API: bearer tokens (from a header or a WebSocket subprotocol), browser origins, and how long
a caller over its rate limit waits. Pure functions; what a token may do is `hub.access.policy`'s."""

from __future__ import annotations

import math
from collections.abc import Mapping
from urllib.parse import urlsplit

from hub.access.records import Token, token_digest

WS_PROTOCOL = "labhub"
WS_BEARER_PREFIX = "bearer."  # browsers cannot set headers on a WebSocket: the token rides as a subprotocol


def bearer_token(authorization: str | None, ws_protocols: str | None = None) -> str | None:
    """The token from `Authorization: Bearer …`, or from a WebSocket subprotocol `bearer.<token>`."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        return None
    for proto in (ws_protocols or "").split(","):
        proto = proto.strip()
        if proto.startswith(WS_BEARER_PREFIX) and len(proto) > len(WS_BEARER_PREFIX):
            return proto[len(WS_BEARER_PREFIX) :]
    return None


def lookup(tokens: Mapping[str, Token], secret: str | None) -> Token | None:
    if not secret or len(secret) > 200:
        return None
    return tokens.get(token_digest(secret))


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the hub's own origin, or an allow-listed one."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
