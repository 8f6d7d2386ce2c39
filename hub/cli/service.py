"""`labhub service install|status|uninstall`: the lab as a systemd service (being written)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    service = sub.add_parser("service", help="run the lab as a systemd service: install, status, uninstall")
    service.set_defaults(func=cmd_service)


def cmd_service(args: argparse.Namespace) -> int:
    raise SystemExit("labhub service: not written yet")
