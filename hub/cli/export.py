"""`labhub export device|learner|session|cohort`: readings out of InfluxDB as CSV or JSON Lines, to a file or to
standard output, streamed page by page (the same files as the HTTP API's `…/readings.csv`). Run on the lab's
machine by its operator: the registry and the database's own credentials, no API token."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from devices.topics import DeviceRef, TopicError
from hub.access.records import RegistryError, check_learner
from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.cli.pack import add_pack_command
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.cli.options import Subparsers
    from hub.exports import Selection, Target

EXPORTS = ("device", "learner", "session", "cohort")


def register(sub: Subparsers) -> None:
    export = sub.add_parser("export", help="readings as CSV or JSON Lines (a device, learner, demo or cohort)")
    export_sub = export.add_subparsers(required=True, metavar="WHAT")
    helps = {
        "device": ("one device's readings", "cohort/learner/device"),
        "learner": ("a learner's devices' readings", "cohort/learner"),
        "session": ("the devices of a demo, over its window (unless --from/--to)", "session id"),
        "cohort": ("every registered device of a cohort", "cohort"),
    }
    for what, (text, name) in helps.items():
        p = lab_command(export_sub, what, text, cmd_export, what=what)
        p.add_argument("which", metavar=what.upper(), help=name)
        p.add_argument("--from", dest="start", help="Unix seconds or ISO-8601 (default: a day before --to)")
        p.add_argument("--to", dest="end", help="Unix seconds or ISO-8601 (default: now)")
        p.add_argument("--every", help="downsample in InfluxDB: one row per interval (30s, 1m, 1h)")
        p.add_argument("--agg", choices=("mean", "min", "max"), default="mean", help="with --every (default mean)")
        p.add_argument("--format", choices=("csv", "jsonl"), default="csv")
        p.add_argument("-o", "--out", type=Path, help="file to write (default: standard output)")
    add_pack_command(export_sub)  # `labhub export pack`: hub.cli.pack


def selection_of(args: argparse.Namespace, registry: Registry, now_ns: int) -> Selection:
    """What the command line asks for, from the registry (ValueError, RegistryError: it names what is wrong)."""
    from hub.exports import Aggregate, Selection, parse_every, parse_window
    from hub.exports.scopes import cohort_targets, device_target, learner_targets, session_targets, session_window

    which: str = args.which
    window: tuple[int, int] | None = None
    targets: tuple[Target, ...]
    if args.what == "device":
        ref = DeviceRef.parse(which)
        target = device_target(registry, ref)
        if target is None:
            raise RegistryError(f"no device {which} is registered")
        targets, label = (target,), f"{ref.cohort}-{ref.learner}-{ref.device}"
    elif args.what == "learner":
        cohort, learner = check_learner(which)
        targets, label = learner_targets(registry, cohort, learner), f"{cohort}-{learner}"
    elif args.what == "session":
        session = registry.session(which)
        if session is None:
            raise RegistryError(f"no demo session {which}")
        targets, label = session_targets(registry, session), f"demo-{session.id}"
        window = session_window(session, now_ns)
    else:
        targets, label = cohort_targets(registry, which), which
    if not targets:
        raise RegistryError(f"{args.what} {which} has no registered device to export")
    if window is None or args.start or args.end:
        window = parse_window(args.start, args.end, now_ns)
    every = parse_every(args.every) if args.every else None
    return Selection(targets, window[0], window[1], every, Aggregate(args.agg), label)


def cmd_export(args: argparse.Namespace) -> int:
    from hub.adapters.influx import lab_backend
    from hub.adapters.influx_read import ReadNotSupported
    from hub.exports import write_csv, write_jsonl

    cfg = configure(args)
    registry = Registry(cfg.registry_path)
    try:
        selection = selection_of(args, registry, time.time_ns())
    except (ValueError, TopicError) as err:
        raise ConfigError(f"labhub export {args.what}: {err}") from None
    finally:
        registry.close()
    db = lab_backend(cfg)
    write = write_csv if args.format == "csv" else write_jsonl

    async def run(out: BinaryIO) -> int:
        await db.start()
        try:
            return await write(db, selection, out)
        finally:
            await db.close()

    try:
        if args.out is None:
            count = asyncio.run(run(sys.stdout.buffer))
        else:
            with args.out.open("wb") as out:
                count = asyncio.run(run(out))
    except ReadNotSupported as err:
        raise ConfigError(str(err)) from None
    print(f"{count} rows of {selection.label}" + (f" in {args.out}" if args.out else ""), file=sys.stderr)
    return 0
