"""`labhub device|learner|cohort …`: the registry and the broker's accounts, changed together.

Passwords go to stdout once; logs never carry them.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from hub.access.accounts import Accounts
from hub.access.cohort_csv import MAX_CSV_BYTES, decode_csv, parse_csv
from hub.access.records import RegistryError
from hub.access.registry import Registry
from hub.cli.lifecycle import add_lifecycle_commands
from hub.cli.options import configure, lab_command
from hub.config import ARM_PROFILES
from hub.integrations.readers import add_reader, list_readers, remove_reader

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    device = sub.add_parser("device", help="the registry's devices and their broker accounts")
    device_sub = device.add_subparsers(required=True, metavar="ACTION")
    add = lab_command(
        device_sub, "add", "register a device; prints its broker password once", cmd_accounts, action="device_add"
    )
    add.add_argument("id", help="cohort/learner/device")
    add.add_argument("--kind", default="generic", help="air_quality, arm or generic (default)")
    add.add_argument("--profile", help="arms: a profile from config/arms (default mearm)")
    add.add_argument("--description", default="")
    listing = lab_command(device_sub, "list", "registered devices", cmd_accounts, action="device_list")
    listing.add_argument("--cohort")
    _id_actions(
        device_sub,
        "device",
        "cohort/learner/device",
        (
            ("disable", "cut a device off the broker at once"),
            ("enable", "let a disabled device connect again"),
            ("rotate", "a new password (printed once); the old one stops working"),
            ("remove", "forget a device and delete its account (its data stays in InfluxDB)"),
        ),
    )

    learner = sub.add_parser("learner", help="learners and their own MQTT accounts (for MQTT phone apps)")
    learner_sub = learner.add_subparsers(required=True, metavar="ACTION")
    _id_actions(
        learner_sub,
        "learner",
        "cohort/learner",
        (
            ("add", "give a learner an MQTT account; prints its password once"),
            ("disable", "cut off a learner's account and all their devices"),
            ("enable", "let a learner and their devices connect again"),
            ("rotate", "a new password for the learner's account (printed once)"),
            ("remove", "forget a learner, their devices and their accounts"),
        ),
    )
    lab_command(learner_sub, "list", "registered learners", cmd_accounts, action="learner_list").add_argument(
        "--cohort"
    )

    cohort = sub.add_parser("cohort", help="whole cohorts")
    cohort_sub = cohort.add_subparsers(required=True, metavar="ACTION")
    imp = lab_command(
        cohort_sub,
        "import",
        "import a CSV: cohort,learner[,device,kind,profile,description]",
        cmd_accounts,
        action="cohort_import",
    )
    imp.add_argument("csv", type=Path)
    imp.add_argument("--no-learner-accounts", action="store_true", help="devices only, no learner MQTT accounts")
    add_lifecycle_commands(cohort_sub)
    reader = cohort_sub.add_parser("reader", help="read-only MQTT accounts (Home Assistant, Node-RED) of a cohort")
    reader_sub = reader.add_subparsers(required=True, metavar="ACTION")
    for name, text in (("add", "a read-only account; prints its password once"), ("remove", "delete one")):
        one = lab_command(reader_sub, name, text, cmd_accounts, action=f"reader_{name}")
        one.add_argument("cohort")
        one.add_argument("name", help="what reads, e.g. home-assistant")
    lab_command(reader_sub, "list", "read-only accounts", cmd_accounts, action="reader_list").add_argument(
        "cohort", nargs="?"
    )


def _id_actions(group: Subparsers, kind: str, id_help: str, actions: tuple[tuple[str, str], ...]) -> None:
    """Subcommands that take one id and differ only in what they do (`action` = `<kind>_<name>`)."""
    for name, text in actions:
        lab_command(group, name, text, cmd_accounts, action=f"{kind}_{name}").add_argument("id", help=id_help)


def cmd_accounts(args: argparse.Namespace) -> int:
    cfg = configure(args)
    registry = Registry(cfg.registry_path)
    accounts = Accounts.for_lab(cfg, registry)
    action: str = args.action
    try:
        if action == "device_list":
            for d in registry.devices(args.cohort):
                state = "enabled" if d.enabled else "DISABLED"
                print(f"{d.ref.key:40} {d.kind:12} {d.profile or '':8} {state:8} {d.description}")
        elif action == "learner_list":
            for learner in registry.learners(args.cohort):
                account = "mqtt account" if learner.has_account else "no mqtt account"
                print(f"{learner.key:30} {'enabled' if learner.enabled else 'DISABLED':8} {account}")
        elif action == "cohort_import":
            _import_cohort(accounts, args)
        elif action.startswith("reader_"):
            print(asyncio.run(_reader(accounts, action, args)))
        else:
            print(asyncio.run(_change(accounts, action, args)))
    finally:
        registry.close()
    return 0


def _import_cohort(accounts: Accounts, args: argparse.Namespace) -> None:
    try:
        with open(args.csv, "rb") as fh:
            data = fh.read(MAX_CSV_BYTES + 1)  # a huge file is refused without reading it all
    except OSError as err:
        raise RegistryError(f"{args.csv}: cannot read: {err.strerror}") from None
    try:
        lines = parse_csv(decode_csv(data), frozenset(ARM_PROFILES))
    except RegistryError as err:
        raise RegistryError(f"{args.csv}: {err}") from None
    made = asyncio.run(accounts.import_lines(lines, learner_accounts=not args.no_learner_accounts))
    print(f"{len(lines)} lines read, {len(made)} new accounts (passwords shown once):")
    print("username,password")
    for c in made:
        print(f"{c.username},{c.password}")


async def _reader(accounts: Accounts, action: str, args: argparse.Namespace) -> str:
    if action == "reader_list":
        return "\n".join(await list_readers(accounts, args.cohort)) or "no read-only accounts"
    if action == "reader_remove":
        await remove_reader(accounts, args.cohort, args.name)
        return f"read-only account {args.name} of cohort {args.cohort} removed (disconnected at once)"
    c = await add_reader(accounts, args.cohort, args.name)
    return (
        f"read-only account for cohort {args.cohort} (telemetry, status, Home Assistant discovery; shown once):\n"
        f"  username: {c.username}\n  password: {c.password}"
    )


async def _change(accounts: Accounts, action: str, args: argparse.Namespace) -> str:
    """One change to a device's or a learner's account; what to print."""
    key: str = args.id
    if action == "device_add":
        c = await accounts.add_device(key, args.kind, args.profile, args.description)
        return f"device {key} registered. Its broker account (shown once):\n  username: {c.username}\n  password: {c.password}"
    if action in ("device_rotate", "learner_rotate", "learner_add"):
        call = {
            "device_rotate": accounts.rotate_device,
            "learner_rotate": accounts.rotate_learner,
            "learner_add": accounts.add_learner,
        }[action]
        c = await call(key)
        return f"{key}: broker account (shown once):\n  username: {c.username}\n  password: {c.password}"
    if action in ("device_disable", "device_enable"):
        await accounts.set_device_enabled(key, action == "device_enable")
        return f"device {key} {'enabled' if action == 'device_enable' else 'disabled and disconnected'}"
    if action in ("learner_disable", "learner_enable"):
        await accounts.set_learner_enabled(key, action == "learner_enable")
        return f"learner {key} and their devices {'enabled' if action == 'learner_enable' else 'disabled'}"
    if action == "device_remove":
        await accounts.remove_device(key)
        return f"device {key} removed"
    if action == "learner_remove":
        await accounts.remove_learner(key)
        return f"learner {key} removed, with their devices"
    raise RegistryError(f"unknown action {action}")
