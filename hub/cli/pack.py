"""`labhub export pack`: a learner's data pack (or one demo's) as a zip file, written from InfluxDB and the registry.

The `export` group (`hub.cli.export`) adds this subcommand with `add_pack_command`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from hub.access.records import RegistryError, check_learner
from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def add_pack_command(export_sub: Subparsers) -> None:
    p = lab_command(export_sub, "pack", "a learner's data pack (zip: CSVs, schema, grades, notebook)", cmd_pack)
    p.add_argument("learner", nargs="?", help="cohort/learner: all their data (or give --session)")
    p.add_argument("--session", help="one demo's pack: its window and devices")
    p.add_argument("--out", type=Path, help="the zip to write (default: ./pack-<cohort>-<learner>[-<session>].zip)")


def cmd_pack(args: argparse.Namespace) -> int:
    from hub.adapters.influx import lab_backend
    from hub.adapters.influx_read import ReadNotSupported
    from hub.datapack.pack import PackTarget, write_pack
    from hub.grading.rubrics import RubricError, load_rubrics

    if bool(args.learner) == bool(args.session):
        raise ConfigError("give a learner (cohort/learner) or --session ID, not both")
    cfg = configure(args)
    db = lab_backend(cfg)
    try:
        db.check_readable()
        rubrics = load_rubrics()
    except ReadNotSupported as err:
        raise ConfigError(str(err)) from None
    except RubricError as err:
        raise ConfigError(str(err)) from None
    registry = Registry(cfg.registry_path)
    try:
        if args.session:
            session = registry.session(args.session)
            if session is None:
                raise RegistryError(f"no demo session {args.session}")
            target = PackTarget.of_session(session)
        else:
            cohort, learner = check_learner(args.learner)
            if registry.learner(cohort, learner) is None:
                raise RegistryError(f"no learner {cohort}/{learner} in the registry")
            target = PackTarget(cohort, learner)
        out: Path = args.out or Path(f"{target.label}.zip")

        async def run() -> None:
            await db.start()
            try:
                summary = await write_pack(db, registry, target, out, rubrics)
            finally:
                await db.close()
            print(f"{out}: {summary.devices} device(s), {summary.grades} graded demo(s), {len(summary.files)} files")

        asyncio.run(run())
    finally:
        registry.close()
    return 0
