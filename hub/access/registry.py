"""The lab's registry: cohorts, learners, devices and API tokens, in SQLite (one embedded file).

Several processes may use it at once (the hub, a trainer's `labhub device add`): SQLite's WAL mode and a busy
timeout make that safe, and `version()` changes whenever anyone commits, so the hub sees changes without a
restart. Tokens are stored as SHA-256 digests only (they are random 256-bit secrets; a slow hash adds nothing).
Pure checks (`parse_csv`, `check_device`) live here too; talking to the broker is `hub.dynsec`'s job.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import os
import secrets
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from devices.arm import DEFAULT_PROFILE
from devices.kinds import check_kind
from devices.topics import DeviceRef, TopicError, _check_segment

SCHEMA = """
CREATE TABLE IF NOT EXISTS cohorts (
    cohort TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS learners (
    cohort TEXT NOT NULL REFERENCES cohorts(cohort),
    learner TEXT NOT NULL,
    enabled INTEGER NOT NULL DEFAULT 1,
    has_account INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    PRIMARY KEY (cohort, learner)
);
CREATE TABLE IF NOT EXISTS devices (
    cohort TEXT NOT NULL,
    learner TEXT NOT NULL,
    device TEXT NOT NULL,
    kind TEXT NOT NULL,
    profile TEXT,
    description TEXT NOT NULL DEFAULT '',
    enabled INTEGER NOT NULL DEFAULT 1,
    from_config INTEGER NOT NULL DEFAULT 0,
    created_ns INTEGER NOT NULL,
    rotated_ns INTEGER,
    PRIMARY KEY (cohort, learner, device),
    FOREIGN KEY (cohort, learner) REFERENCES learners(cohort, learner)
);
CREATE TABLE IF NOT EXISTS demo_sessions (
    id TEXT PRIMARY KEY,
    cohort TEXT NOT NULL,
    learner TEXT NOT NULL,
    trainer TEXT NOT NULL,
    started_ns INTEGER NOT NULL,
    stopped_ns INTEGER
);
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    scope TEXT NOT NULL,
    label TEXT NOT NULL DEFAULT '',
    created_ns INTEGER NOT NULL,
    revoked_ns INTEGER
);
"""

ROLES = ("trainer", "learner", "viewer")
TOKEN_PREFIX = "lh_"


class RegistryError(ValueError):
    """A registry change that cannot be made as asked (unknown device, bad name, duplicate…)."""


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    ref: DeviceRef
    kind: str
    profile: str | None
    description: str
    enabled: bool
    from_config: bool
    created_ns: int = 0  # when it was registered: older data of that name belongs to someone else

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.ref.key,
            "kind": self.kind,
            "profile": self.profile,
            "description": self.description,
            "enabled": self.enabled,
            "username": self.ref.key,
        }


@dataclass(frozen=True, slots=True)
class LearnerRecord:
    cohort: str
    learner: str
    enabled: bool
    has_account: bool

    @property
    def key(self) -> str:
        return f"{self.cohort}/{self.learner}"


@dataclass(frozen=True, slots=True)
class Token:
    """Who an API token speaks for. `scope`: trainer/viewer → a cohort or "*"; learner → "cohort/learner"."""

    id: str
    role: str
    scope: str
    label: str
    revoked: bool = False

    def as_json(self) -> dict[str, object]:
        return {"id": self.id, "role": self.role, "scope": self.scope, "label": self.label, "revoked": self.revoked}


@dataclass(frozen=True, slots=True)
class DemoSession:
    """A learner's demonstration: the window that is graded, and the trainer who ran it."""

    id: str
    cohort: str
    learner: str
    trainer: str
    started_ns: int
    stopped_ns: int | None
    devices: tuple[tuple[str, str], ...] | None = None  # (device id, kind) when it started: what is graded

    @property
    def running(self) -> bool:
        return self.stopped_ns is None

    def as_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "learner": f"{self.cohort}/{self.learner}",
            "trainer": self.trainer,
            "started_ns": self.started_ns,
            "stopped_ns": self.stopped_ns,
            "running": self.running,
            "devices": [key for key, _ in self.devices or ()],
        }


@dataclass(frozen=True, slots=True)
class ImportLine:
    """One line of a cohort CSV: a learner, and optionally one of their devices."""

    cohort: str
    learner: str
    device: DeviceRef | None
    kind: str
    profile: str | None
    description: str


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_learner(key: str) -> tuple[str, str]:
    """`cohort/learner` → its two names, or RegistryError."""
    parts = key.split("/")
    if len(parts) != 2:
        raise RegistryError(f"learner id {key!r} must be cohort/learner")
    try:
        for part in parts:
            _check_segment(part)
    except TopicError as err:
        raise RegistryError(str(err)) from None
    return parts[0], parts[1]


def check_device(key: str, kind: str, profile: str | None, profiles: frozenset[str]) -> tuple[DeviceRef, str | None]:
    """Check a device as a trainer names it; arms get the default profile if none is given."""
    try:
        return DeviceRef.parse(key), check_kind(kind, profile, profiles, DEFAULT_PROFILE)
    except ValueError as err:  # TopicError is one too
        raise RegistryError(str(err)) from None


def check_scope(role: str, scope: str) -> str:
    if role not in ROLES:
        raise RegistryError(f"role {role!r} is not one of {', '.join(ROLES)}")
    if role == "learner":
        cohort, learner = check_learner(scope)
        return f"{cohort}/{learner}"
    if scope == "*":
        return scope
    try:
        _check_segment(scope)
    except TopicError as err:
        raise RegistryError(f"a {role} token's scope is a cohort or '*': {err}") from None
    return scope


CSV_COLUMNS = ("cohort", "learner", "device", "kind", "profile", "description")
MAX_CSV_BYTES = 1 << 20  # a cohort of 1,000 devices is ~50 KiB
MAX_CSV_LINES = 10_000
MAX_CSV_FIELD = 1_000  # characters in one cell (descriptions are kept to 200)
_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)} | {0x7F: None}


def decode_csv(data: bytes) -> str:
    """A cohort CSV's bytes as text: UTF-8 (a spreadsheet's BOM allowed), size-capped, no control characters."""
    if len(data) > MAX_CSV_BYTES:
        raise RegistryError(f"the CSV is {len(data)} bytes: at most {MAX_CSV_BYTES} (split the cohort)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RegistryError(
            f"line {line}: the CSV is not UTF-8 text (save it from the spreadsheet as 'CSV UTF-8')"
        ) from None
    return text


def _check_cell(where: str, text: str) -> None:
    if len(text) > MAX_CSV_FIELD:
        raise RegistryError(f"{where}: a cell of {len(text)} characters (at most {MAX_CSV_FIELD})")
    if text.translate(_CONTROL) != text:
        raise RegistryError(f"{where}: a control character in {text[:40].encode('unicode_escape').decode()!r}")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RegistryError(f"{where}: text that is not valid Unicode (a lone surrogate)") from None


def parse_csv(text: str, profiles: frozenset[str]) -> list[ImportLine]:
    """A cohort as a trainer writes it: a header with cohort,learner[,device,kind,profile,description], then
    one line per learner or device. Errors name the line; hostile text (control characters, lone surrogates,
    huge cells or files) is refused with a RegistryError, never another exception."""
    try:
        return _parse_csv(text, profiles)
    except csv.Error as err:
        raise RegistryError(f"the CSV cannot be read: {escape_text(str(err))}") from None


def escape_text(text: str) -> str:
    return text[:120].encode("unicode_escape", "backslashreplace").decode("ascii")


def _parse_csv(text: str, profiles: frozenset[str]) -> list[ImportLine]:
    if len(text) > MAX_CSV_BYTES:
        raise RegistryError(f"the CSV is too large (at most {MAX_CSV_BYTES} characters)")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True)
    for name in reader.fieldnames or []:
        _check_cell("line 1", name)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "cohort" not in header or "learner" not in header:
        raise RegistryError("the CSV needs a header line with at least: cohort,learner (then device,kind,…)")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise RegistryError(f"unknown CSV column(s) {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    lines = []
    for row in reader:
        where = f"line {reader.line_num}"
        if reader.line_num > MAX_CSV_LINES:
            raise RegistryError(f"{where}: at most {MAX_CSV_LINES} lines (split the cohort)")
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        for value in values.values():
            _check_cell(where, value)
        if not any(values.values()):
            continue
        try:
            cohort, learner = check_learner(f"{values.get('cohort', '')}/{values.get('learner', '')}")
            device = values.get("device", "")
            kind = values.get("kind", "") or "generic"
            ref, profile = (None, None)
            if device:
                ref, profile = check_device(
                    f"{cohort}/{learner}/{device}", kind, values.get("profile") or None, profiles
                )
        except RegistryError as err:
            raise RegistryError(f"{where}: {err}") from None
        lines.append(ImportLine(cohort, learner, ref, kind, profile, values.get("description", "")[:200]))
    if not lines:
        raise RegistryError("the CSV has no learners in it")
    return lines


class Registry:
    """The registry file. Methods are small synchronous SQLite calls (well under a millisecond)."""

    def __init__(self, path: Path) -> None:
        if not path.parent.exists():
            path.parent.mkdir(parents=True, mode=0o700)
        self.path = path
        # Private from the first byte: SQLite gives its -wal and -shm files the mode of the database file.
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        path.chmod(0o600)
        for suffix in ("-wal", "-shm", "-journal"):
            companion = path.with_name(path.name + suffix)
            if companion.exists():
                companion.chmod(0o600)
        self._db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(demo_sessions)")}
        if "devices" not in columns:  # a registry from before sessions kept their devices
            self._db.execute("ALTER TABLE demo_sessions ADD COLUMN devices TEXT")
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
        row = self._db.execute(
            "SELECT cohort, learner, enabled, has_account FROM learners WHERE cohort = ? AND learner = ?",
            (cohort, learner),
        ).fetchone()
        return LearnerRecord(row[0], row[1], bool(row[2]), bool(row[3])) if row else None

    def learners(self, cohort: str | None = None) -> list[LearnerRecord]:
        rows = self._db.execute(
            "SELECT cohort, learner, enabled, has_account FROM learners "
            "WHERE ? IS NULL OR cohort = ? ORDER BY cohort, learner",
            (cohort, cohort),
        )
        return [LearnerRecord(r[0], r[1], bool(r[2]), bool(r[3])) for r in rows]

    def set_learner_enabled(self, cohort: str, learner: str, enabled: bool) -> None:
        if not self._write(
            "UPDATE learners SET enabled = ? WHERE cohort = ? AND learner = ?", (int(enabled), cohort, learner)
        ):
            raise RegistryError(f"no learner {cohort}/{learner} in the registry")

    def remove_learner(self, cohort: str, learner: str) -> None:
        """The learner goes with everything that spoke for them: their tokens are revoked and their demo
        sessions forgotten, so a new learner of the same name inherits nothing."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._write(
                "UPDATE tokens SET revoked_ns = ? WHERE role = 'learner' AND scope = ? AND revoked_ns IS NULL",
                (time.time_ns(), f"{cohort}/{learner}"),
            )
            self._write("DELETE FROM demo_sessions WHERE cohort = ? AND learner = ?", (cohort, learner))
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
        self._write(
            "UPDATE devices SET kind = ?, profile = ? WHERE cohort = ? AND learner = ? AND device = ?",
            (kind, profile, ref.cohort, ref.learner, ref.device),
        )

    def device(self, ref: DeviceRef) -> DeviceRecord | None:
        row = self._db.execute(
            "SELECT cohort, learner, device, kind, profile, description, enabled, from_config, created_ns FROM devices "
            "WHERE cohort = ? AND learner = ? AND device = ?",
            (ref.cohort, ref.learner, ref.device),
        ).fetchone()
        return _device(row) if row else None

    def devices(self, cohort: str | None = None) -> list[DeviceRecord]:
        rows = self._db.execute(
            "SELECT cohort, learner, device, kind, profile, description, enabled, from_config, created_ns FROM devices "
            "WHERE ? IS NULL OR cohort = ? ORDER BY cohort, learner, device",
            (cohort, cohort),
        )
        return [_device(r) for r in rows]

    def set_device_enabled(self, ref: DeviceRef, enabled: bool) -> None:
        if not self._write(
            "UPDATE devices SET enabled = ? WHERE cohort = ? AND learner = ? AND device = ?",
            (int(enabled), ref.cohort, ref.learner, ref.device),
        ):
            raise RegistryError(f"no device {ref.key} in the registry")

    def device_rotated(self, ref: DeviceRef) -> None:
        self._write(
            "UPDATE devices SET rotated_ns = ? WHERE cohort = ? AND learner = ? AND device = ?",
            (time.time_ns(), ref.cohort, ref.learner, ref.device),
        )

    def remove_device(self, ref: DeviceRef) -> None:
        if not self._write(
            "DELETE FROM devices WHERE cohort = ? AND learner = ? AND device = ?", (ref.cohort, ref.learner, ref.device)
        ):
            raise RegistryError(f"no device {ref.key} in the registry")

    # Demo sessions ---------------------------------------------------------------------------------

    def start_session(self, cohort: str, learner: str, trainer: str, now_ns: int | None = None) -> DemoSession:
        if self.learner(cohort, learner) is None:
            raise RegistryError(f"no learner {cohort}/{learner} in the registry")
        running = [s for s in self.sessions(cohort, learner) if s.running]
        if running:
            raise RegistryError(f"{cohort}/{learner} already has a demo running ({running[0].id}); stop it first")
        devices = tuple((d.ref.key, d.kind) for d in self.devices(cohort) if d.ref.learner == learner)
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
        row = self._db.execute(
            "SELECT id, cohort, learner, trainer, started_ns, stopped_ns, devices FROM demo_sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        return _session(row) if row else None

    def sessions(self, cohort: str | None = None, learner: str | None = None) -> list[DemoSession]:
        rows = self._db.execute(
            "SELECT id, cohort, learner, trainer, started_ns, stopped_ns, devices FROM demo_sessions "
            "WHERE (? IS NULL OR cohort = ?) AND (? IS NULL OR learner = ?) ORDER BY started_ns DESC",
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
        rows = self._db.execute("SELECT id, role, scope, label, revoked_ns IS NOT NULL FROM tokens ORDER BY created_ns")
        return [Token(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def token(self, token_id: str) -> Token | None:
        row = self._db.execute(
            "SELECT id, role, scope, label, revoked_ns IS NOT NULL FROM tokens WHERE id = ?", (token_id,)
        ).fetchone()
        return Token(row[0], row[1], row[2], row[3], bool(row[4])) if row else None

    def revoke_token(self, token_id: str) -> None:
        if not self._write(
            "UPDATE tokens SET revoked_ns = ? WHERE id = ? AND revoked_ns IS NULL", (time.time_ns(), token_id)
        ):
            raise RegistryError(f"no active token {token_id!r}")

    def active_tokens(self) -> Iterator[tuple[str, Token]]:
        for row in self._db.execute("SELECT digest, id, role, scope, label FROM tokens WHERE revoked_ns IS NULL"):
            yield row[0], Token(row[1], row[2], row[3], row[4])


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
