"""The options every lab command shares (config, state dir, ports, mode), and the config they make."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from hub.config import LabConfig, env_overrides, find_config, load_config, with_port
from hub.ops.influxd import INFLUX_HUB

if TYPE_CHECKING:
    Subparsers: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]  # what each group registers in


def lab_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--config",
        type=Path,
        help="lab config (TOML); default: $LABHUB_CONFIG, else the one `labhub init` wrote, else the demo lab",
    )
    p.add_argument("--state-dir", type=Path, help="where services keep their data")
    p.add_argument("--mqtt-port", type=int, help="broker port (default 1883)")
    p.add_argument("--influx-port", type=int, help="InfluxDB HTTP port (default 8086)")
    p.add_argument("--influx-rpc-port", type=int, help="influxd's backup/RPC port, on 127.0.0.1 (default 8089)")
    p.add_argument("--http-port", type=int, help="hub HTTP API port (default 8080)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--open", action="store_true", help="classroom open mode: anonymous MQTT clients allowed")
    mode.add_argument("--closed", action="store_true", help="only registered accounts (the default)")


def lab_command(
    group: Subparsers, name: str, help: str, func: Callable[[argparse.Namespace], int], **defaults: object
) -> argparse.ArgumentParser:
    """A subcommand that works on a lab: its parser, with the shared lab options, dispatching to `func`."""
    p = group.add_parser(name, help=help)
    lab_options(p)
    p.set_defaults(func=func, **defaults)
    return p


def configure(args: argparse.Namespace) -> LabConfig:
    """The config file (found as `find_config` says), then the LABHUB_* variables, then the command line's options."""
    args.config = find_config(args.config)
    cfg = env_overrides(load_config(args.config))
    if args.state_dir:
        cfg = dataclasses.replace(cfg, state_dir=args.state_dir)
    if args.mqtt_port:
        cfg = with_port(cfg, "mqtt", "port", args.mqtt_port)
    if args.influx_port:
        cfg = with_port(cfg, "influx", "port", args.influx_port)
    if args.influx_rpc_port:
        cfg = with_port(cfg, "influx", "rpc_port", args.influx_rpc_port)
    if args.http_port is not None:
        cfg = with_port(cfg, "hub", "http_port", args.http_port)
    if args.closed or args.open:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, open_mode=bool(args.open)))
    if cfg.influx.launch and cfg.influx.backend == "v1" and not cfg.influx.username:
        # The influxd that `labhub up` runs has auth on: the hub writes as its own, least-privileged user.
        cfg = dataclasses.replace(cfg, influx=dataclasses.replace(cfg.influx, username=INFLUX_HUB))
    return cfg
