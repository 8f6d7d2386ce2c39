"""The registry's SQLite file: private from its first byte, in WAL mode, with its schema and migrations.

Several processes may open it at once (the hub, a trainer's `labhub device add`): WAL mode and a busy timeout
make that safe. A registry from an older version is brought up to date when it is opened.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

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
CREATE TABLE IF NOT EXISTS showcases (
    slug TEXT PRIMARY KEY,
    cohort TEXT NOT NULL,
    learner TEXT NOT NULL,
    body TEXT NOT NULL,
    key_digest TEXT NOT NULL,
    created_ns INTEGER NOT NULL,
    approved_ns INTEGER,
    public INTEGER NOT NULL DEFAULT 0,
    expires_ns INTEGER,
    revoked_ns INTEGER
);
"""


def open_registry(path: Path) -> sqlite3.Connection:
    """The registry file, made if missing; autocommit (transactions are explicit), usable from any thread."""
    if not path.parent.exists():
        path.parent.mkdir(parents=True, mode=0o700)
    # Private from the first byte: SQLite gives its -wal and -shm files the mode of the database file. Only made
    # here when missing: closing a descriptor of a file drops every POSIX lock this process holds on it, so an
    # open-and-close beside a live connection (the showcase store's, in the hub) made another process's SQLite
    # think it had the last connection and delete the WAL under the hub, which then never saw a change again.
    if not path.exists():
        with contextlib.suppress(FileExistsError):  # another process made it just now
            os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    path.chmod(0o600)
    for suffix in ("-wal", "-shm", "-journal"):
        companion = path.with_name(path.name + suffix)
        if companion.exists():
            companion.chmod(0o600)
    db = sqlite3.connect(path, isolation_level=None, timeout=10.0, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(SCHEMA)
    _migrate(db)
    return db


def _migrate(db: sqlite3.Connection) -> None:
    columns = {row[1] for row in db.execute("PRAGMA table_info(demo_sessions)")}
    if "devices" not in columns:  # a registry from before sessions kept their devices
        db.execute("ALTER TABLE demo_sessions ADD COLUMN devices TEXT")
