"""Who is calling the API (hub.access.tokens, pure): the bearer token from a header or a WebSocket subprotocol, its
lookup by digest, browser origins, and the per-token rate limit with its Retry-After."""

from __future__ import annotations

import pytest

from hub.access.records import Token, token_digest
from hub.access.tokens import bearer_token, lookup, origin_allowed, retry_after
from hub.pace import MAX_KEYS, RateLimiter

TRAINER_DEMO = Token("t1", "trainer", "demo", "demo trainer")
VIEWER_DEMO = Token("v1", "viewer", "demo", "demo screen")
LEARNER_ANA = Token("l1", "learner", "demo/ana", "ana's phone")


@pytest.mark.parametrize(
    ("authorization", "protocols", "expected"),
    [
        ("Bearer abc", None, "abc"),
        ("bearer abc", None, "abc"),
        ("BEARER   abc  ", None, "abc"),
        ("Basic abc", None, None),
        ("Bearer", None, None),
        ("Bearer    ", None, None),
        ("Bearerabc", None, None),
        ("Basic abc", "bearer.xyz", None),  # a header that is not a bearer token is not overridden by a subprotocol
        (None, "labhub, bearer.xyz", "xyz"),
        ("", "labhub,bearer.xyz", "xyz"),
        (None, "bearer.xyz,bearer.second", "xyz"),
        (None, "labhub", None),
        (None, "bearer.", None),
        (None, "bearer", None),
        (None, "xbearer.xyz", None),
        (None, "", None),
        (None, None, None),
        ("Bearer lh_abc", None, "lh_abc"),
        ("bearer  lh_abc ", None, "lh_abc"),
        ("Basic dXNlcjpwdw==", None, None),
        (None, "labhub, bearer.lh_xyz", "lh_xyz"),
    ],
)
def test_bearer_token_from_the_header_or_the_websocket_subprotocol(
    authorization: str | None, protocols: str | None, expected: str | None
) -> None:
    assert bearer_token(authorization, protocols) == expected


def test_bearer_token_subprotocol_alone() -> None:
    assert bearer_token(None, "bearer.s3cret") == "s3cret"


def test_lookup_by_digest_refuses_empty_and_oversized_secrets() -> None:
    tokens = {token_digest("s3cret"): TRAINER_DEMO, token_digest("x" * 200): VIEWER_DEMO}
    assert lookup(tokens, "s3cret") is TRAINER_DEMO
    assert lookup(tokens, "x" * 200) is VIEWER_DEMO  # 200 characters is the longest secret looked up
    tokens[token_digest("x" * 201)] = LEARNER_ANA
    assert lookup(tokens, "x" * 201) is None
    assert lookup(tokens, "other") is None
    assert lookup(tokens, "") is None
    assert lookup(tokens, None) is None


@pytest.mark.parametrize(
    ("origin", "expected"),
    [
        (None, True),  # not a browser
        ("http://hub.lab:8080", True),
        ("https://hub.lab:8080", True),
        ("http://hub.lab", False),  # another port is another origin
        ("ftp://hub.lab:8080", False),
        ("http://evil.example", False),
        ("https://phone.app", True),  # allow-listed
        ("https://phone.app.evil", False),
        ("", False),
        ("null", False),  # a sandboxed page or a file
    ],
)
def test_origins(origin: str | None, expected: bool) -> None:
    assert origin_allowed(origin, "hub.lab:8080", ("https://phone.app",)) is expected


def test_the_api_rate_limit_bursts_then_refills_at_its_rate_per_token() -> None:
    limiter = RateLimiter(rate=2.0, burst=3.0)
    assert [limiter.check("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a", 100.0) == 0.5  # one token at 2/s: half a second away
    assert limiter.check("b", 100.0) == 0.0  # buckets are per key
    assert limiter.check("a", 100.25) == 0.25  # half a token back, half still missing
    assert limiter.check("a", 100.5) == 0.0  # a whole token: spent
    assert [limiter.check("a", 1000.0) for _ in range(4)] == [0.0, 0.0, 0.0, 0.5]  # refilled to the burst, no more


def test_the_api_rate_limit_takes_exactly_one_token() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0)
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("a", 1.0) == 0.0  # exactly one token refilled
    assert limiter.check("a", 1.0) == 1.0


def test_the_api_rate_limit_forgets_everyone_when_its_table_is_full() -> None:
    limiter = RateLimiter(rate=1.0, burst=5.0)
    for i in range(MAX_KEYS):
        limiter.check(str(i), 0.0)
    assert len(limiter.buckets) == MAX_KEYS
    limiter.check("0", 0.0)  # a known key does not clear
    assert len(limiter.buckets) == MAX_KEYS
    limiter.check("new", 0.0)
    assert list(limiter.buckets) == ["new"]


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (2.5, "3"), (30.0, "30")],
)
def test_retry_after_is_whole_seconds_at_least_one(wait: float, expected: str) -> None:
    assert retry_after(wait) == expected
