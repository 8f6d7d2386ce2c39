"""`labhub demo start|stop|list` (the windows that are graded) and `labhub grade` (tables and report files)."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.access.records import RegistryError, check_learner
from hub.access.registry import Registry
from hub.cli.options import configure, lab_command
from hub.config import ConfigError

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

SETTLE_NS = 2_000_000_000  # the hub writes within milliseconds; what it accepted last gets a moment to land


def register(sub: Subparsers) -> None:
    demo = sub.add_parser("demo", help="demo sessions: the windows that are graded")
    demo_sub = demo.add_subparsers(required=True, metavar="ACTION")
    start = lab_command(demo_sub, "start", "start a learner's demo now", cmd_demo, action="start")
    start.add_argument("learner", help="cohort/learner")
    start.add_argument("--trainer", default=getpass.getuser(), help="who runs it (default: your login)")
    stop = lab_command(demo_sub, "stop", "stop a demo (by id, or the learner's running one)", cmd_demo, action="stop")
    stop.add_argument("which", help="session id, or cohort/learner")
    lab_command(demo_sub, "list", "past and running demos", cmd_demo, action="list").add_argument("--cohort")

    grade = lab_command(sub, "grade", "grade demos from InfluxDB: print a table, write HTML, CSV and JSON", cmd_grade)
    grade.add_argument("--cohort", required=True)
    grade.add_argument("--learner", help="one learner (default: every learner with a demo)")
    grade.add_argument("--session", help="one session id (default: each learner's latest finished demo)")
    grade.add_argument("--out", type=Path, help="where to write the reports (default: <state_dir>/reports/…)")


def cmd_demo(args: argparse.Namespace) -> int:
    cfg = configure(args)
    registry = Registry(cfg.registry_path)
    try:
        if args.action == "start":
            cohort, learner = check_learner(args.learner)
            session = registry.start_session(cohort, learner, args.trainer)
            print(f"demo {session.id} started for {cohort}/{learner} by {session.trainer}")
        elif args.action == "stop":
            which: str = args.which
            if "/" in which:
                cohort, learner = check_learner(which)
                running = [s for s in registry.sessions(cohort, learner) if s.running]
                if not running:
                    raise RegistryError(f"{which} has no demo running")
                which = running[0].id
            session = registry.stop_session(which)
            assert session.stopped_ns is not None
            print(
                f"demo {session.id} of {session.cohort}/{session.learner} stopped after "
                f"{(session.stopped_ns - session.started_ns) / 1e9:.0f} s; grade it with: "
                f"labhub grade --cohort {session.cohort} --learner {session.learner}"
            )
        else:
            for s in registry.sessions(args.cohort):
                end = "running" if s.running else f"{((s.stopped_ns or 0) - s.started_ns) / 1e9:.0f} s"
                started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.started_ns / 1e9))
                print(f"{s.id}  {s.cohort}/{s.learner:20} {started}  {end:>9}  {s.trainer}")
    finally:
        registry.close()
    return 0


def cmd_grade(args: argparse.Namespace) -> int:
    """Grade demos from what InfluxDB holds; print a table and write the reports."""
    from hub.adapters.influx import lab_backend
    from hub.adapters.influx_read import ReadNotSupported
    from hub.grading.reports import grade_session, sessions_to_grade, table, write_reports
    from hub.grading.rubrics import RubricError, load_rubrics

    cfg = configure(args)
    db = lab_backend(cfg)
    try:
        db.check_readable()
    except ReadNotSupported as err:
        raise ConfigError(f"{err} (influx.backend = 'v1')") from None
    try:
        rubrics = load_rubrics()
    except RubricError as err:
        raise ConfigError(str(err)) from None
    registry = Registry(cfg.registry_path)
    try:
        sessions = sessions_to_grade(registry, args.cohort, args.learner, args.session)
        if args.session and sessions and sessions[0].cohort != args.cohort:
            raise RegistryError(f"demo {args.session} is in cohort {sessions[0].cohort}, not {args.cohort}")
        if not sessions:
            raise RegistryError(
                f"no demo to grade in cohort {args.cohort}"
                + (f" for {args.learner}" if args.learner else "")
                + " (start one with `labhub demo start cohort/learner`)"
            )

        async def run() -> list[Any]:
            await db.start()
            try:
                return [await grade_session(db, registry, s, rubrics) for s in sessions]
            finally:
                await db.close()

        settle = max((s.stopped_ns or 0) for s in sessions) + SETTLE_NS - time.time_ns()
        if settle > 0:
            time.sleep(settle / 1e9)
        reports = asyncio.run(run())
        out = args.out or cfg.state_dir / "reports" / f"{args.cohort}-{time.strftime('%Y%m%d-%H%M%S')}"
        written = write_reports(out, args.cohort, reports, rubrics)
    finally:
        registry.close()
    print(table(reports))
    print(f"reports: {out}/ ({', '.join(p.name for p in written)})")
    return 0
