"""The API's access policy as tables (hub.auth, pure): bearer tokens, scopes per role, origins, rate limits.

Roles and scopes as the module and the README's "Accounts and access" state them: a trainer manages and drives
their cohort (or every cohort with scope "*"), a viewer reads, a learner ("cohort/learner") reads and drives only
their own devices; lab-wide views need scope "*". Written for issue 12's mutation testing: each row pins one
branch of the policy.
"""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef
from hub.access.records import Token, token_digest
from hub.access.tokens import (
    Bucket,
    RateLimiter,
    bearer_token,
    can_command,
    can_grant,
    can_manage,
    can_read,
    health_details,
    lab_wide,
    lookup,
    origin_allowed,
    retry_after,
)

TRAINER_ALL = Token("t0", "trainer", "*", "head trainer")
TRAINER_DEMO = Token("t1", "trainer", "demo", "demo trainer")
VIEWER_ALL = Token("v0", "viewer", "*", "hall screen")
VIEWER_DEMO = Token("v1", "viewer", "demo", "demo screen")
LEARNER_ANA = Token("l1", "learner", "demo/ana", "ana's phone")
LEARNER_STAR = Token("l2", "learner", "*", "a learner token with a wildcard scope")
STRANGER = Token("x1", "auditor", "*", "a role the policy does not know")

ANA_ARM = DeviceRef("demo", "ana", "arm1")
BOB_ARM = DeviceRef("demo", "bob", "arm1")
OTHER_COHORT = DeviceRef("other", "ana", "arm1")


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
    ("token", "ref", "read", "command"),
    [
        (TRAINER_ALL, ANA_ARM, True, True),
        (TRAINER_ALL, OTHER_COHORT, True, True),
        (TRAINER_DEMO, ANA_ARM, True, True),
        (TRAINER_DEMO, OTHER_COHORT, False, False),
        (VIEWER_ALL, ANA_ARM, True, False),
        (VIEWER_DEMO, ANA_ARM, True, False),
        (VIEWER_DEMO, OTHER_COHORT, False, False),
        (LEARNER_ANA, ANA_ARM, True, True),
        (LEARNER_ANA, BOB_ARM, False, False),
        (LEARNER_ANA, OTHER_COHORT, False, False),  # same learner name, another cohort
        (LEARNER_STAR, ANA_ARM, False, False),  # a learner's scope is never a wildcard
        (STRANGER, ANA_ARM, True, False),
    ],
)
def test_who_reads_and_who_drives_a_device(token: Token, ref: DeviceRef, read: bool, command: bool) -> None:
    assert (can_read(token, ref), can_command(token, ref)) == (read, command)


@pytest.mark.parametrize(
    ("token", "cohort", "expected"),
    [
        (TRAINER_ALL, "demo", True),
        (TRAINER_ALL, "other", True),
        (TRAINER_DEMO, "demo", True),
        (TRAINER_DEMO, "other", False),
        (VIEWER_ALL, "demo", False),
        (VIEWER_DEMO, "demo", False),
        (LEARNER_ANA, "demo", False),
    ],
)
def test_who_manages_a_cohort(token: Token, cohort: str, expected: bool) -> None:
    assert can_manage(token, cohort) is expected


@pytest.mark.parametrize(
    ("token", "wide", "details"),
    [
        (TRAINER_ALL, True, True),
        (TRAINER_DEMO, False, True),
        (VIEWER_ALL, True, True),
        (VIEWER_DEMO, False, True),
        (LEARNER_ANA, False, False),
        (LEARNER_STAR, False, False),
        (STRANGER, False, False),
    ],
)
def test_lab_wide_views_and_health_details(token: Token, wide: bool, details: bool) -> None:
    assert (lab_wide(token), health_details(token)) == (wide, details)


@pytest.mark.parametrize(
    ("token", "role", "scope", "expected"),
    [
        (TRAINER_ALL, "trainer", "demo", True),
        (TRAINER_ALL, "trainer", "*", True),
        (TRAINER_ALL, "viewer", "*", True),
        (TRAINER_ALL, "learner", "other/bob", True),
        (TRAINER_DEMO, "trainer", "demo", False),  # only an all-cohort trainer makes trainers
        (TRAINER_DEMO, "viewer", "demo", True),
        (TRAINER_DEMO, "learner", "demo/ana", True),
        (TRAINER_DEMO, "learner", "other/ana", False),
        (TRAINER_DEMO, "viewer", "other", False),
        (TRAINER_DEMO, "viewer", "*", False),  # a cohort trainer cannot hand out a lab-wide viewer
        (TRAINER_DEMO, "viewer", "demox", False),
        (VIEWER_ALL, "viewer", "demo", False),
        (VIEWER_ALL, "learner", "demo/ana", False),
        (LEARNER_ANA, "learner", "demo/ana", False),
    ],
)
def test_who_grants_which_tokens(token: Token, role: str, scope: str, expected: bool) -> None:
    assert can_grant(token, role, scope) is expected


def test_a_star_cohort_trainer_is_not_confused_with_a_star_scope() -> None:
    # A trainer whose cohort is literally "*" is the all-cohort trainer; a scope of "*" never matches a cohort name.
    assert can_grant(Token("t", "trainer", "*", ""), "viewer", "*/x") is True
    assert can_grant(TRAINER_DEMO, "learner", "demo") is True  # the cohort part of a bare cohort is the cohort


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
    ],
)
def test_origins(origin: str | None, expected: bool) -> None:
    assert origin_allowed(origin, "hub.lab:8080", ("https://phone.app",)) is expected


def test_rate_limiter_bursts_then_refills_at_its_rate() -> None:
    limiter = RateLimiter(rate=2.0, burst=3.0)
    assert [limiter.check("a", 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.check("a", 100.0) == 0.5  # one token at 2/s: half a second away
    assert limiter.buckets["a"] == Bucket(0.0, 100.0)
    assert limiter.check("b", 100.0) == 0.0  # buckets are per key
    assert limiter.check("a", 100.25) == 0.25  # half a token back, half still missing
    assert limiter.buckets["a"] == Bucket(0.5, 100.25)
    assert limiter.check("a", 100.5) == 0.0  # a whole token: spent
    assert limiter.buckets["a"] == Bucket(0.0, 100.5)
    assert limiter.check("a", 1000.0) == 0.0  # a long pause refills to the burst, no more
    assert limiter.buckets["a"] == Bucket(2.0, 1000.0)


def test_rate_limiter_exactly_one_token_is_enough() -> None:
    limiter = RateLimiter(rate=1.0, burst=1.0)
    assert limiter.check("a", 0.0) == 0.0
    assert limiter.check("a", 1.0) == 0.0  # exactly one token refilled
    assert limiter.check("a", 1.0) == 1.0


def test_rate_limiter_forgets_everyone_past_ten_thousand_keys() -> None:
    limiter = RateLimiter(rate=1.0, burst=5.0)
    for i in range(10_001):
        limiter.check(str(i), 0.0)
    assert len(limiter.buckets) == 10_001
    limiter.check("0", 0.0)  # a known key does not clear
    assert len(limiter.buckets) == 10_001
    limiter.check("new", 0.0)
    assert list(limiter.buckets) == ["new"]
    assert limiter.buckets["new"] == Bucket(4.0, 0.0)


@pytest.mark.parametrize(
    ("wait", "expected"),
    [(0.0, "1"), (0.2, "1"), (1.0, "1"), (1.01, "2"), (2.5, "3"), (30.0, "30")],
)
def test_retry_after_is_whole_seconds_at_least_one(wait: float, expected: str) -> None:
    assert retry_after(wait) == expected
