"""The lab's registry: cohorts, learners, devices, API tokens and demo sessions, in one SQLite file.

`version()` changes whenever anyone commits, so the hub sees a trainer's CLI changes without a restart. Tokens
are stored as digests only (`records.token_digest`). The file itself is `schema.py`'s; the records and name
checks are `records.py`'s; talking to the broker is `dynsec.py`'s.
"""

from __future__ import annotations

import dataclasses
import json
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from devices.topics import DeviceRef
from hub.access.records import (
    DemoSession,
    DeviceRecord,
    LearnerRecord,
    RegistryError,
    Token,
    check_scope,
    learner_key,
    token_digest,
)
from hub.access.schema import open_registry

TOKEN_PREFIX = "lh_"
_LEARNER = "SELECT cohort, learner, enabled, has_account FROM learners"
_DEVICE = "SELECT cohort, learner, device, kind, profile, description, enabled, from_config, created_ns FROM devices"
_SESSION = "SELECT id, cohort, learner, trainer, started_ns, stopped_ns, devices FROM demo_sessions"
_TOKEN = "SELECT id, role, scope, label, revoked_ns IS NOT NULL FROM tokens"
_ONE_DEVICE = "cohort = ? AND learner = ? AND device = ?"
_OF_COHORT = "((role != 'learner' AND scope = ?) OR (role = 'learner' AND substr(scope, 1, ?) = ?))"


class Registry:
    """The registry file. Methods are small synchronous SQLite calls (well under a millisecond)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = open_registry(path)
        self._changes = 0

    def close(self) -> None:
        self._db.close()

    def version(self) -> tuple[int, int]:
        """Changes when anyone commits: other connections (data_version) or this one."""
        (data_version,) = self._db.execute("PRAGMA data_version").fetchone()
        return int(data_version), self._changes

    def _write(self, sql: str, args: tuple[object, ...] = ()) -> int:
        cursor = self._db.execute(sql, args)
        self._changes += 1
        return cursor.rowcount

    def _write_one(self, sql: str, args: tuple[object, ...], missing: str) -> None:
        """A change to one row that must be there: RegistryError(`missing`) if none was changed."""
        if not self._write(sql, args):
            raise RegistryError(missing)

    # Learners and cohorts -----------------------------------------------------------------------

    def ensure_learner(self, cohort: str, learner: str) -> None:
        now = time.time_ns()
        self._write("INSERT OR IGNORE INTO cohorts (cohort, created_ns) VALUES (?, ?)", (cohort, now))
        self._write(
            "INSERT OR IGNORE INTO learners (cohort, learner, created_ns) VALUES (?, ?, ?)", (cohort, learner, now)
        )

    def set_learner_account(self, cohort: str, learner: str) -> None:
        self.ensure_learner(cohort, learner)
        self._write("UPDATE learners SET has_account = 1 WHERE cohort = ? AND learner = ?", (cohort, learner))

    def learner(self, cohort: str, learner: str) -> LearnerRecord | None:
        row = self._db.execute(f"{_LEARNER} WHERE cohort = ? AND learner = ?", (cohort, learner)).fetchone()
        return _learner(row) if row else None

    def learners(self, cohort: str | None = None) -> list[LearnerRecord]:
        rows = self._db.execute(f"{_LEARNER} WHERE ? IS NULL OR cohort = ? ORDER BY cohort, learner", (cohort, cohort))
        return [_learner(r) for r in rows]

    def set_learner_enabled(self, cohort: str, learner: str, enabled: bool) -> None:
        self._write_one(
            "UPDATE learners SET enabled = ? WHERE cohort = ? AND learner = ?",
            (int(enabled), cohort, learner),
            f"no learner {cohort}/{learner} in the registry",
        )

    def remove_learner(self, cohort: str, learner: str) -> None:
        """The learner goes with everything that spoke for them: their tokens are revoked and their demo
        sessions forgotten, so a new learner of the same name inherits nothing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._write(
                "UPDATE tokens SET revoked_ns = ? WHERE role = 'learner' AND scope = ? AND revoked_ns IS NULL",
                (time.time_ns(), learner_key(cohort, learner)),
            )
            self._write("DELETE FROM demo_sessions WHERE cohort = ? AND learner = ?", (cohort, learner))
            self._write("DELETE FROM showcases WHERE cohort = ? AND learner = ?", (cohort, learner))
            self._write("DELETE FROM learners WHERE cohort = ? AND learner = ?", (cohort, learner))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def cohorts(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT cohort FROM cohorts ORDER BY cohort")]

    # Devices -------------------------------------------------------------------------------------

    def add_device(
        self, ref: DeviceRef, kind: str, profile: str | None, description: str = "", from_config: bool = False
    ) -> None:
        self.ensure_learner(ref.cohort, ref.learner)
        try:
            self._write(
                "INSERT INTO devices (cohort, learner, device, kind, profile, description, from_config, created_ns) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (ref.cohort, ref.learner, ref.device, kind, profile, description, int(from_config), time.time_ns()),
            )
        except sqlite3.IntegrityError:
            raise RegistryError(f"device {ref.key} is already registered") from None

    def update_device(self, ref: DeviceRef, kind: str, profile: str | None) -> None:
        self._write(f"UPDATE devices SET kind = ?, profile = ? WHERE {_ONE_DEVICE}", (kind, profile, *_where(ref)))

    def device(self, ref: DeviceRef) -> DeviceRecord | None:
        row = self._db.execute(f"{_DEVICE} WHERE {_ONE_DEVICE}", _where(ref)).fetchone()
        return _device(row) if row else None

    def devices(self, cohort: str | None = None) -> list[DeviceRecord]:
        rows = self._db.execute(
            f"{_DEVICE} WHERE ? IS NULL OR cohort = ? ORDER BY cohort, learner, device", (cohort, cohort)
        )
        return [_device(r) for r in rows]

    def learner_devices(self, cohort: str, learner: str) -> list[DeviceRecord]:
        return [d for d in self.devices(cohort) if d.ref.learner == learner]

    def set_device_enabled(self, ref: DeviceRef, enabled: bool) -> None:
        self._write_one(
            f"UPDATE devices SET enabled = ? WHERE {_ONE_DEVICE}",
            (int(enabled), *_where(ref)),
            f"no device {ref.key} in the registry",
        )

    def device_rotated(self, ref: DeviceRef) -> None:
        self._write(f"UPDATE devices SET rotated_ns = ? WHERE {_ONE_DEVICE}", (time.time_ns(), *_where(ref)))

    def remove_device(self, ref: DeviceRef) -> None:
        self._write_one(f"DELETE FROM devices WHERE {_ONE_DEVICE}", _where(ref), f"no device {ref.key} in the registry")

    # Demo sessions ---------------------------------------------------------------------------------

    def start_session(self, cohort: str, learner: str, trainer: str, now_ns: int | None = None) -> DemoSession:
        if self.learner(cohort, learner) is None:
            raise RegistryError(f"no learner {cohort}/{learner} in the registry")
        running = [s for s in self.sessions(cohort, learner) if s.running]
        if running:
            raise RegistryError(f"{cohort}/{learner} already has a demo running ({running[0].id}); stop it first")
        devices = tuple((d.ref.key, d.kind) for d in self.learner_devices(cohort, learner))
        session = DemoSession(
            secrets.token_hex(4), cohort, learner, trainer[:100], now_ns or time.time_ns(), None, devices
        )
        self._write(
            "INSERT INTO demo_sessions (id, cohort, learner, trainer, started_ns, devices) VALUES (?, ?, ?, ?, ?, ?)",
            (session.id, cohort, learner, session.trainer, session.started_ns, json.dumps(devices)),
        )
        return session

    def stop_session(self, session_id: str, now_ns: int | None = None) -> DemoSession:
        session = self.session(session_id)
        if session is None:
            raise RegistryError(f"no demo session {session_id!r}")
        if not session.running:
            raise RegistryError(f"demo session {session_id} was already stopped")
        stopped = now_ns or time.time_ns()
        self._write("UPDATE demo_sessions SET stopped_ns = ? WHERE id = ?", (stopped, session_id))
        return dataclasses.replace(session, stopped_ns=stopped)

    def session(self, session_id: str) -> DemoSession | None:
        row = self._db.execute(f"{_SESSION} WHERE id = ?", (session_id,)).fetchone()
        return _session(row) if row else None

    def sessions(self, cohort: str | None = None, learner: str | None = None) -> list[DemoSession]:
        rows = self._db.execute(
            f"{_SESSION} WHERE (? IS NULL OR cohort = ?) AND (? IS NULL OR learner = ?) ORDER BY started_ns DESC",
            (cohort, cohort, learner, learner),
        )
        return [_session(r) for r in rows]

    # Tokens ----------------------------------------------------------------------------------------

    def add_token(self, role: str, scope: str, label: str = "") -> tuple[Token, str]:
        """A new token; its secret is returned once and only its digest is kept."""
        scope = check_scope(role, scope)
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        token = Token(secrets.token_hex(4), role, scope, label[:100])
        self._write(
            "INSERT INTO tokens (id, digest, role, scope, label, created_ns) VALUES (?, ?, ?, ?, ?, ?)",
            (token.id, token_digest(secret), role, scope, token.label, time.time_ns()),
        )
        return token, secret

    def token_for(self, digest: str) -> Token | None:
        row = self._db.execute(
            "SELECT id, role, scope, label FROM tokens WHERE digest = ? AND revoked_ns IS NULL", (digest,)
        ).fetchone()
        return Token(*row) if row else None

    def tokens(self) -> list[Token]:
        return [_token(r) for r in self._db.execute(f"{_TOKEN} ORDER BY created_ns")]

    def token(self, token_id: str) -> Token | None:
        row = self._db.execute(f"{_TOKEN} WHERE id = ?", (token_id,)).fetchone()
        return _token(row) if row else None

    def revoke_token(self, token_id: str) -> None:
        self._write_one(
            "UPDATE tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL",
            (time.time_ns(), token_id),
            f"no active token {token_id!r}",
        )

    def cohort_tokens(self, cohort: str) -> list[Token]:
        """Tokens that speak for the cohort or one of its learners (not the lab-wide "*" ones)."""
        rows = self._db.execute(f"{_TOKEN} WHERE {_OF_COHORT} ORDER BY created_ns", _cohort_args(cohort))
        return [_token(r) for r in rows]

    def remove_cohort(self, cohort: str) -> dict[str, int]:
        """Every row of the cohort, in one transaction: its tokens (deleted, not revoked), demo sessions, devices,
        learners and the cohort itself. Rows removed, by table."""
        removed = {}
        self._db.execute("BEGIN IMMEDIATE")
        try:
            removed["tokens"] = self._write(f"DELETE FROM tokens WHERE {_OF_COHORT}", _cohort_args(cohort))
            for table in ("showcases", "demo_sessions", "devices", "learners", "cohorts"):
                removed[table] = self._write(f"DELETE FROM {table} WHERE cohort = ?", (cohort,))
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        return removed

    def active_tokens(self) -> Iterator[tuple[str, Token]]:
        """Tokens not revoked, by digest, but a disabled learner's: their apps stop with their account."""
        disabled = {learner.key for learner in self.learners() if not learner.enabled}
        for row in self._db.execute("SELECT digest, id, role, scope, label FROM tokens WHERE revoked_ns IS NULL"):
            token = Token(row[1], row[2], row[3], row[4])
            if not (token.role == "learner" and token.scope in disabled):
                yield row[0], token


def _cohort_args(cohort: str) -> tuple[str, int, str]:
    return cohort, len(cohort) + 1, f"{cohort}/"


def _where(ref: DeviceRef) -> tuple[str, str, str]:
    return ref.cohort, ref.learner, ref.device


def _learner(row: tuple[Any, ...]) -> LearnerRecord:
    return LearnerRecord(row[0], row[1], bool(row[2]), bool(row[3]))


def _token(row: tuple[Any, ...]) -> Token:
    return Token(row[0], row[1], row[2], row[3], bool(row[4]))


def _session(row: tuple[Any, ...]) -> DemoSession:
    session_id, cohort, learner, trainer, started_ns, stopped_ns, devices = row
    listed = tuple((str(k), str(v)) for k, v in json.loads(devices)) if devices else None
    return DemoSession(session_id, cohort, learner, trainer, started_ns, stopped_ns, listed)


def _device(row: tuple[object, ...]) -> DeviceRecord:
    cohort, learner, device, kind, profile, description, enabled, from_config, created_ns = row
    return DeviceRecord(
        DeviceRef(str(cohort), str(learner), str(device)),
        str(kind),
        str(profile) if profile else None,
        str(description),
        bool(enabled),
        bool(from_config),
        int(created_ns) if isinstance(created_ns, int) else 0,
    )
