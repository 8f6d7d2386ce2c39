"""Telemetry over HTTP, for boards without MQTT: `POST /api/devices/<c>/<l>/<d>/telemetry[/<field>]`.

A board speaks as its own broker account (HTTP Basic: its MQTT username and password), checked against the
broker's accounts (`hub.access.broker_auth`): there is no second password store, and a rotated, disabled or
removed account is refused here the moment the broker refuses it. API tokens do not open this route.

The body goes the way an MQTT message on the device's `telemetry` topic goes (`Ingest.post`, one function for
both): the same decoders (JSON, line protocol, a bare value on `…/telemetry/<field>`), validation, inspector,
lab doctor and spool. A rejection is answered 422 with the very message the device's `errors` topic gets (and
that message is published there too, as for MQTT: the board's page and a learner's app see every mistake in one
place). A reading is answered 204 once it is on disk, the moment an MQTT one would be acknowledged.

Answers: 204 stored; 401 no or wrong credentials (WWW-Authenticate); 403 a valid account, but not this device's;
404 no such field topic; 408 body too slow; 413 body over `max_payload_bytes`; 422 refused (the errors topic's
JSON); 202 taken but not yet on disk after SPOOL_TIMEOUT_S (a stalled disk: do not send it again); 429 too many posts for this device, or too many failed logins on its path (Retry-After); 503 intake paused
or the broker's accounts unreadable (Retry-After). In classroom open mode, as anonymous MQTT clients may publish
for any device, a post without credentials is taken too.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

from devices.topics import DeviceRef
from hub.access.broker_auth import AccountsUnavailable, BrokerAccounts, accounts_file
from hub.access.dynsec import device_username
from hub.access.tokens import retry_after
from hub.ingest.device_table import InspectorEntry
from hub.ingest.durability import Durability
from hub.ingest.pipeline import Ingest, error_message
from hub.pace import RateLimiter
from hub.web.common import deps_of, error, ref_of

ROUTE = "/api/devices/{cohort}/{learner}/{device}/telemetry"
ROUTES = (ROUTE, ROUTE + "/{field}")
REALM = 'Basic realm="labhub devices", charset="UTF-8"'
FAILED_PER_S, FAILED_BURST = 1.0, 10.0  # wrong passwords per device path: guessing is slow, a typo is not stuck
BODY_TIMEOUT_S = 10.0  # a board sends a reading in well under a second
SPOOL_TIMEOUT_S = 10.0  # a commit is milliseconds; past this the disk is stalled
PAUSED_RETRY_S = 5.0
MAX_HEADER = 4096  # a device's username and password are well under 200 characters


class HttpIntake:
    """What the route drives of the hub (`hub.web.deps.TelemetryIntake`): its ingest, durability and the
    broker's accounts."""

    def __init__(self, ingest: Ingest, durability: Durability, accounts: BrokerAccounts) -> None:
        self._ingest = ingest
        self._durability = durability
        self.accounts = accounts

    @classmethod
    def of_hub(cls, ingest: Ingest, durability: Durability, state_dir: Path) -> HttpIntake:
        return cls(ingest, durability, BrokerAccounts(accounts_file(state_dir)))

    @property
    def max_payload_bytes(self) -> int:
        return self._ingest.max_payload_bytes

    @property
    def paused(self) -> bool:
        return self._durability.paused

    async def check_account(self, username: str, password: str) -> bool:
        return await self.accounts.check(username, password)

    def post(self, ref: DeviceRef, field_name: str | None, payload: bytes) -> InspectorEntry | None:
        return self._ingest.post(ref, field_name, payload)

    async def spooled(self, entry: InspectorEntry) -> None:
        await self._durability.spooled(entry)


@dataclass(slots=True)
class Limits:
    posts: RateLimiter  # readings a device may post
    failures: RateLimiter  # failed logins on a device's path


LIMITS_KEY: web.AppKey[Limits] = web.AppKey("telemetry_limits", Limits)


def add_routes(app: web.Application, posts_per_second: float) -> None:
    app[LIMITS_KEY] = Limits(
        RateLimiter(posts_per_second, 2 * posts_per_second), RateLimiter(FAILED_PER_S, FAILED_BURST)
    )
    for route in ROUTES:
        app.router.add_post(route, post_telemetry)


def credentials_of(header: str | None) -> tuple[str, str] | None:
    """(username, password) from an `Authorization: Basic …` header (RFC 7617, UTF-8); None if there is none
    or it is not Basic."""
    scheme, _, value = (header or "").strip().partition(" ")
    if scheme.lower() != "basic" or len(value) > MAX_HEADER:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    return (username, password) if colon else None


def _too_many(message: str, wait: float) -> web.HTTPException:
    return error(web.HTTPTooManyRequests, message, {"Retry-After": retry_after(wait)})


async def _authenticate(request: web.Request, ref: DeviceRef, limits: Limits, now: float) -> None:
    """401 unless the credentials are a broker account's, 403 unless that account is this device's."""
    deps = deps_of(request)
    header = request.headers.get("Authorization")
    if header is None and deps.config.open_mode:
        return  # anonymous, as the broker lets anonymous clients publish in open mode
    credentials = credentials_of(header)
    intake = deps.telemetry
    assert intake is not None
    try:
        valid = credentials is not None and await intake.check_account(*credentials)
    except AccountsUnavailable as err:
        raise error(web.HTTPServiceUnavailable, str(err), {"Retry-After": retry_after(PAUSED_RETRY_S)}) from None
    if not valid:
        wait = limits.failures.check(ref.key, now)
        if wait:
            raise _too_many(f"too many failed logins for {ref.key}; wait", wait)
        raise error(
            web.HTTPUnauthorized,
            f"log in as the device: HTTP Basic with its MQTT username ({device_username(ref)}) and password"
            if credentials is None
            else "this username and password are not a broker account (mistyped, or rotated?)",
            {"WWW-Authenticate": REALM},
        )
    assert credentials is not None
    if credentials[0] != device_username(ref):
        raise error(web.HTTPForbidden, f"account {credentials[0][:100]!r} may not post {ref.key}'s telemetry")


def _too_large(limit: int, size: int) -> web.HTTPException:
    text = json.dumps({"error": f"a reading is at most {limit} bytes (hub.max_payload_bytes)"})
    return web.HTTPRequestEntityTooLarge(limit, size, text=text, content_type="application/json")


async def read_bounded(request: web.Request, limit: int) -> bytes:
    """The body, at most `limit` bytes (413 beyond, without reading the rest), within BODY_TIMEOUT_S (408)."""
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT_S):
            while chunk := await request.content.read(limit + 1 - size):
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit, size)
                chunks.append(chunk)
    except TimeoutError:
        raise error(web.HTTPRequestTimeout, f"the body did not come within {BODY_TIMEOUT_S:.0f} s") from None
    return b"".join(chunks)


async def post_telemetry(request: web.Request) -> web.StreamResponse:
    """One reading (or several lines of line protocol): 204 once on disk, 422 with the errors topic's message."""
    intake = deps_of(request).telemetry
    if intake is None:
        raise error(web.HTTPNotFound, "this hub takes no telemetry over HTTP")
    ref = ref_of(request)
    limits = request.app[LIMITS_KEY]
    now = time.monotonic()
    await _authenticate(request, ref, limits, now)
    wait = limits.posts.check(ref.key, now)
    if wait:
        raise _too_many(f"too many readings from {ref.key}; slow down", wait)
    if intake.paused:
        raise error(
            web.HTTPServiceUnavailable,
            "the hub is catching up with the database: send this reading again later",
            {"Retry-After": retry_after(PAUSED_RETRY_S)},
        )
    payload = await read_bounded(request, intake.max_payload_bytes)
    field_name = request.match_info.get("field")
    entry = intake.post(ref, field_name, payload)
    if entry is None:
        raise error(web.HTTPNotFound, f"no telemetry topic for a field named {str(field_name)[:64]!r}")
    if entry.verdict == "rejected":
        return web.json_response(error_message(entry), status=422)
    try:
        async with asyncio.timeout(SPOOL_TIMEOUT_S):
            await intake.spooled(entry)
    except TimeoutError:  # taken, and written once the disk is back: sending it again would store it twice
        return web.json_response({"verdict": entry.verdict, "device": ref.key}, status=202)
    return web.Response(status=204)
