"""The names, scopes and records of the registry: what a trainer may type, and how records show. Pure."""

from __future__ import annotations

import hashlib

import pytest

from devices.topics import DeviceRef
from hub.access.records import (
    DemoSession,
    DeviceRecord,
    LearnerRecord,
    RegistryError,
    Token,
    check_device,
    check_learner,
    check_scope,
    learner_key,
    token_digest,
)

PROFILES = frozenset({"mearm", "braccio"})
BAD_NAME = "is not a valid name: use 1–32 letters, digits, '_' or '-', starting with a letter or digit"
ANA_AQ = DeviceRef("demo", "ana", "aq1")


@pytest.mark.parametrize(
    ("key", "expected"),
    [
        ("demo/ana", ("demo", "ana")),
        ("demo/A-b_9", ("demo", "A-b_9")),
        ("demo", "learner id 'demo' must be cohort/learner"),
        ("demo/ana/aq1", "learner id 'demo/ana/aq1' must be cohort/learner"),
        ("demo/", f"'' {BAD_NAME}"),
        ("demo/_ana", f"'_ana' {BAD_NAME}"),
        ("demo/ana\n", f"'ana\\n' {BAD_NAME}"),
        ("demo/" + "a" * 33, f"'{'a' * 33}' {BAD_NAME}"),
    ],
)
def test_learner_ids(key: str, expected: tuple[str, str] | str) -> None:
    if isinstance(expected, tuple):
        assert check_learner(key) == expected
    else:
        with pytest.raises(RegistryError) as refused:
            check_learner(key)
        assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("key", "kind", "profile", "expected"),
    [
        ("demo/ana/aq1", "air_quality", None, (ANA_AQ, None)),
        ("demo/ana/aq1", "arm", None, (ANA_AQ, "mearm")),  # the default profile
        ("demo/ana/aq1", "arm", "braccio", (ANA_AQ, "braccio")),
        ("demo/ana", "generic", None, "device id 'demo/ana' must be cohort/learner/device"),
        ("demo/ana/a b", "generic", None, f"'a b' {BAD_NAME}"),
        ("demo/ana/aq1", "arm", "robotron", "arm profile 'robotron' is not one of braccio, mearm"),
        ("demo/ana/aq1", "generic", "mearm", "only arms have a profile (kind 'generic' does not)"),
    ],
)
def test_devices_as_trainers_name_them(
    key: str,
    kind: str,
    profile: str | None,
    expected: tuple[DeviceRef, str | None] | str,
) -> None:
    if isinstance(expected, tuple):
        assert check_device(key, kind, profile, PROFILES) == expected
    else:
        with pytest.raises(RegistryError) as refused:
            check_device(key, kind, profile, PROFILES)
        assert str(refused.value) == expected


@pytest.mark.parametrize(
    ("role", "scope", "expected"),
    [
        ("trainer", "*", "*"),
        ("trainer", "demo", "demo"),
        ("viewer", "*", "*"),
        ("viewer", "demo", "demo"),
        ("learner", "demo/ana", "demo/ana"),
        ("janitor", "*", "role 'janitor' is not one of trainer, learner, viewer"),
        ("learner", "*", "learner id '*' must be cohort/learner"),
        ("learner", "demo", "learner id 'demo' must be cohort/learner"),
        ("trainer", "demo/ana", f"a trainer token's scope is a cohort or '*': 'demo/ana' {BAD_NAME}"),
        ("viewer", "a b", f"a viewer token's scope is a cohort or '*': 'a b' {BAD_NAME}"),
        ("viewer", "", f"a viewer token's scope is a cohort or '*': '' {BAD_NAME}"),
    ],
)
def test_token_scopes(role: str, scope: str, expected: str) -> None:
    if expected.startswith(("role ", "learner id", "a ")):
        with pytest.raises(RegistryError) as refused:
            check_scope(role, scope)
        assert str(refused.value) == expected
    else:
        assert check_scope(role, scope) == expected


def test_token_digests_are_sha256_hex() -> None:
    assert token_digest("lh_abc") == hashlib.sha256(b"lh_abc").hexdigest()
    assert token_digest("lh_abc") == "57601c7d3741136753c0657a23caa4c3e5825a6cadfb4473d06d921bf915837e"


def test_records_as_the_api_shows_them() -> None:
    device = DeviceRecord(ANA_AQ, "arm", "mearm", "left bench", True, False)
    assert device.as_json() == {
        "id": "demo/ana/aq1",
        "kind": "arm",
        "profile": "mearm",
        "description": "left bench",
        "enabled": True,
        "username": "demo/ana/aq1",
    }
    assert LearnerRecord("demo", "ana", True, False).key == "demo/ana"
    assert learner_key("demo", "ana") == "demo/ana"
    assert Token("t1", "viewer", "*", "hall").as_json() == {
        "id": "t1",
        "role": "viewer",
        "scope": "*",
        "label": "hall",
        "revoked": False,
    }
    running = DemoSession("s1", "demo", "ana", "Mme Martin", 100, None, (("demo/ana/aq1", "air_quality"),))
    assert running.running
    assert running.as_json() == {
        "id": "s1",
        "learner": "demo/ana",
        "trainer": "Mme Martin",
        "started_ns": 100,
        "stopped_ns": None,
        "running": True,
        "devices": ["demo/ana/aq1"],
    }
    assert not DemoSession("s2", "demo", "ana", "x", 100, 200).running
    assert DemoSession("s2", "demo", "ana", "x", 100, 200).as_json()["devices"] == []
