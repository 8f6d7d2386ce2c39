"""`labhub up` (the whole lab) and `labhub hub` (the hub alone, or one of its workers): options in, a plan out."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from hub.cli.options import configure, lab_options
from hub.config import LabConfig

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    up = sub.add_parser("up", help="run a whole lab: broker, database, hub and a simulated fleet")
    lab_options(up)
    up.add_argument("--sim-count", type=int, help="extra simulated air-quality sensors (cohort 'sim')")
    up.add_argument("--no-sim", action="store_true", help="no simulated devices")
    up.add_argument("--workers", type=int, default=1, help="hub workers sharing the telemetry load (default 1)")
    up.add_argument("--lan", action="store_true", help="serve boards and phones on the LAN over TLS (config: [lan])")
    up.set_defaults(func=cmd_up)

    hub = sub.add_parser("hub", help="run the hub alone, against a running broker and database")
    lab_options(hub)
    hub.add_argument("--sim-count", type=int, default=0, help="declare sim/learnerNN/aq1 devices, as `up` does")
    hub.add_argument("--worker", type=int, default=0, help="this worker's index (0-based)")
    hub.add_argument("--workers", type=int, default=1, help="how many workers share the load")
    hub.set_defaults(func=cmd_hub)


def cmd_up(args: argparse.Namespace) -> int:
    from hub.ops.fleet import sim_devices
    from hub.ops.lab import LabPlan, run_lab

    cfg = configure(args)
    if args.lan:
        cfg = dataclasses.replace(cfg, lan=dataclasses.replace(cfg.lan, enabled=True))
    extra = args.sim_count if args.sim_count is not None else cfg.sim.extra_air
    cfg = sim_devices(cfg, 0 if args.no_sim else extra)
    plan = LabPlan(
        cfg,
        simulated=() if args.no_sim else tuple(d for d in cfg.devices if d.simulate),
        whole_lab=True,
        extra_workers=tuple(worker_argv(args, cfg, i, extra) for i in range(1, max(1, args.workers))),
        workers=args.workers,
        own_process=True,
    )
    return asyncio.run(run_lab(plan))


def cmd_hub(args: argparse.Namespace) -> int:
    from hub.ops.fleet import sim_devices
    from hub.ops.lab import LabPlan, run_lab

    cfg = sim_devices(configure(args), args.sim_count)
    return asyncio.run(run_lab(LabPlan(cfg, workers=args.workers, worker=args.worker, own_process=True)))


def worker_argv(args: argparse.Namespace, cfg: LabConfig, worker: int, sim_count: int) -> tuple[str, ...]:
    """The command line of an extra worker process (`labhub hub`), with the same lab settings as this one."""
    return (
        sys.executable,
        "-m",
        "hub.cli",
        "hub",
        "--config",
        str(args.config),
        "--state-dir",
        str(cfg.state_dir),
        "--mqtt-port",
        str(cfg.mqtt.port),
        "--influx-port",
        str(urlparse(cfg.influx.url).port or 8086),
        "--http-port",
        str(cfg.hub.http_port),
        "--sim-count",
        str(0 if args.no_sim else sim_count),
        "--worker",
        str(worker),
        "--workers",
        str(args.workers),
        "--open" if cfg.hub.open_mode else "--closed",
    )
