"""`labhub cohort archive C DIR` and `labhub cohort purge C`: the end of a course (`hub.lifecycle`).

`hub.cli.accounts` adds both to the `cohort` group with `add_lifecycle_commands`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def add_lifecycle_commands(cohort_sub: Subparsers) -> None:
    archive = lab_command(
        cohort_sub,
        "archive",
        "write a cohort's archive: every learner's data pack, grades, registry rows, checksums",
        cmd_archive,
    )
    archive.add_argument("cohort")
    archive.add_argument("dir", type=Path, help="a new or empty folder")
    purge = lab_command(
        cohort_sub,
        "purge",
        "remove an archived cohort: its points, accounts, tokens, registry rows",
        cmd_purge,
    )
    purge.add_argument("cohort")
    purge.add_argument("--yes", action="store_true", help="do it (without it, say what would go and stop)")


def cmd_archive(args: argparse.Namespace) -> int:
    from hub.adapters.influx import lab_backend
    from hub.adapters.influx_read import ReadNotSupported
    from hub.grading.rubrics import RubricError, load_rubrics
    from hub.lifecycle.archive import ArchiveError, archive_cohort

    cfg = configure(args)
    db = lab_backend(cfg)
    try:
        db.check_readable()
        rubrics = load_rubrics()
    except (ReadNotSupported, RubricError) as err:
        raise ConfigError(str(err)) from None
    registry = Registry(cfg.registry_path)

    async def run() -> Any:
        await db.start()
        try:
            return await archive_cohort(db, registry, args.cohort, args.dir, cfg.state_dir, rubrics)
        finally:
            await db.close()

    try:
        done = asyncio.run(run())
    except ArchiveError as err:
        raise ConfigError(str(err)) from None
    finally:
        registry.close()
    print(
        f"{args.dir}: cohort {args.cohort}: {done.packs} data pack(s), {done.graded} graded demo(s), {len(done.files)} files"
    )
    print(f"checksums in {args.dir}/MANIFEST.sha256; `labhub cohort purge {args.cohort}` may now remove the cohort")
    return 0


def cmd_purge(args: argparse.Namespace) -> int:
    from hub.access.accounts import Accounts
    from hub.adapters.influx_admin import admin_query
    from hub.cli.influx import admin_of
    from hub.lifecycle.archive import ArchiveError, check_archive
    from hub.lifecycle.purge import PurgeError, purge_cohort

    cfg = configure(args)
    admin = admin_of(cfg)  # InfluxDB 1.x only: DROP SERIES needs its admin
    registry = Registry(cfg.registry_path)
    try:
        folder = check_archive(cfg.state_dir, args.cohort)
        if not args.yes:
            learners, devices = len(registry.learners(args.cohort)), len(registry.devices(args.cohort))
            print(f"cohort {args.cohort} is archived in {folder} (checked); a purge removes its {learners} learner(s),")
            print(f"{devices} device(s), their accounts, tokens and demos, and every point of it in InfluxDB.")
            print(f"Run `labhub cohort purge {args.cohort} --yes` to do it.")
            return 1
        if cfg.retention.get(args.cohort) or any(d.ref.cohort == args.cohort for d in cfg.devices):
            print(f"note: the config still names cohort {args.cohort} ([cohorts.*] or [[devices]]): remove it there")
        accounts = Accounts.for_lab(cfg, registry)
        done = asyncio.run(
            purge_cohort(
                accounts,
                lambda q: admin_query(admin.url, q, admin.auth, admin.database),
                admin.database,
                cfg.state_dir,
                args.cohort,
            )
        )
    except (ArchiveError, PurgeError) as err:
        raise ConfigError(str(err)) from None
    finally:
        registry.close()
    print("\n".join(done.lines()))
    return 0
