"""`labhub init`: an editable copy of the lab's config where the lab looks for it (see `find_config`)."""

from __future__ import annotations

import argparse
import re
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import EXAMPLE_CONFIG, ConfigError, parse_config, user_config_path

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    init = sub.add_parser("init", help="write an editable lab config (/etc/labhub as root, else ~/.config/labhub)")
    init.add_argument("--lan", action="store_true", help="serve devices and phones on the LAN, over TLS")
    init.add_argument("--to", type=Path, help="write it here instead")
    init.add_argument("--force", action="store_true", help="replace a config already there")
    init.set_defaults(func=cmd_init)


def initial_config(lan: bool) -> str:
    """The packaged example as the starting point, with the LAN section switched on when asked."""
    text = EXAMPLE_CONFIG.read_text()
    if lan:
        text, found = re.subn(r"(?m)^\[lan\]\nenabled = false", "[lan]\nenabled = true", text)
        if not found:
            raise ConfigError(f"{EXAMPLE_CONFIG}: no [lan] section with `enabled = false` to switch on")
    parse_config(tomllib.loads(text), str(EXAMPLE_CONFIG))  # what is written always loads
    return text


def cmd_init(args: argparse.Namespace) -> int:
    target: Path = args.to or user_config_path()
    if target.exists() and not args.force:
        print(f"{target} already exists: edit it, or pass --force to start again from the example")
        return 1
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(initial_config(args.lan))
    print(f"wrote {target}" + (" (LAN mode, TLS)" if args.lan else ""))
    print("edit it (cohorts, devices, ports), then: labhub up" + ("" if args.to is None else f" --config {target}"))
    return 0
