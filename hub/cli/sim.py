"""`labhub sim air|arm|serial`: simulated device firmware, on the broker or behind a pseudo-terminal."""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from devices.serial_protocols import PROTOCOLS
from devices.topics import DeviceRef
from hub.config import ConfigError
from hub.credentials import load_credentials_file
from hub.ops.signals import run_until_stopped, stop_on_signals

if TYPE_CHECKING:
    from devices.arm import ArmProfile
    from hub.cli.options import Subparsers

log = logging.getLogger("labhub")


def register(sub: Subparsers) -> None:
    sim = sub.add_parser("sim", help="simulated device firmware")
    sim_sub = sim.add_subparsers(required=True, metavar="DEVICE")
    air = sim_sub.add_parser(
        "air",
        help="simulated air-quality sensors",
        epilog=_fault_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    air.add_argument("--count", type=int, default=1)
    air.add_argument("--fault", choices=_faults(), metavar="FAULT", help="make a beginner's mistake (list below)")
    air.add_argument("--period", type=float, default=1.0, help="seconds between readings")
    air.add_argument("--readings", type=int, help="stop after this many readings per device")
    air.add_argument("--cohort", default="sim")
    air.add_argument("--host", default="127.0.0.1")
    air.add_argument("--port", type=int, default=1883)
    air.add_argument("--credentials", type=Path, help="passwords file (the lab's lab-credentials.toml)")
    air.set_defaults(func=cmd_sim_air)
    arm = sim_sub.add_parser("arm", help="simulated robotic arms (servo firmware)")
    arm.add_argument("--count", type=int, default=1)
    arm.add_argument("--profile", default="mearm", help="arm profile from config/arms (default mearm)")
    arm.add_argument("--fault", choices=_arm_faults(), help="misbehave like a real board")
    arm.add_argument("--cohort", default="sim")
    arm.add_argument("--host", default="127.0.0.1")
    arm.add_argument("--port", type=int, default=1883)
    arm.add_argument("--credentials", type=Path, help="passwords file (the lab's lab-credentials.toml)")
    arm.set_defaults(func=cmd_sim_arm)
    ser = sim_sub.add_parser("serial", help="a board on a USB-serial cable, behind a pseudo-terminal")
    ser.add_argument("--protocol", default="lines", choices=(*PROTOCOLS, "arm"))
    ser.add_argument("--path", type=Path, help="where the port appears (default: a new temp dir's ttyLAB0)")
    ser.add_argument("--period", type=float, default=1.0, help="seconds between readings")
    ser.add_argument("--fault", choices=("checksum", "garbage"), help="sds011: corrupt frames, or line noise")
    ser.add_argument("--style", default="pairs", choices=("pairs", "json"), help="lines: key=value or JSON")
    ser.add_argument("--text", help="lines: print exactly this line every period (e.g. 'temp=21.5,hum=40')")
    ser.add_argument("--profile", default="mearm", help="arm: an arm profile from config/arms")
    ser.set_defaults(func=cmd_sim_serial)


def _faults() -> tuple[str, ...]:
    from firmware_sim.air import FAULTS

    return FAULTS


def _fault_help() -> str:
    from firmware_sim.air import PAYLOAD_FAULTS
    from firmware_sim.faults import EXPLAINED

    lines = ["payload faults (answered on the device's errors topic):", "  " + ", ".join(PAYLOAD_FAULTS), ""]
    lines.append("lab doctor faults (each produces the finding of the same name; both clocks: clock_not_set):")
    lines += [f"  {name:<20} {text}" for name, text in EXPLAINED.items()]
    lines.append("wrong_password and foreign_topic need a closed lab (--credentials); retained_command's app logs")
    lines.append("in as the learner when the credentials file has the learner's account, else anonymously.")
    return "\n".join(lines)


def _arm_faults() -> tuple[str, ...]:
    from firmware_sim.arm import FAULTS

    return FAULTS


def _arm_profile(name: str) -> ArmProfile:
    from devices.arm import load_profiles

    profiles = load_profiles()
    if name not in profiles:
        raise ConfigError(f"no arm profile {name!r} in config/arms (have: {', '.join(profiles)})")
    return profiles[name]


def cmd_sim_air(args: argparse.Namespace) -> int:
    from firmware_sim.air import AirSensor

    passwords = load_credentials_file(args.credentials) if args.credentials else {}

    async def run() -> None:
        sensors = [
            AirSensor(
                DeviceRef(args.cohort, f"learner{i:02d}", "aq1"),
                args.host,
                args.port,
                args.period,
                args.fault,
                seed=i,
                readings=args.readings,
                password=passwords.get(f"{args.cohort}/learner{i:02d}/aq1"),
                app_password=passwords.get(f"{args.cohort}/learner{i:02d}"),
            )
            for i in range(1, args.count + 1)
        ]
        log.info(
            "%d simulated air-quality sensors → %s:%d%s",
            len(sensors),
            args.host,
            args.port,
            f" (fault: {args.fault})" if args.fault else "",
        )
        stop = stop_on_signals()

        async def all_sent() -> None:
            for sensor in sensors:
                await sensor.done.wait()
            stop.set()

        await run_until_stopped([*(s.run() for s in sensors), all_sent()], stop)
        log.info("sent %d readings", sum(s.sent for s in sensors))

    asyncio.run(run())
    return 0


def cmd_sim_arm(args: argparse.Namespace) -> int:
    from firmware_sim.arm import ArmFirmware

    passwords = load_credentials_file(args.credentials) if args.credentials else {}
    profile = _arm_profile(args.profile)

    async def run() -> None:
        arms = [
            ArmFirmware(
                DeviceRef(args.cohort, f"learner{i:02d}", "arm1"),
                profile,
                args.host,
                args.port,
                args.fault,
                seed=i,
                password=passwords.get(f"{args.cohort}/learner{i:02d}/arm1"),
            )
            for i in range(1, args.count + 1)
        ]
        log.info(
            "%d simulated %s arms → %s:%d; commands on lab/%s/<learner>/arm1/commands",
            len(arms),
            args.profile,
            args.host,
            args.port,
            args.cohort,
        )
        await run_until_stopped((arm.run() for arm in arms), stop_on_signals())

    asyncio.run(run())
    return 0


def cmd_sim_serial(args: argparse.Namespace) -> int:
    """A simulated board behind a pty; prints the port's path for `labhub serial-bridge --port`."""
    import tempfile

    from firmware_sim.serial import PtyPort, Sds011Sensor, SerialAirSensor, SerialArm

    path = args.path or Path(tempfile.mkdtemp(prefix="labhub-serial-")) / "ttyLAB0"
    port = PtyPort(path)

    async def run() -> None:
        board: SerialAirSensor | Sds011Sensor | SerialArm
        if args.protocol == "sds011":
            board = Sds011Sensor(port, args.period, args.fault)
        elif args.protocol == "arm":
            board = SerialArm(DeviceRef("sim", "serial", "arm1"), _arm_profile(args.profile), port)
        else:
            board = SerialAirSensor(port, args.period, args.style, text=args.text)
        port.plug()
        try:
            protocol = "lines" if args.protocol == "arm" else args.protocol
            print(f"simulated {args.protocol} board on {path}", flush=True)
            print(
                f"bridge it: labhub serial-bridge --port {path} --protocol {protocol} --device <cohort/learner/device>"
            )
            await run_until_stopped([board.run()], stop_on_signals())
        finally:
            port.unplug()

    asyncio.run(run())
    return 0
