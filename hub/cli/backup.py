"""`labhub backup DIR` and `labhub restore DIR`: a course kept, readings, registry, secrets and config (being written)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    backup = sub.add_parser("backup", help="copy the lab's readings, registry, secrets and config to a folder")
    backup.set_defaults(func=cmd_backup)
    restore = sub.add_parser("restore", help="restore a backup onto a fresh state directory")
    restore.set_defaults(func=cmd_backup)


def cmd_backup(args: argparse.Namespace) -> int:
    raise SystemExit("labhub backup: not written yet")
