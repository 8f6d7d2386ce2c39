"""The registry against a scratch SQLite file: what is written reads back, refusals name what is missing,
other connections' commits are seen, secrets are never stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from devices.topics import DeviceRef
from hub.access.records import DemoSession, LearnerRecord, RegistryError, Token, token_digest
from hub.access.registry import Registry
from hub.access.schema import SCHEMA

ANA = DeviceRef("demo", "ana", "aq1")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    registry = Registry(tmp_path / "registry.sqlite3")
    yield registry
    registry.close()


def test_changes_to_what_is_not_there_are_refused(registry: Registry) -> None:
    refusals = [
        (lambda: registry.set_learner_enabled("demo", "zoe", False), "no learner demo/zoe in the registry"),
        (lambda: registry.set_device_enabled(ANA, False), "no device demo/ana/aq1 in the registry"),
        (lambda: registry.remove_device(ANA), "no device demo/ana/aq1 in the registry"),
        (lambda: registry.revoke_token("t0"), "no active token 't0'"),
        (lambda: registry.stop_session("s0"), "no demo session 's0'"),
        (lambda: registry.start_session("demo", "zoe", "x"), "no learner demo/zoe in the registry"),
    ]
    for change, message in refusals:
        with pytest.raises(RegistryError) as refused:
            change()
        assert str(refused.value) == message
    token, _ = registry.add_token("viewer", "*")
    registry.revoke_token(token.id)
    with pytest.raises(RegistryError, match="no active token"):
        registry.revoke_token(token.id)  # revoked twice


def test_devices_learners_and_tokens_read_back_as_written(registry: Registry) -> None:
    ben_arm = DeviceRef("demo", "ben", "arm1")
    registry.add_device(ANA, "air_quality", None, "window")
    registry.add_device(ben_arm, "arm", "mearm", from_config=True)
    registry.set_device_enabled(ben_arm, False)
    registry.update_device(ANA, "generic", None)
    assert [(d.ref, d.kind, d.profile, d.description, d.enabled, d.from_config) for d in registry.devices()] == [
        (ANA, "generic", None, "window", True, False),
        (ben_arm, "arm", "mearm", "", False, True),
    ]
    assert [d.ref for d in registry.learner_devices("demo", "ben")] == [ben_arm]
    assert registry.learner_devices("demo", "zoe") == []
    assert registry.devices("other") == []
    registry.set_learner_account("demo", "ana")
    registry.set_learner_enabled("demo", "ben", False)
    assert registry.learners() == [
        LearnerRecord("demo", "ana", True, True),
        LearnerRecord("demo", "ben", False, False),
    ]
    assert registry.learner("demo", "zoe") is None
    assert registry.cohorts() == ["demo"]
    token, secret = registry.add_token("learner", "demo/ana", "phone")
    assert secret.startswith("lh_")
    assert registry.token(token.id) == registry.tokens()[0] == Token(token.id, "learner", "demo/ana", "phone")
    assert list(registry.active_tokens()) == [(token_digest(secret), token)]
    ben, ben_secret = registry.add_token("learner", "demo/ben", "phone")  # ben is disabled: his apps stop too
    assert list(registry.active_tokens()) == [(token_digest(secret), token)]
    registry.set_learner_enabled("demo", "ben", True)
    assert dict(registry.active_tokens())[token_digest(ben_secret)] == ben
    registry.remove_device(ANA)
    registry.remove_learner("demo", "ana")  # with their tokens
    assert registry.token(token.id) == Token(token.id, "learner", "demo/ana", "phone", revoked=True)
    assert registry.token_for(token_digest(secret)) is None


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


def test_demo_sessions_keep_their_window_trainer_and_devices(registry: Registry) -> None:
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


def test_a_registry_from_before_sessions_kept_their_devices_is_brought_up_to_date(tmp_path: Path) -> None:
    path = tmp_path / "state" / "registry.sqlite3"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    old.executescript(SCHEMA)  # the tables as they were: demo_sessions without devices
    old.execute("INSERT INTO demo_sessions VALUES ('s0', 'demo', 'ana', 'x', 1, 2)")
    old.commit()
    old.close()
    registry = Registry(path)
    try:
        assert registry.session("s0") == DemoSession("s0", "demo", "ana", "x", 1, 2, None)  # devices unknown
        registry.add_device(ANA, "air_quality", None)
        assert registry.start_session("demo", "ana", "y").devices == (("demo/ana/aq1", "air_quality"),)
        assert path.stat().st_mode & 0o777 == 0o600
    finally:
        registry.close()


def test_a_new_registry_is_private_from_its_first_byte(tmp_path: Path) -> None:
    path = tmp_path / "new" / "registry.sqlite3"
    Registry(path).close()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_second_connection_in_the_process_does_not_blind_the_first_to_other_processes(tmp_path: Path) -> None:
    """The hub holds the registry open and opens it again (the showcase store); trainers' CLI commands then write
    from other processes, one after another. Every one must reach the hub's connection (an open-and-close of the
    file in the hub's process once dropped its locks: the first CLI to exit deleted the WAL under the hub)."""
    import subprocess
    import sys

    from hub.access.registry import Registry
    from hub.access.schema import open_registry

    path = tmp_path / "registry.sqlite3"
    hub = Registry(path)
    second = open_registry(path)
    try:
        for learner in ("ben", "cleo", "dan"):
            code = f"from pathlib import Path; from hub.access.registry import Registry; r = Registry(Path({str(path)!r})); r.ensure_learner('c', {learner!r}); r.close()"
            subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
            assert learner in {record.learner for record in hub.learners("c")}, learner
    finally:
        second.close()
        hub.close()
