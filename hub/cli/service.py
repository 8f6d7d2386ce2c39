"""`labhub service install|status|uninstall`: the lab as a systemd service (the unit itself: `hub.ops.systemd`).

`install` writes the unit, reloads systemd, enables it and (re)starts the lab; where systemd is not running (a
container, CI) it still writes the unit and prints what to run later. `--unit-dir` only writes the file there and
touches nothing else on the machine (no account, no systemctl): for packaging and for tests.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import shlex
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING

from hub.config import EXAMPLE_CONFIG, env_overrides, find_config, load_config
from hub.ops.systemd import (
    SERIAL_GROUP,
    SERVICE_ACCOUNT,
    UNIT_NAME,
    UnitSpec,
    account_exists,
    create_account,
    group_exists,
    later,
    manager_missing,
    systemctl,
    unit_dir,
    unit_text,
    unreadable_by_others,
    wants_link,
    write_unit,
)

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

log = logging.getLogger("labhub")

PACKAGES = ("hub", "devices", "firmware_sim", "labhub_config")  # what `labhub up` imports from this project


def register(sub: Subparsers) -> None:
    service = sub.add_parser("service", help="run the lab as a systemd service: install, status, uninstall")
    actions = service.add_subparsers(required=True, metavar="ACTION")
    install = actions.add_parser("install", help="write and enable a unit that runs `labhub up --no-sim`")
    install.add_argument("--config", type=Path, help="the lab's config (default: as `labhub up` finds it)")
    install.add_argument("--state-dir", type=Path, help="where the lab keeps its data (default: the config's)")
    install.add_argument("--no-enable", action="store_true", help="write the unit and reload systemd, start nothing")
    install.add_argument(
        "--run-as",
        default=SERVICE_ACCOUNT,
        metavar="ACCOUNT",
        help=f"system unit's account (default {SERVICE_ACCOUNT}, made if missing; root if it cannot read the code)",
    )
    status = actions.add_parser("status", help="is the lab's service installed, enabled, running")
    uninstall = actions.add_parser("uninstall", help="stop and disable the service, remove its unit (data stays)")
    for action, p in (("install", install), ("status", status), ("uninstall", uninstall)):
        p.add_argument("--user", action="store_true", help="a unit of your own systemd (~/.config/systemd/user)")
        p.add_argument("--unit-dir", type=Path, help="the unit file here, and nothing else done (no systemctl)")
        p.set_defaults(func=cmd_service, action=action)


def cmd_service(args: argparse.Namespace) -> int:
    return {"install": install, "status": status, "uninstall": uninstall}[args.action](args)


def labhub_command(argv0: str = sys.argv[0], python: str = sys.executable) -> tuple[str, ...]:
    """The command that runs this very `labhub`: its script when it was started as one, else this interpreter with
    `-m hub.cli` (not resolved: a virtualenv's python is a symlink, and only its own path finds the venv)."""
    script = Path(argv0)
    if script.name == "labhub" and script.is_file() and os.access(script, os.X_OK):
        return (str(script.absolute()),)
    return (str(Path(python).absolute()), "-m", "hub.cli")


def needed_paths(command: tuple[str, ...], config: Path) -> list[Path]:
    """What the service's account must read: the command, the interpreter and its libraries, our code, the config."""
    paths = [Path(command[0]), Path(sys.executable), Path(sysconfig.get_paths()["stdlib"])]
    paths.append(Path(sysconfig.get_paths()["purelib"]))
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is not None and spec.origin:
            paths.append(Path(spec.origin).parent)
    return [*paths, config]


def choose_account(args: argparse.Namespace, command: tuple[str, ...], config: Path, state_dir: Path) -> str:
    """The dedicated account where it can work, else "" (root), saying why."""
    if args.run_as == "root":
        return ""
    unreadable = unreadable_by_others(needed_paths(command, config))
    if unreadable:
        shown = ", ".join(str(p) for p in unreadable[:3])
        print(
            f"runs as root: another account than root cannot read {shown}. For a dedicated '{args.run_as}' "
            "account, install LabHub where every account may read it (e.g. a clone and its .venv under /opt, "
            "with Debian's python3) and the config, then install the service again"
        )
        return ""
    if account_exists(args.run_as) or args.unit_dir is not None:
        return str(args.run_as)
    why = create_account(args.run_as, state_dir)
    if why is not None:
        print(f"runs as root: could not make the account '{args.run_as}': {why}")
        return ""
    print(f"made the system account '{args.run_as}' (no login; its home is {state_dir})")
    return str(args.run_as)


def install(args: argparse.Namespace) -> int:
    only_write = args.unit_dir is not None
    if not (only_write or args.user or os.geteuid() == 0):
        print(f"a system service needs root: `sudo {shlex.join(labhub_command())} service install`, or --user")
        return 1
    config = find_config(args.config).absolute()
    if config == EXAMPLE_CONFIG.absolute():
        print(
            f"no lab config of yours yet: the service runs the packaged demo config {config}. "
            "Run `labhub init`, edit it, and install the service again"
        )
    state_dir = (args.state_dir or env_overrides(load_config(config)).state_dir).absolute()
    command = labhub_command()
    account = "" if args.user else choose_account(args, command, config, state_dir)
    groups = (SERIAL_GROUP,) if account and group_exists(SERIAL_GROUP) else ()
    spec = UnitSpec(command, config, state_dir, user_unit=args.user, account=account, groups=groups)
    path = (args.unit_dir or unit_dir(args.user)) / UNIT_NAME
    try:
        write_unit(path, unit_text(spec))
    except OSError as err:
        print(f"could not write {path}: {err.strerror}")
        return 1
    print(
        f"wrote {path}: `labhub up --no-sim` as {account or ('you' if args.user else 'root')}, "
        f"config {config}, data in {state_dir}"
    )
    if only_write:
        return 0
    steps = [("daemon-reload",)] + ([] if args.no_enable else [("enable", UNIT_NAME), ("restart", UNIT_NAME)])
    why = manager_missing(args.user)
    if why is not None:
        print(f"{why}, so nothing was started. Where systemd runs: {later(args.user, steps)}")
        return 0
    for step in steps:
        done = systemctl(args.user, *step)
        if done.returncode != 0:
            print(f"`{shlex.join(done.args)}` failed: {done.stderr.strip()}")
            return 1
    if args.no_enable:
        print(f"not enabled (--no-enable): {later(args.user, [('enable', '--now', UNIT_NAME)])}")
        return 0
    journal = "journalctl " + ("--user-unit" if args.user else "-u")
    print(
        f"enabled and (re)started: `labhub service status{' --user' if args.user else ''}`; "
        f"its log: `{journal} labhub -f`"
    )
    if args.user:
        print("to keep it running after you log out and start it at boot: `loginctl enable-linger`")
    return 0


def status(args: argparse.Namespace) -> int:
    path = (args.unit_dir or unit_dir(args.user)) / UNIT_NAME
    if not path.is_file():
        print(f"not installed: no {path}")
        return 1
    if args.unit_dir is not None:
        print(f"installed: {path} (--unit-dir: systemd is not asked)")
        return 0
    why = manager_missing(args.user)
    if why is not None:
        print(f"installed: {path}; {why}, so whether the lab runs cannot be told")
        return 1
    return systemctl(args.user, "status", "--no-pager", UNIT_NAME, capture=False).returncode


def uninstall(args: argparse.Namespace) -> int:
    path = (args.unit_dir or unit_dir(args.user)) / UNIT_NAME
    managed = args.unit_dir is None
    why = manager_missing(args.user) if managed else None
    if managed and why is None:
        done = systemctl(args.user, "disable", "--now", UNIT_NAME)
        if done.returncode != 0 and path.exists():
            print(f"`{shlex.join(done.args)}` failed: {done.stderr.strip()}")
            return 1
    kept = path.read_text() if path.is_file() else ""
    try:
        path.unlink()
    except FileNotFoundError:
        print(f"not installed: no {path}")
    except OSError as err:
        print(f"could not remove {path}: {err.strerror}")
        return 1
    else:
        print(f"removed {path}")
    if managed and why is None:
        systemctl(args.user, "daemon-reload")
    elif kept:  # systemd cannot disable it: its enable link goes too, or it would dangle
        link = wants_link(path.parent, args.user)
        if link.is_symlink():
            link.unlink()
            print(f"removed {link}")
        if managed:
            print(f"{why}: nothing to stop")
    if kept:
        print(kept_note(kept))
    return 0


def kept_note(unit: str) -> str:
    """What uninstall leaves on purpose: the lab's data, and the account that owns it."""
    state_dir, account = "", ""
    for line in unit.splitlines():
        key, _, value = line.partition("=")
        if key == "ExecStart":
            words = [w.replace("%%", "%").replace("$$", "$") for w in shlex.split(value)]
            state_dir = words[words.index("--state-dir") + 1] if "--state-dir" in words else ""
        elif key == "User":
            account = value
    note = f"kept: the lab's data in {state_dir or 'its state dir'}"
    return note + (f", and the account '{account}' (`userdel {account}` removes it)" if account else "")
