"""`labhub serial-bridge`: USB-serial boards bridged to their lab devices until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import TYPE_CHECKING

from devices.serial_protocols import PROTOCOLS
from devices.topics import DeviceRef
from hub.cli.options import configure, lab_options
from hub.config import ConfigError, LabConfig, SerialConfig
from hub.credentials import read_secret

if TYPE_CHECKING:
    from hub.cli.options import Subparsers


def register(sub: Subparsers) -> None:
    bridge = sub.add_parser("serial-bridge", help="bridge USB-serial boards to lab devices")
    lab_options(bridge)
    bridge.add_argument("--port", help="serial port (e.g. /dev/ttyUSB0); default: the config's [[serial]] entries")
    bridge.add_argument("--device", help="the lab device it is: cohort/learner/device (registered)")
    bridge.add_argument("--protocol", default="lines", choices=PROTOCOLS)
    bridge.add_argument("--baud", type=int, help="default 115200 for lines, 9600 for sds011")
    bridge.add_argument(
        "--password-file",
        type=Path,
        help="log in as bridge/<device> with this password "
        "(default: make the bridge's account with the lab's broker admin)",
    )
    bridge.set_defaults(func=cmd_serial_bridge)


def cmd_serial_bridge(args: argparse.Namespace) -> int:
    """Bridge the named port, or every [[serial]] entry of the config, until Ctrl-C."""
    cfg = configure(args)
    password = None
    ports = bridged_ports(args, cfg)
    if args.password_file:
        password = read_secret(args.password_file)
        if password is None:
            raise ConfigError(f"{args.password_file}: no password in it")
    return asyncio.run(_run_bridges(cfg, ports, password))


def bridged_ports(args: argparse.Namespace, cfg: LabConfig) -> list[SerialConfig]:
    """The port named by --port (with --device), or the config's [[serial]] entries."""
    if not args.port:
        if not cfg.serial:
            raise ConfigError("no --port given and no [[serial]] entries in the config")
        return list(cfg.serial)
    if not args.device:
        raise ConfigError("--port needs --device cohort/learner/device (the registered device it is)")
    try:
        ref = DeviceRef.parse(args.device)
    except ValueError as err:
        raise ConfigError(f"--device: {err}") from None
    if args.baud is not None and args.baud <= 0:
        raise ConfigError("--baud: expected a positive rate, e.g. 115200 or 9600")
    return [SerialConfig(args.port, ref, args.protocol, args.baud or 0)]


async def _run_bridges(cfg: LabConfig, ports: list[SerialConfig], password: str | None) -> int:
    from hub.ops.fleet import make_bridges
    from hub.ops.signals import run_until_stopped, stop_on_signals

    bridges = await make_bridges(cfg, ports, password)
    await run_until_stopped((b.run() for b in bridges), stop_on_signals())
    return 0
