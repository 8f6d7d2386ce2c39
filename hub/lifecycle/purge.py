"""`labhub cohort purge C`: every trace of an archived cohort leaves the lab, as GDPR asks at the end of a course.

In this order, so that a purge cut short (InfluxDB down, the broker gone) can simply be run again: the broker
accounts (its devices, their serial bridges, its learners, its read-only readers: disconnected at once), then its
points in InfluxDB (every measurement and retention policy: readings, rejections, presence, commands, diagnoses,
rollups), its retention policy and continuous query, then its registry rows (tokens, demo sessions, devices,
learners), its grade reports and passwords in the state dir. The registry goes last: it says what to remove.
Refused unless `hub.lifecycle.archive.check_archive` finds the archive whole.
"""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.access.accounts import Accounts
from hub.access.dynsec import (
    bridge_role,
    bridge_username,
    device_role,
    learner_role,
    learner_username,
    reader_role,
    reader_username,
)
from hub.adapters import influxql
from hub.credentials import CREDENTIALS_FILE, load_credentials, save_credentials
from hub.integrations.readers import list_readers
from hub.lifecycle.archive import check_archive

Query = Callable[[str], dict[str, Any]]  # one InfluxQL statement as influxd's admin → its JSON answer


class PurgeError(RuntimeError):
    """InfluxDB refused a statement of the purge."""


@dataclass(slots=True)
class Purged:
    cohort: str
    archive: Path
    points: int = 0
    accounts: int = 0
    rows: dict[str, int] = field(default_factory=dict)
    files: int = 0

    def lines(self) -> list[str]:
        rows = ", ".join(f"{n} {table}" for table, n in self.rows.items())
        return [
            f"cohort {self.cohort} purged (its archive: {self.archive})",
            f"  InfluxDB: {self.points} points (every measurement and retention policy), its policy and rollup query",
            f"  broker: {self.accounts} accounts (devices, serial bridges, learners, readers)",
            f"  registry: {rows}",
            f"  state dir: {self.files} files (grade reports, saved passwords)",
        ]


def _run(query: Query, statement: str) -> list[dict[str, Any]]:
    answer = query(statement)
    if "error" in answer:
        raise PurgeError(f"InfluxDB refused {statement!r}: {answer['error']}")
    results = answer.get("results")
    first = results[0] if isinstance(results, list) and results else {}
    return list(first.get("series", [])) if isinstance(first, dict) else []


def count_points(query: Query, database: str, cohort: str) -> int:
    """The cohort's points in every measurement of every retention policy of the database (each field counted
    once per point: the largest count of a series' fields)."""
    policies = [
        row[0] for s in _run(query, f"SHOW RETENTION POLICIES ON {influxql.ident(database)}") for row in s["values"]
    ]
    total = 0
    for policy in policies:
        source = f"{influxql.ident(database)}.{influxql.ident(policy)}./.*/"
        q = f"SELECT count(*) FROM {source} WHERE cohort = {influxql.string(cohort)}"
        for series in _run(query, q):
            total += max((int(v) for v in series["values"][0][1:] if v is not None), default=0)
    return total


def purge_influx(query: Query, database: str, cohort: str) -> int:
    """Drop the cohort's series (InfluxDB 1.x drops them from every retention policy), its policy and rollup
    query (both idempotent); the points there were before."""
    before = count_points(query, database, cohort)
    for statement in influxql.purge_statements(database, cohort):
        _run(query, statement)
    return before


async def purge_accounts(accounts: Accounts, cohort: str) -> int:
    """Delete the broker accounts of the cohort's devices, their bridges, its learners and its readers (a
    missing one is no error); how many were asked for."""
    registry = accounts.registry
    names = [(d.ref.key, device_role(d.ref)) for d in registry.devices(cohort)]
    names += [(bridge_username(d.ref), bridge_role(d.ref)) for d in registry.devices(cohort)]
    names += [(learner_username(cohort, r.learner), learner_role(cohort, r.learner)) for r in registry.learners(cohort)]
    for reader in await list_readers(accounts, cohort):
        names.append((reader, reader_role(cohort, reader.removeprefix(reader_username(cohort, "")))))
    async with accounts.broker() as sec:
        for username, role in names:
            await sec.remove(username, role)
    return len(names)


def purge_files(state_dir: Path, cohort: str) -> int:
    """`labhub grade`'s reports of the cohort (`reports/<cohort>-<date>-<time>/`) and its devices' passwords in
    the lab's credentials file."""
    removed = 0
    pattern = re.compile(re.escape(cohort) + r"-\d{8}-\d{6}")
    reports = state_dir / "reports"
    for folder in sorted(reports.iterdir()) if reports.is_dir() else ():
        if folder.is_dir() and pattern.fullmatch(folder.name):
            removed += sum(1 for p in folder.rglob("*") if p.is_file())
            shutil.rmtree(folder)
    saved = load_credentials(state_dir)
    kept = {user: pw for user, pw in saved.items() if not user.startswith(f"{cohort}/")}
    if len(kept) < len(saved):
        removed += 1
        (state_dir / CREDENTIALS_FILE).unlink()
        if kept:
            save_credentials(state_dir, kept)
    return removed


async def purge_cohort(accounts: Accounts, query: Query, database: str, state_dir: Path, cohort: str) -> Purged:
    """ArchiveError (nothing removed) unless the cohort's archive is whole; then everything, in the module's order."""
    done = Purged(cohort, check_archive(state_dir, cohort))
    done.accounts = await purge_accounts(accounts, cohort)
    done.points = await asyncio.to_thread(purge_influx, query, database, cohort)
    done.rows = accounts.registry.remove_cohort(cohort)
    done.files = purge_files(state_dir, cohort)
    return done
