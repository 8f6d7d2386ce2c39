"""`labhub showcase publish|approve|list|rekey|revoke`: learners' project pages, from the lab machine (the trainer's side:
what is published here is approved at once; learners publish over the API and wait for `approve`)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.config import ConfigError
from hub.showcase.model import ShowcaseError
from hub.showcase.publish import Request, publish
from hub.showcase.store import ShowcaseStore

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

DAY_NS = 86400 * 10**9


def register(sub: Subparsers) -> None:
    group = sub.add_parser("showcase", help="a learner's project at a read-only share link, for employers")
    show_sub = group.add_subparsers(required=True, metavar="ACTION")
    p = lab_command(show_sub, "publish", "publish (approved) a learner's project; prints its link once", cmd_showcase)
    p.set_defaults(action="publish")
    p.add_argument("learner", help="cohort/learner")
    p.add_argument("--title", required=True)
    p.add_argument("--description", type=Path, help="a Markdown file (raw HTML is shown as text)")
    p.add_argument("--session", help="the demo to replay (and the plots' window)")
    p.add_argument("--device", action="append", default=[], help="a device it uses (default: the demo's)")
    p.add_argument("--plot", action="append", default=[], help="device-id:field, up to 4")
    p.add_argument("--grade", action="store_true", help="the learner opted in: show the grade and the data pack")
    p.add_argument("--public", action="store_true", help="no key needed, listed on /demo-day/<cohort>, indexable")
    p.add_argument("--expires-days", type=float, help="410 Gone after this many days")
    a = lab_command(show_sub, "approve", "approve a learner's showcase (again: change public/expiry)", cmd_showcase)
    a.set_defaults(action="approve")
    a.add_argument("slug")
    a.add_argument("--public", action=argparse.BooleanOptionalAction, default=None)
    a.add_argument("--expires-days", type=float)
    lst = lab_command(show_sub, "list", "showcases and their state", cmd_showcase)
    lst.set_defaults(action="list")
    lst.add_argument("--cohort")
    k = lab_command(
        show_sub, "rekey", "a new link for a lost one (the old link answers 404); printed once", cmd_showcase
    )
    k.set_defaults(action="rekey")
    k.add_argument("slug")
    r = lab_command(show_sub, "revoke", "revoke a showcase: its link answers 404 from now on", cmd_showcase)
    r.set_defaults(action="revoke")
    r.add_argument("slug")


def _expiry(days: float | None) -> int | None:
    if days is None:
        return None
    if not 0 < days <= 3660:
        raise ConfigError("--expires-days must be between 0 and 3660")
    return time.time_ns() + int(days * DAY_NS)


def cmd_showcase(args: argparse.Namespace) -> int:
    cfg = configure(args)
    registry = Registry(cfg.registry_path)
    store = ShowcaseStore(cfg.registry_path)
    now = time.time_ns()
    try:
        if args.action == "publish":
            text = args.description.read_text() if args.description else ""
            req = Request(
                args.learner,
                args.title,
                text,
                tuple(args.device),
                tuple(args.plot),
                args.session,
                show_grade=args.grade,
                expires_ns=_expiry(args.expires_days),
            )
            showcase, key = publish(registry, store, req, approved=True)
            if args.public:
                showcase = store.approve(showcase.slug, public=True)
            link = f"/showcase/{showcase.slug}" if showcase.public else showcase.link(key)
            print(f"{showcase.slug}: published; link (shown once, on the hub's web address): {link}")
        elif args.action == "approve":
            showcase = store.approve(args.slug, args.public, _expiry(args.expires_days))
            print(f"{showcase.slug}: {showcase.state(now)}{', public' if showcase.public else ''}")
        elif args.action == "list":
            for s in store.list(args.cohort):
                extra = " public" if s.public else ""
                print(f"{s.slug:<40} {s.learner_key:<24} {s.state(now)}{extra}  {s.title[:40]}")
        elif args.action == "rekey":
            showcase, key = store.rekey(args.slug)
            print(f"{showcase.slug}: new link (shown once; the old one answers 404): {showcase.link(key)}")
        else:
            showcase = store.revoke(args.slug)
            print(f"{showcase.slug}: revoked (its link answers 404)")
    except ShowcaseError as err:
        raise ConfigError(str(err)) from None
    finally:
        store.close()
        registry.close()
    return 0
