"""Who may do what through the API: bearer tokens, their scopes, browser origins and rate limits. Pure functions.

Roles: a *trainer* manages and drives the devices of their cohort (or of every cohort, scope "*"); a *viewer*
(a classroom screen) reads them; a *learner* (or their phone app) reads and drives only their own devices.
Lab-wide views (counters, metrics) need a scope of "*".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from devices.topics import DeviceRef
from hub.access.registry import Token, token_digest

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


def lookup(tokens: dict[str, Token], secret: str | None) -> Token | None:
    if not secret or len(secret) > 200:
        return None
    return tokens.get(token_digest(secret))


def _in_cohort(token: Token, cohort: str) -> bool:
    return token.scope in ("*", cohort)


def can_read(token: Token, ref: DeviceRef) -> bool:
    if token.role == "learner":
        return token.scope == f"{ref.cohort}/{ref.learner}"
    return _in_cohort(token, ref.cohort)


def can_command(token: Token, ref: DeviceRef) -> bool:
    if token.role == "learner":
        return token.scope == f"{ref.cohort}/{ref.learner}"
    return token.role == "trainer" and _in_cohort(token, ref.cohort)


def can_manage(token: Token, cohort: str) -> bool:
    """Registry changes in a cohort: trainers of that cohort (or of all)."""
    return token.role == "trainer" and _in_cohort(token, cohort)


def lab_wide(token: Token) -> bool:
    return token.role in ("trainer", "viewer") and token.scope == "*"


def health_details(token: Token) -> bool:
    """Why the hub is degraded (error texts of the broker and the database) is for trainers and viewers."""
    return token.role in ("trainer", "viewer")


def can_grant(token: Token, role: str, scope: str) -> bool:
    """A trainer hands out learner and viewer tokens in their cohorts; only an all-cohort trainer makes trainers."""
    if token.role != "trainer":
        return False
    if role == "trainer":
        return token.scope == "*"
    cohort = scope.split("/", 1)[0]
    return token.scope == "*" or (scope != "*" and cohort == token.scope)


def origin_allowed(origin: str | None, host: str, allowed: tuple[str, ...]) -> bool:
    """No Origin (not a browser), the hub's own origin, or an allow-listed one."""
    if origin is None:
        return True
    if origin in allowed:
        return True
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and parts.netloc == host


@dataclass(slots=True)
class Bucket:
    tokens: float
    at: float


@dataclass(slots=True)
class RateLimiter:
    """A token bucket per API token: `rate` requests a second, bursts of `burst`."""

    rate: float
    burst: float
    buckets: dict[str, Bucket] = field(default_factory=dict)

    def check(self, key: str, now: float) -> float:
        """0 if this request may go; otherwise how many seconds to wait (for Retry-After)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) > 10_000:
                self.buckets.clear()
            bucket = self.buckets[key] = Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.at) * self.rate)
        bucket.at = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self.rate


def retry_after(wait_s: float) -> str:
    return str(max(1, math.ceil(wait_s)))
