"""Showcases in the registry file (its `showcases` table), through their own SQLite connection: the registry's
WAL mode lets the hub and a trainer's CLI share the file. The project's choices are one JSON `body` column, so a
new option needs no migration; the lifecycle (approval, public, expiry, revocation) has columns of its own."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from hub.access.schema import open_registry
from hub.showcase.model import Showcase, ShowcaseError, check_slug, new_key

_SELECT = "SELECT slug, cohort, learner, body, key_digest, created_ns, approved_ns, public, expires_ns, revoked_ns"


class ShowcaseStore:
    def __init__(self, path: Path) -> None:
        self._db = open_registry(path)

    def close(self) -> None:
        self._db.close()

    def add(self, showcase: Showcase) -> None:
        body = {
            "title": showcase.title,
            "description": showcase.description,
            "devices": list(showcase.devices),
            "plots": list(showcase.plots),
            "session": showcase.session,
            "start_ns": showcase.start_ns,
            "end_ns": showcase.end_ns,
            "show_grade": showcase.show_grade,
        }
        self._db.execute(
            "INSERT INTO showcases (slug, cohort, learner, body, key_digest, created_ns, approved_ns, public, "
            "expires_ns) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                showcase.slug,
                showcase.cohort,
                showcase.learner,
                json.dumps(body),
                showcase.key_digest,
                showcase.created_ns,
                showcase.approved_ns,
                int(showcase.public),
                showcase.expires_ns,
            ),
        )

    def get(self, slug: str) -> Showcase | None:
        row = self._db.execute(f"{_SELECT} FROM showcases WHERE slug = ?", (slug,)).fetchone()
        return _showcase(row) if row else None

    def list(self, cohort: str | None = None, learner: str | None = None) -> list[Showcase]:
        rows = self._db.execute(
            f"{_SELECT} FROM showcases WHERE (? IS NULL OR cohort = ?) AND (? IS NULL OR learner = ?) "
            "ORDER BY created_ns DESC",
            (cohort, cohort, learner, learner),
        )
        return [_showcase(r) for r in rows]

    def approve(self, slug: str, public: bool | None = None, expires_ns: int | None = None) -> Showcase:
        """The trainer's approval (again: change public or expiry). A revoked showcase stays revoked."""
        current = self._live(slug)
        self._db.execute(
            "UPDATE showcases SET approved_ns = COALESCE(approved_ns, ?), public = ?, expires_ns = ? WHERE slug = ?",
            (
                time.time_ns(),
                int(current.public if public is None else public),
                current.expires_ns if expires_ns is None else expires_ns,
                slug,
            ),
        )
        return self._live(slug)

    def rekey(self, slug: str) -> tuple[Showcase, str]:
        """A new share key in place of a lost one, and the key (shown once): the old link stops opening it, the
        approval and expiry stay. A revoked showcase stays revoked (checked in the update itself)."""
        self._live(slug)
        key, digest = new_key()
        changed = self._db.execute(
            "UPDATE showcases SET key_digest = ? WHERE slug = ? AND revoked_ns IS NULL", (digest, slug)
        ).rowcount
        if not changed:
            raise ShowcaseError(f"showcase {slug} was revoked; publish it again")
        return self._live(slug), key

    def revoke(self, slug: str) -> Showcase:
        self._live(slug)
        self._db.execute("UPDATE showcases SET revoked_ns = ? WHERE slug = ?", (time.time_ns(), slug))
        showcase = self.get(slug)
        assert showcase is not None
        return showcase

    def _live(self, slug: str) -> Showcase:
        showcase = self.get(check_slug(slug))
        if showcase is None:
            raise ShowcaseError(f"no showcase {slug!r}")
        if showcase.revoked_ns is not None:
            raise ShowcaseError(f"showcase {slug} was revoked; publish it again")
        return showcase


def _showcase(row: tuple[Any, ...]) -> Showcase:
    slug, cohort, learner, body, digest, created_ns, approved_ns, public, expires_ns, revoked_ns = row
    b = json.loads(body)
    return Showcase(
        slug,
        cohort,
        learner,
        str(b["title"]),
        str(b["description"]),
        tuple(b["devices"]),
        tuple(b["plots"]),
        b["session"],
        int(b["start_ns"]),
        int(b["end_ns"]),
        bool(b["show_grade"]),
        digest,
        created_ns,
        approved_ns,
        bool(public),
        expires_ns,
        revoked_ns,
    )
