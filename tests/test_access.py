"""The pure parts of access control: token scopes, origins, rate limits, broker rules, the cohort CSV."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.access.dynsec import device_acls, learner_acls, password_record
from hub.access.registry import Registry, RegistryError, Token, check_scope, parse_csv, token_digest
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
PROFILES = frozenset({"mearm", "braccio"})


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


def test_device_rules_name_only_its_own_topics() -> None:
    rules = {(a["acltype"], a["topic"]) for a in device_acls(ANA) if a["allow"]}
    assert rules == {
        ("publishClientSend", "lab/demo/ana/aq1/telemetry"),
        ("publishClientSend", "lab/demo/ana/aq1/telemetry/+"),
        ("publishClientSend", "lab/demo/ana/aq1/ack"),
        ("publishClientSend", "lab/demo/ana/aq1/status"),
        ("subscribePattern", "lab/demo/ana/aq1/commands"),
        ("publishClientReceive", "lab/demo/ana/aq1/commands"),
        ("subscribePattern", "lab/demo/ana/aq1/errors"),
        ("publishClientReceive", "lab/demo/ana/aq1/errors"),
    }
    learner = {(a["acltype"], a["topic"]) for a in learner_acls("demo", "ana")}
    assert ("publishClientSend", "lab/demo/ana/+/commands/request") in learner
    assert all("/demo/ana/" in topic for _, topic in learner)
    assert not any(kind == "publishClientSend" and "telemetry" in topic for kind, topic in learner)


def test_password_records_are_pbkdf2_sha512_as_mosquitto_stores_them() -> None:
    record = password_record("s3cret", salt=b"0123456789ab", iterations=101)
    expected = hashlib.pbkdf2_hmac("sha512", b"s3cret", b"0123456789ab", 101, 64)
    assert record == {
        "password": base64.b64encode(expected).decode(),
        "salt": base64.b64encode(b"0123456789ab").decode(),
        "iterations": 101,
    }
    assert password_record("s3cret")["salt"] != password_record("s3cret")["salt"]


def test_a_cohort_csv_as_trainers_write_it() -> None:
    lines = parse_csv(
        "\ufeffCohort, Learner, Device, Kind, Profile, Description\n"
        "demo,ana,aq1,air_quality,,window\n"
        "demo,ana,arm1,arm,,\n"
        "\n"
        "demo,ben,,,,\n",
        PROFILES,
    )
    assert [(x.cohort, x.learner, x.device.key if x.device else None, x.kind, x.profile) for x in lines] == [
        ("demo", "ana", "demo/ana/aq1", "air_quality", None),
        ("demo", "ana", "demo/ana/arm1", "arm", "mearm"),
        ("demo", "ben", None, "generic", None),
    ]
    assert lines[0].description == "window"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,device\nx,y\n", "header line with at least: cohort,learner"),
        ("cohort,learner,colour\ndemo,ana,red\n", "unknown CSV column"),
        ("cohort,learner\ndemo,ana bob\n", "line 2: 'ana bob' is not a valid name"),
        ("cohort,learner,device,kind\ndemo,ana,aq1,toaster\n", "line 2: kind 'toaster'"),
        ("cohort,learner,device,kind,profile\ndemo,ana,arm1,arm,robotron\n", "line 2: arm profile 'robotron'"),
        ("cohort,learner\n", "no learners"),
    ],
)
def test_a_bad_csv_says_which_line_and_what(text: str, message: str) -> None:
    with pytest.raises(RegistryError, match=message):
        parse_csv(text, PROFILES)


def test_token_scopes_are_checked() -> None:
    assert check_scope("learner", "demo/ana") == "demo/ana"
    assert check_scope("viewer", "*") == "*"
    for role, scope in (("learner", "demo"), ("trainer", "demo/ana"), ("janitor", "*"), ("viewer", "a b")):
        with pytest.raises(RegistryError):
            check_scope(role, scope)


def test_the_registry_keeps_token_digests_and_sees_other_writers(tmp_path: Path) -> None:
    path = tmp_path / "registry.sqlite3"
    hub_view, cli = Registry(path), Registry(path)
    try:
        before = hub_view.version()
        token, secret = cli.add_token("learner", "demo/ana", "phone")
        assert hub_view.version() != before  # another connection's commit is seen
        assert hub_view.token_for(token_digest(secret)) == Token(token.id, "learner", "demo/ana", "phone")
        cli.add_device(ANA, "air_quality", None, "window")
        with pytest.raises(RegistryError, match="already registered"):
            cli.add_device(ANA, "air_quality", None)
        assert [d.ref for d in hub_view.devices()] == [ANA]
        cli.revoke_token(token.id)
        assert hub_view.token_for(token_digest(secret)) is None
        assert path.stat().st_mode & 0o077 == 0
        assert secret.encode() not in path.read_bytes()
    finally:
        hub_view.close()
        cli.close()


def test_demo_sessions_keep_their_window_trainer_and_devices(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite3")
    try:
        with pytest.raises(RegistryError, match="no learner"):
            registry.start_session("demo", "ana", "trainer")
        registry.add_device(ANA, "air_quality", None)
        session = registry.start_session("demo", "ana", "Mme Martin", now_ns=100)
        with pytest.raises(RegistryError, match="already has a demo running"):
            registry.start_session("demo", "ana", "Mme Martin")
        registry.add_device(DeviceRef("demo", "ana", "arm1"), "arm", "mearm")  # added after the start
        stopped = registry.stop_session(session.id, now_ns=200)
        assert (stopped.started_ns, stopped.stopped_ns, stopped.trainer) == (100, 200, "Mme Martin")
        assert stopped.devices == (("demo/ana/aq1", "air_quality"),)  # what is graded: the devices at the start
        assert registry.sessions("demo", "ana") == [stopped]
        with pytest.raises(RegistryError, match="already stopped"):
            registry.stop_session(session.id)
    finally:
        registry.close()
