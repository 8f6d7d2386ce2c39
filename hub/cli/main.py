"""The `labhub` command: the parser assembled from one module per command group, logging, and error exits.

`up` (the whole lab) and `hub` (the hub alone) are in `run`; `device`, `learner` and `cohort` in `accounts`;
`init` in `setup`; `service` in `service`; `backup` and `restore` in `backup`; `token` in `tokens`; `doctor` in `doctor`; `demo` and `grade` in `demos`; `showcase` in `showcase`; `export` in `export`; `influx reader` in `influx`; `serial-bridge` in `bridge`; `sim air|arm|serial` in `sim`.
"""

from __future__ import annotations

import argparse
import logging
import resource
from collections.abc import Sequence
from importlib.metadata import version

from hub.access.dynsec import DynsecError
from hub.access.records import RegistryError
from hub.adapters.influx import StorageError
from hub.cli import (
    accounts,
    backup,
    bridge,
    demos,
    doctor,
    export,
    influx,
    kit,
    replay,
    run,
    service,
    setup,
    showcase,
    sim,
    tokens,
)
from hub.config import ConfigError, ServiceError

log = logging.getLogger("labhub")

# in the order `labhub --help` lists them
GROUPS = (
    setup,
    run,
    service,
    backup,
    bridge,
    accounts,
    demos,
    replay,
    showcase,
    export,
    tokens,
    kit,
    influx,
    doctor,
    sim,
)
FD_CEILING = 1 << 20  # when the hard limit is "unlimited": the kernel's usual nr_open


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s " + worker_tag(args) + "%(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    raise_fd_limit()
    try:
        code: int = args.func(args)
    except* (ConfigError, ServiceError, RegistryError, DynsecError, StorageError) as group:
        for err in group.exceptions:
            log.error("%s", err)
        code = 2
    except* KeyboardInterrupt:
        code = 130
    return code


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="labhub", description="LabHub: the hub of an IoT maker lab")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top.add_argument("--version", action="version", version=f"labhub {version('labhub')}")
    sub = top.add_subparsers(required=True, metavar="COMMAND")
    for group in GROUPS:
        group.register(sub)
    return top


def worker_tag(args: argparse.Namespace) -> str:
    """Log lines of a lab with several hub workers say which worker wrote them."""
    return f"w{getattr(args, 'worker', 0)} " if getattr(args, "workers", 1) > 1 else ""


def raise_fd_limit() -> None:
    """Every socket (devices' MQTT traffic goes through one, but each live view and API client has its own) is a
    file descriptor: the soft limit (often 1,024) goes up to the hard limit, which needs no privilege."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FD_CEILING if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError) as err:
            log.warning("could not raise the open-files limit from %d to %d: %s", soft, target, err)
            return
        log.debug("open-files limit raised from %d to %d", soft, target)
