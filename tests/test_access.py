"""The pure parts of access control: token scopes, origins, rate limits."""

from __future__ import annotations

import pytest

from devices.topics import DeviceRef
from hub.access.records import Token
from hub.access.tokens import (
    RateLimiter,
    can_command,
    can_grant,
    can_manage,
    can_read,
    lab_wide,
    origin_allowed,
    retry_after,
)

ANA = DeviceRef("demo", "ana", "aq1")
BEN = DeviceRef("demo", "ben", "aq1")
OTHER = DeviceRef("night", "zoe", "aq1")


def tok(role: str, scope: str) -> Token:
    return Token("id", role, scope, "")


@pytest.mark.parametrize(
    ("token", "ref", "read", "command"),
    [
        (tok("learner", "demo/ana"), ANA, True, True),
        (tok("learner", "demo/ana"), BEN, False, False),
        (tok("learner", "demo/ana"), OTHER, False, False),
        (tok("trainer", "demo"), BEN, True, True),
        (tok("trainer", "demo"), OTHER, False, False),
        (tok("trainer", "*"), OTHER, True, True),
        (tok("viewer", "demo"), ANA, True, False),
        (tok("viewer", "demo"), OTHER, False, False),
        (tok("viewer", "*"), OTHER, True, False),
    ],
)
def test_scopes_decide_reading_and_commanding(token: Token, ref: DeviceRef, read: bool, command: bool) -> None:
    assert (can_read(token, ref), can_command(token, ref)) == (read, command)


def test_managing_granting_and_lab_wide_views() -> None:
    assert can_manage(tok("trainer", "demo"), "demo") and not can_manage(tok("trainer", "demo"), "night")
    assert not can_manage(tok("viewer", "*"), "demo") and not can_manage(tok("learner", "demo/ana"), "demo")
    assert can_grant(tok("trainer", "demo"), "learner", "demo/ana")
    assert can_grant(tok("trainer", "demo"), "viewer", "demo")
    assert not can_grant(tok("trainer", "demo"), "viewer", "*")
    assert not can_grant(tok("trainer", "demo"), "learner", "night/zoe")
    assert not can_grant(tok("trainer", "demo"), "trainer", "demo")  # only an all-cohort trainer makes trainers
    assert can_grant(tok("trainer", "*"), "trainer", "night")
    assert not can_grant(tok("learner", "demo/ana"), "learner", "demo/ana")
    assert lab_wide(tok("viewer", "*")) and lab_wide(tok("trainer", "*"))
    assert not lab_wide(tok("trainer", "demo")) and not lab_wide(tok("learner", "demo/ana"))


@pytest.mark.parametrize(
    ("origin", "allowed", "ok"),
    [
        (None, (), True),  # not a browser
        ("http://127.0.0.1:8080", (), True),  # the hub's own pages
        ("https://127.0.0.1:8080", (), True),
        ("http://127.0.0.1:9999", (), False),
        ("http://evil.test", (), False),
        ("https://dash.example", ("https://dash.example",), True),
        ("null", (), False),
    ],
)
def test_origins(origin: str | None, allowed: tuple[str, ...], ok: bool) -> None:
    assert origin_allowed(origin, "127.0.0.1:8080", allowed) is ok


def test_rate_limits_are_per_token_with_a_burst_and_a_wait() -> None:
    limiter = RateLimiter(rate=10.0, burst=20.0)
    assert all(limiter.check("a", 100.0) == 0.0 for _ in range(20))
    wait = limiter.check("a", 100.0)
    assert wait == pytest.approx(0.1)
    assert retry_after(wait) == "1"
    assert limiter.check("b", 100.0) == 0.0  # another token is not slowed
    assert limiter.check("a", 100.15) == 0.0  # refilled at 10/s
