"""`labhub backup DIR` and `labhub restore DIR`: a course kept (readings, registry, secrets, broker accounts,
config) and brought back onto a fresh state directory. The work is `hub.ops.backup`'s."""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hub.cli.options import configure, lab_command
from hub.config import CONFIG_NAME
from hub.ops.backup import MANIFEST, BackupError, backup, restore

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

log = logging.getLogger("labhub")


def register(sub: Subparsers) -> None:
    saving = lab_command(sub, "backup", "copy the lab's readings, registry, secrets and config to a folder", cmd_backup)
    saving.add_argument("dir", type=Path, help="a new (or empty) folder")
    back = lab_command(sub, "restore", "restore a backup onto a fresh state directory", cmd_restore)
    back.add_argument("dir", type=Path, help=f"a folder `labhub backup` wrote (default config: its {CONFIG_NAME})")


def say(line: str) -> None:
    print(line, flush=True)


def cmd_backup(args: argparse.Namespace) -> int:
    cfg = configure(args)
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    try:
        manifest = backup(cfg, args.config, args.dir, say, now)
    except BackupError as err:
        log.error("labhub backup: %s", err)
        return 2
    rows = ", ".join(f"{table} {n}" for table, n in manifest.registry.items())
    say(f"backup written to {args.dir}: {', '.join(manifest.parts)} ({len(manifest.files)} files; registry: {rows})")
    say(f"restore it with: labhub restore {args.dir} --state-dir NEW_STATE_DIR")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    if not (args.dir / MANIFEST).is_file():
        log.error("labhub restore: %s is not a labhub backup (no %s in it)", args.dir, MANIFEST)
        return 2
    if args.config is None:
        args.config = args.dir / CONFIG_NAME  # the config the backup was taken with
    cfg = configure(args)
    try:
        restore(cfg, args.dir, say)
    except BackupError as err:
        log.error("labhub restore: %s", err)
        return 2
    say(
        f"restored into {cfg.state_dir}; start the lab with: labhub up --config {args.config} --state-dir {cfg.state_dir}"
    )
    return 0
