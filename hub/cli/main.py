"""The `labhub` command: `up` (the whole lab), `hub` (the service alone), `sim air` (simulated sensors)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import getpass
import logging
import os
import resource
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from devices.serial_protocols import PROTOCOLS
from devices.topics import DeviceRef
from hub.access.credentials import CREDENTIALS_FILE, load_credentials, load_credentials_file, read_secret, secret_path
from hub.access.dynsec import DynsecError
from hub.access.registry import Registry, RegistryError
from hub.adapters.influx import StorageError
from hub.config import (
    ARM_PROFILES,
    DEFAULT_ARM_PROFILE,
    DEFAULT_CONFIG,
    ConfigError,
    DeviceConfig,
    LabConfig,
    SerialConfig,
    load_config,
)
from hub.ops.services import INFLUX_HUB, Service, ServiceError, start_influxd, start_mosquitto

if TYPE_CHECKING:
    from hub.access.accounts import Accounts
    from hub.bridges.serial_bridge import Bridge

log = logging.getLogger("labhub")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s " + _worker_tag(args) + "%(name)s: %(message)s",
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


FD_CEILING = 1 << 20  # when the hard limit is "unlimited": the kernel's usual nr_open


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


def private_state_dir(state_dir: Path) -> None:
    """The state dir holds the registry, secrets, spool and reports: nobody else may list or read it. As root,
    others keep only the right to pass through (0711), so the broker's unprivileged user reaches its folder."""
    mode = 0o711 if os.geteuid() == 0 else 0o700
    state_dir.mkdir(parents=True, exist_ok=True, mode=mode)
    if state_dir.stat().st_mode & 0o777 != mode:
        state_dir.chmod(mode)


def _worker_tag(args: argparse.Namespace) -> str:
    return f"w{getattr(args, 'worker', 0)} " if getattr(args, "workers", 1) > 1 else ""


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="labhub", description="LabHub: the hub of an IoT maker lab")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    def lab_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="lab config (TOML)")
        p.add_argument("--state-dir", type=Path, help="where services keep their data")
        p.add_argument("--mqtt-port", type=int, help="broker port (default 1883)")
        p.add_argument("--influx-port", type=int, help="InfluxDB HTTP port (default 8086)")
        p.add_argument("--influx-rpc-port", type=int, help="influxd's backup/RPC port, on 127.0.0.1 (default 8089)")
        p.add_argument("--http-port", type=int, help="hub HTTP API port (default 8080)")
        mode = p.add_mutually_exclusive_group()
        mode.add_argument("--open", action="store_true", help="classroom open mode: anonymous MQTT clients allowed")
        mode.add_argument("--closed", action="store_true", help="only registered accounts (the default)")

    up = sub.add_parser("up", help="run a whole lab: broker, database, hub and a simulated fleet")
    lab_options(up)
    up.add_argument("--sim-count", type=int, help="extra simulated air-quality sensors (cohort 'sim')")
    up.add_argument("--no-sim", action="store_true", help="no simulated devices")
    up.add_argument("--workers", type=int, default=1, help="hub workers sharing the telemetry load (default 1)")
    up.set_defaults(func=cmd_up)

    hub = sub.add_parser("hub", help="run the hub alone, against a running broker and database")
    lab_options(hub)
    hub.add_argument("--sim-count", type=int, default=0, help="declare sim/learnerNN/aq1 devices, as `up` does")
    hub.add_argument("--worker", type=int, default=0, help="this worker's index (0-based)")
    hub.add_argument("--workers", type=int, default=1, help="how many workers share the load")
    hub.set_defaults(func=cmd_hub)

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

    device = sub.add_parser("device", help="the registry's devices and their broker accounts")
    device_sub = device.add_subparsers(required=True, metavar="ACTION")
    add = device_sub.add_parser("add", help="register a device; prints its broker password once")
    lab_options(add)
    add.add_argument("id", help="cohort/learner/device")
    add.add_argument("--kind", default="generic", help="air_quality, arm or generic (default)")
    add.add_argument("--profile", help="arms: a profile from config/arms (default mearm)")
    add.add_argument("--description", default="")
    add.set_defaults(func=cmd_registry, action="device_add")
    listing = device_sub.add_parser("list", help="registered devices")
    lab_options(listing)
    listing.add_argument("--cohort")
    listing.set_defaults(func=cmd_registry, action="device_list")
    for name, text in (
        ("disable", "cut a device off the broker at once"),
        ("enable", "let a disabled device connect again"),
        ("rotate", "a new password (printed once); the old one stops working"),
        ("remove", "forget a device and delete its account (its data stays in InfluxDB)"),
    ):
        p = device_sub.add_parser(name, help=text)
        lab_options(p)
        p.add_argument("id", help="cohort/learner/device")
        p.set_defaults(func=cmd_registry, action=f"device_{name}")

    learner = sub.add_parser("learner", help="learners and their own MQTT accounts (for MQTT phone apps)")
    learner_sub = learner.add_subparsers(required=True, metavar="ACTION")
    for name, text in (
        ("add", "give a learner an MQTT account; prints its password once"),
        ("disable", "cut off a learner's account and all their devices"),
        ("enable", "let a learner and their devices connect again"),
        ("rotate", "a new password for the learner's account (printed once)"),
        ("remove", "forget a learner, their devices and their accounts"),
    ):
        p = learner_sub.add_parser(name, help=text)
        lab_options(p)
        p.add_argument("id", help="cohort/learner")
        p.set_defaults(func=cmd_registry, action=f"learner_{name}")
    listing = learner_sub.add_parser("list", help="registered learners")
    lab_options(listing)
    listing.add_argument("--cohort")
    listing.set_defaults(func=cmd_registry, action="learner_list")

    cohort = sub.add_parser("cohort", help="whole cohorts")
    cohort_sub = cohort.add_subparsers(required=True, metavar="ACTION")
    imp = cohort_sub.add_parser("import", help="import a CSV: cohort,learner[,device,kind,profile,description]")
    lab_options(imp)
    imp.add_argument("csv", type=Path)
    imp.add_argument("--no-learner-accounts", action="store_true", help="devices only, no learner MQTT accounts")
    imp.set_defaults(func=cmd_registry, action="cohort_import")

    demo = sub.add_parser("demo", help="demo sessions: the windows that are graded")
    demo_sub = demo.add_subparsers(required=True, metavar="ACTION")
    dstart = demo_sub.add_parser("start", help="start a learner's demo now")
    lab_options(dstart)
    dstart.add_argument("learner", help="cohort/learner")
    dstart.add_argument("--trainer", default=getpass.getuser(), help="who runs it (default: your login)")
    dstart.set_defaults(func=cmd_demo, action="start")
    dstop = demo_sub.add_parser("stop", help="stop a demo (by id, or the learner's running one)")
    lab_options(dstop)
    dstop.add_argument("which", help="session id, or cohort/learner")
    dstop.set_defaults(func=cmd_demo, action="stop")
    dlist = demo_sub.add_parser("list", help="past and running demos")
    lab_options(dlist)
    dlist.add_argument("--cohort")
    dlist.set_defaults(func=cmd_demo, action="list")

    grade = sub.add_parser("grade", help="grade demos from InfluxDB: print a table, write HTML, CSV and JSON")
    lab_options(grade)
    grade.add_argument("--cohort", required=True)
    grade.add_argument("--learner", help="one learner (default: every learner with a demo)")
    grade.add_argument("--session", help="one session id (default: each learner's latest finished demo)")
    grade.add_argument("--out", type=Path, help="where to write the reports (default: <state_dir>/reports/…)")
    grade.set_defaults(func=cmd_grade)

    token = sub.add_parser("token", help="API tokens (trainer, learner, viewer)")
    token_sub = token.add_subparsers(required=True, metavar="ACTION")
    tadd = token_sub.add_parser("add", help="a new token; prints it once")
    lab_options(tadd)
    tadd.add_argument("--role", required=True, choices=("trainer", "learner", "viewer"))
    tadd.add_argument("--scope", required=True, help="trainer/viewer: a cohort or '*'; learner: cohort/learner")
    tadd.add_argument("--label", default="")
    tadd.set_defaults(func=cmd_registry, action="token_add")
    tlist = token_sub.add_parser("list", help="tokens (never their secrets)")
    lab_options(tlist)
    tlist.set_defaults(func=cmd_registry, action="token_list")
    trev = token_sub.add_parser("revoke", help="revoke a token by its id")
    lab_options(trev)
    trev.add_argument("id")
    trev.set_defaults(func=cmd_registry, action="token_revoke")

    sim = sub.add_parser("sim", help="simulated device firmware")
    sim_sub = sim.add_subparsers(required=True, metavar="DEVICE")
    air = sim_sub.add_parser("air", help="simulated air-quality sensors")
    air.add_argument("--count", type=int, default=1)
    air.add_argument("--fault", choices=_faults(), help="publish the mistakes a beginner's firmware makes")
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
    return parser


def _faults() -> tuple[str, ...]:
    from firmware_sim.air import FAULTS

    return FAULTS


def _arm_faults() -> tuple[str, ...]:
    from firmware_sim.arm import FAULTS

    return FAULTS


def _configure(args: argparse.Namespace) -> LabConfig:
    cfg = load_config(args.config)
    if args.state_dir:
        cfg = dataclasses.replace(cfg, state_dir=args.state_dir)
    if args.mqtt_port:
        cfg = dataclasses.replace(cfg, mqtt=dataclasses.replace(cfg.mqtt, port=args.mqtt_port))
    if args.influx_port:
        url = urlparse(cfg.influx.url)._replace(netloc=f"{urlparse(cfg.influx.url).hostname}:{args.influx_port}")
        cfg = dataclasses.replace(cfg, influx=dataclasses.replace(cfg.influx, url=url.geturl()))
    if args.influx_rpc_port:
        cfg = dataclasses.replace(cfg, influx=dataclasses.replace(cfg.influx, rpc_port=args.influx_rpc_port))
    if args.http_port is not None:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, http_port=args.http_port))
    if args.closed or args.open:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, open_mode=bool(args.open)))
    if cfg.influx.launch and cfg.influx.backend == "v1" and not cfg.influx.username:
        # The influxd that `labhub up` runs has auth on: the hub writes as its own, least-privileged user.
        cfg = dataclasses.replace(cfg, influx=dataclasses.replace(cfg.influx, username=INFLUX_HUB))
    return cfg


def sim_devices(cfg: LabConfig, extra: int) -> LabConfig:
    """Declare `extra` simulated air-quality sensors `sim/learnerNN/aq1` on top of the config's devices."""
    known = {d.ref for d in cfg.devices}
    added = [DeviceConfig(DeviceRef("sim", f"learner{i:02d}", "aq1"), "air_quality", True) for i in range(1, extra + 1)]
    return dataclasses.replace(cfg, devices=cfg.devices + tuple(d for d in added if d.ref not in known))


def start_services(cfg: LabConfig) -> list[Service]:
    services: list[Service] = []
    private_state_dir(cfg.state_dir)
    try:
        if cfg.mqtt.launch:
            services.append(
                start_mosquitto(
                    cfg.state_dir,
                    cfg.mqtt.host,
                    cfg.mqtt.port,
                    open_mode=cfg.hub.open_mode,
                    internal_port=cfg.mqtt.internal_port,
                    max_connections=cfg.mqtt.max_connections,
                )
            )
        if cfg.influx.launch and cfg.influx.backend == "v1":
            url = urlparse(cfg.influx.url)
            services.append(
                start_influxd(
                    cfg.state_dir,
                    url.hostname or "127.0.0.1",
                    url.port or 8086,
                    cfg.influx.rpc_port,
                    auth=True,
                    database=cfg.influx.database,
                )
            )
    except BaseException:
        for service in reversed(services):
            service.stop()
        raise
    return services


def cmd_up(args: argparse.Namespace) -> int:
    cfg = _configure(args)
    extra = args.sim_count if args.sim_count is not None else cfg.sim.extra_air
    cfg = sim_devices(cfg, 0 if args.no_sim else extra)
    simulated = [] if args.no_sim else [d for d in cfg.devices if d.simulate]
    services = start_services(cfg)
    try:
        _lab_tokens(cfg, simulated)
        workers = [_worker_argv(args, cfg, i, extra) for i in range(1, max(1, args.workers))]
        return asyncio.run(_run_lab(cfg, services, simulated, workers, args.workers))
    finally:
        for service in reversed(services):
            service.stop()
        log.info("lab stopped")


TRAINER_TOKEN = "api-trainer"  # in <state_dir>/secrets: the lab's all-cohort trainer token
DEMO_APP_TOKEN = "api-demo-app"  # the demo phone app's learner token


def _lab_tokens(cfg: LabConfig, simulated: list[DeviceConfig]) -> None:
    """`labhub up` keeps an all-cohort trainer token (and one for the demo phone app) in its state dir, made
    once and reused while they are valid; only their digests are in the registry."""
    from hub.access.credentials import write_secret
    from hub.access.registry import token_digest

    registry = Registry(cfg.registry_path)
    try:
        wanted = [(TRAINER_TOKEN, "trainer", "*", "labhub up: the lab's trainer")]
        arms = [d.ref for d in simulated if d.kind == "arm"]
        if arms:
            wanted.append((DEMO_APP_TOKEN, "learner", f"{arms[0].cohort}/{arms[0].learner}", "labhub up: demo app"))
        for name, role, scope, label in wanted:
            path = secret_path(cfg.state_dir, name)
            secret = read_secret(path)
            token = registry.token_for(token_digest(secret)) if secret else None
            if token is None or token.scope != scope:
                if token is not None:
                    registry.revoke_token(token.id)  # replaced: the old one must not stay valid
                _, secret = registry.add_token(role, scope, label)
                write_secret(path, secret)
                log.info("new %s token for %s in %s", role, scope, path)
    finally:
        registry.close()


def cmd_hub(args: argparse.Namespace) -> int:
    cfg = sim_devices(_configure(args), args.sim_count)
    private_state_dir(cfg.state_dir)
    return asyncio.run(_run_lab(cfg, [], [], [], args.workers, args.worker))


def _worker_argv(args: argparse.Namespace, cfg: LabConfig, worker: int, sim_count: int) -> list[str]:
    """The command line of an extra worker process, with the same lab settings as this one."""
    argv = [
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
    ]
    return argv + (["--open"] if cfg.hub.open_mode else ["--closed"])


async def _supervise(argv: list[str], name: str) -> None:
    """Run an extra worker; restart it if it dies; stop it (SIGTERM, then the kill) when cancelled."""
    while True:
        proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
        try:
            code = await proc.wait()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 20)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()
            raise
        log.error("%s exited with code %s; restarting it", name, code)
        await asyncio.sleep(1.0)


async def _run_lab(
    cfg: LabConfig,
    services: list[Service],
    simulated: list[DeviceConfig],
    extra_workers: list[list[str]],
    workers: int = 1,
    worker: int = 0,
) -> int:
    from firmware_sim.air import AirSensor
    from firmware_sim.arm import ArmFirmware
    from hub.runtime import Hub

    hub = Hub(cfg, report_every_s=5.0, worker=worker, workers=workers)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, hub.stop)
    exit_code = 0

    async def watch_services() -> None:
        nonlocal exit_code
        while True:
            await asyncio.sleep(1.0)
            for service in services:
                if not service.alive():
                    log.error(
                        "%s exited (code %s); stopping the lab. Its log:\n%s",
                        service.name,
                        service.proc.returncode,
                        service.log_tail(),
                    )
                    exit_code = 1
                    hub.stop()
                    return

    async with asyncio.TaskGroup() as tg:
        hub_task = tg.create_task(hub.run(), name="hub")
        watcher = tg.create_task(watch_services(), name="services")
        helpers = [tg.create_task(_supervise(argv, f"worker {i + 1}")) for i, argv in enumerate(extra_workers)]
        await hub.ready.wait()
        credentials = load_credentials(cfg.state_dir)
        missing = [d.ref.key for d in simulated if d.ref.key not in credentials]
        if missing and not cfg.hub.open_mode:
            log.warning(
                "no password on file for %s: rotate with `labhub device rotate ID` to simulate them", ", ".join(missing)
            )
        fleet = []
        for i, device in enumerate(simulated):
            sim: AirSensor | ArmFirmware
            password = credentials.get(device.ref.key)
            if device.kind == "arm":
                profile = ARM_PROFILES[device.profile or DEFAULT_ARM_PROFILE]
                sim = ArmFirmware(device.ref, profile, cfg.mqtt.host, cfg.mqtt.port, seed=i, password=password)
            else:
                sim = AirSensor(device.ref, cfg.mqtt.host, cfg.mqtt.port, cfg.sim.period_s, seed=i, password=password)
            fleet.append(tg.create_task(sim.run(), name=f"sim-{device.ref.key}"))
        if cfg.serial and worker == 0:  # the config's USB-serial boards
            try:
                bridges = await _make_bridges(cfg, list(cfg.serial))
            except (DynsecError, RegistryError) as err:
                log.error("serial bridges not started: %s", err)
                bridges = []
            fleet += [tg.create_task(_keep_running(b.run, f"bridge {b.ref.key}")) for b in bridges]
        arms = [d.ref for d in simulated if d.kind == "arm"]
        if arms and worker == 0:  # a phone app drives the first arm now and then, as a learner would
            token = read_secret(secret_path(cfg.state_dir, DEMO_APP_TOKEN)) or ""
            url = f"http://{cfg.hub.http_host}:{hub.http_port}"
            fleet.append(tg.create_task(_demo_app(url, arms[0].key, token)))
        if worker == 0:
            _banner(cfg, hub.http_port, simulated, workers)
        await hub_task
        watcher.cancel()
        for task in fleet + helpers:
            task.cancel()
    return exit_code


def stop_on_signals() -> asyncio.Event:
    """An event that Ctrl-C or SIGTERM sets (for the commands that run until stopped)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _keep_running(run: Callable[[], Awaitable[None]], name: str) -> None:
    """A helper of the lab (a serial bridge) must never take the lab down: log its failure, start it again."""
    while True:
        try:
            await run()
            return
        except Exception:
            log.exception("%s failed; starting it again in 2 s", name)
            await asyncio.sleep(2.0)


async def _demo_app(base_url: str, device: str, token: str) -> None:
    import aiohttp

    from firmware_sim.app import PhoneApp

    await asyncio.sleep(2.0)  # let the arm come online
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        while True:
            try:
                await PhoneApp(base_url, device, rate_per_s=0.2, unsafe_share=0.1).run(session)
            except (aiohttp.ClientError, OSError) as err:
                log.warning("demo app: %s; starting again in 5 s", err)
                await asyncio.sleep(5.0)


def _banner(cfg: LabConfig, http_port: int, simulated: list[DeviceConfig], workers: int) -> None:
    """What runs where, the declared devices' broker accounts, and commands to try (stdout, not the log)."""
    example = next((d.ref for d in cfg.devices if d.kind == "air_quality"), DeviceRef("demo", "ana", "aq1"))
    arms = [d.ref for d in simulated if d.kind == "arm"]
    air = sum(1 for d in simulated if d.kind == "air_quality")
    credentials_file = cfg.state_dir / CREDENTIALS_FILE
    credentials = load_credentials(cfg.state_dir)  # only which accounts have one: a banner is projected
    declared = [d.ref.key for d in cfg.devices if d.ref.key in credentials]
    login = f'-u {example.key} -P "$PW" ' if example.key in credentials else ""
    watch = f'-u {cfg.mqtt.username} -P "$HUBPW" ' if login else ""
    token_file = secret_path(cfg.state_dir, TRAINER_TOKEN)
    api = f"http://{cfg.hub.http_host}:{http_port}"
    mode = (
        "open (classroom): anonymous clients allowed, unknown devices stored as generic"
        if cfg.hub.open_mode
        else "closed: every device and app uses its own account"
    )
    lines = [
        "",
        "LabHub is up",
        f"  MQTT broker    {cfg.mqtt.host}:{cfg.mqtt.port}  ({mode})",
        f"  InfluxDB       {cfg.influx.url}  (database '{cfg.influx.database}')",
        f"  hub API        {api}/  (health: /healthz; API token for trainers in {token_file})",
        f"  simulated      {air} air-quality sensors, {len(arms)} arm{'s' if len(arms) != 1 else ''}",
        f"  hub workers    {workers}"
        + (f" (APIs on ports {http_port}…{http_port + workers - 1})" if workers > 1 else ""),
        f"  accounts       {len(declared)} declared devices' MQTT passwords are in {credentials_file}",
        "                 (readable by this account only; not shown here: a screen may be projected)",
        "  try:",
        *(
            [
                f"    PW=$(grep '\"{example.key}\"' {credentials_file} | cut -d'\"' -f4)",
                # One account is one connection (the broker binds client ids to usernames): watch with the
                # hub's account, publish for a moment in the board's place.
                f"    HUBPW=$(cat {cfg.secret_file(cfg.mqtt.password_file, 'mqtt-hub')})",
            ]
            if login
            else []
        ),
        f"    mosquitto_sub -p {cfg.mqtt.port} {watch}-t '{example.topic('errors')}' &",
        f"    mosquitto_pub -p {cfg.mqtt.port} {login}-t '{example.topic('telemetry')}' -m '{{\"pm25\": \"twelve\"}}'",
        f'    curl -s -H "Authorization: Bearer $(cat {token_file})" {api}/api/devices',
        *(
            [
                f'    curl -s -H "Authorization: Bearer $(cat {token_file})" -X POST '
                f"{api}/api/devices/{arms[0].key}/commands?wait=5 "
                '-d \'{"type": "move", "targets": {"base": 45}}\''
            ]
            if arms
            else []
        ),
        f"    open {api}/dashboard (the live cohort dashboard) or {api}/phone, and paste the token",
        "    labhub demo start demo/ana; …; labhub demo stop demo/ana; labhub grade --cohort demo --learner ana",
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def cmd_registry(args: argparse.Namespace) -> int:
    """`labhub device|learner|cohort|token …`: change the registry and the broker's accounts together.
    Passwords and tokens go to stdout once; logs never carry them."""
    from hub.access.accounts import Accounts
    from hub.access.registry import MAX_CSV_BYTES, decode_csv, parse_csv

    cfg = _configure(args)
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
        elif action == "token_list":
            for t in registry.tokens():
                print(f"{t.id}  {t.role:8} {t.scope:24} {'REVOKED' if t.revoked else 'active':8} {t.label}")
        elif action == "token_add":
            token, secret = registry.add_token(args.role, args.scope, args.label)
            print(f"token {token.id} ({token.role}, {token.scope}) — shown once, keep it safe:\n{secret}")
        elif action == "token_revoke":
            registry.revoke_token(args.id)
            print(f"token {args.id} revoked")
        elif action == "cohort_import":
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
        else:
            print(asyncio.run(_registry_change(accounts, action, args)))
    finally:
        registry.close()
    return 0


async def _registry_change(accounts: Accounts, action: str, args: argparse.Namespace) -> str:
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


def cmd_demo(args: argparse.Namespace) -> int:
    """`labhub demo start|stop|list`."""
    from hub.access.registry import check_learner

    cfg = _configure(args)
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
    from hub.adapters.influx import InfluxV1
    from hub.grading.reports import grade_session, sessions_to_grade, table, write_reports
    from hub.grading.rubrics import RubricError, load_rubrics

    cfg = _configure(args)
    if cfg.influx.backend != "v1":
        raise ConfigError("grading reads InfluxDB through the 1.x API for now (influx.backend = 'v1')")
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
            password = (
                read_secret(cfg.secret_file(cfg.influx.password_file, "influx-hub")) if cfg.influx.username else None
            )
            db = InfluxV1(cfg.influx, password)
            await db.start()
            try:
                return [await grade_session(db, registry, s, rubrics) for s in sessions]
            finally:
                await db.close()

        settle = max((s.stopped_ns or 0) for s in sessions) + 2_000_000_000 - time.time_ns()
        if settle > 0:  # the hub writes within milliseconds; give what it accepted last a moment to land
            time.sleep(settle / 1e9)
        reports = asyncio.run(run())
        out = args.out or cfg.state_dir / "reports" / f"{args.cohort}-{time.strftime('%Y%m%d-%H%M%S')}"
        written = write_reports(out, args.cohort, reports, rubrics)
    finally:
        registry.close()
    print(table(reports))
    print(f"reports: {out}/ ({', '.join(p.name for p in written)})")
    return 0


def cmd_serial_bridge(args: argparse.Namespace) -> int:
    """Bridge the named port, or every [[serial]] entry of the config, until Ctrl-C."""
    cfg = _configure(args)
    if args.port:
        if not args.device:
            raise ConfigError("--port needs --device cohort/learner/device (the registered device it is)")
        try:
            ref = DeviceRef.parse(args.device)
        except ValueError as err:
            raise ConfigError(f"--device: {err}") from None
        if args.baud is not None and args.baud <= 0:
            raise ConfigError("--baud: expected a positive rate, e.g. 115200 or 9600")
        ports = [SerialConfig(args.port, ref, args.protocol, args.baud or 0)]
    else:
        ports = list(cfg.serial)
        if not ports:
            raise ConfigError("no --port given and no [[serial]] entries in the config")
    password = None
    if args.password_file:
        password = read_secret(args.password_file)
        if password is None:
            raise ConfigError(f"{args.password_file}: no password in it")
    return asyncio.run(_run_bridges(cfg, ports, password))


async def _bridge_logins(cfg: LabConfig, ports: list[SerialConfig]) -> dict[DeviceRef, str]:
    """Each bridged device's bridge account, with a fresh password (the lab's broker admin makes them)."""
    from hub.access.accounts import Accounts

    registry = Registry(cfg.registry_path)
    try:
        accounts = Accounts.for_lab(cfg, registry)
        return {p.device: (await accounts.bridge_login(p.device.key)).password for p in ports}
    finally:
        registry.close()


async def _make_bridges(cfg: LabConfig, ports: list[SerialConfig], password: str | None = None) -> list[Bridge]:
    from hub.bridges.serial_bridge import Bridge

    logins = {p.device: password for p in ports} if password else await _bridge_logins(cfg, ports)
    for p in ports:
        log.info("bridging %s (%s) → %s", p.port, p.protocol, p.device.key)
    return [
        Bridge(
            p.device,
            p.port,
            p.protocol,
            p.baud or None,
            mqtt_host=cfg.mqtt.host,
            mqtt_port=cfg.mqtt.port,
            username=f"bridge/{p.device.key}",
            password=logins[p.device],
        )
        for p in ports
    ]


async def _run_bridges(cfg: LabConfig, ports: list[SerialConfig], password: str | None = None) -> int:
    bridges = await _make_bridges(cfg, ports, password)
    stop = stop_on_signals()
    async with asyncio.TaskGroup() as tg:
        tasks = [tg.create_task(b.run(), name=f"bridge-{b.ref.key}") for b in bridges]
        await stop.wait()
        for task in tasks:
            task.cancel()
    return 0


def cmd_sim_serial(args: argparse.Namespace) -> int:
    """A simulated board behind a pty; prints the port's path for `labhub serial-bridge --port`."""
    import tempfile

    from devices.arm import load_profiles
    from firmware_sim.serial import PtyPort, Sds011Sensor, SerialAirSensor, SerialArm

    path = args.path or Path(tempfile.mkdtemp(prefix="labhub-serial-")) / "ttyLAB0"
    port = PtyPort(path)

    async def run() -> None:
        board: SerialAirSensor | Sds011Sensor | SerialArm
        if args.protocol == "sds011":
            board = Sds011Sensor(port, args.period, args.fault)
        elif args.protocol == "arm":
            profiles = load_profiles()
            if args.profile not in profiles:
                raise ConfigError(f"no arm profile {args.profile!r} in config/arms (have: {', '.join(profiles)})")
            board = SerialArm(DeviceRef("sim", "serial", "arm1"), profiles[args.profile], port)
        else:
            board = SerialAirSensor(port, args.period, args.style, text=args.text)
        port.plug()
        protocol = "lines" if args.protocol == "arm" else args.protocol
        print(f"simulated {args.protocol} board on {path}", flush=True)
        print(f"bridge it: labhub serial-bridge --port {path} --protocol {protocol} --device <cohort/learner/device>")
        stop = stop_on_signals()
        task = asyncio.create_task(board.run())
        await stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        port.unplug()

    asyncio.run(run())
    return 0


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

        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(s.run()) for s in sensors]
            tasks.append(tg.create_task(all_sent()))
            await stop.wait()
            for task in tasks:
                task.cancel()
        log.info("sent %d readings", sum(s.sent for s in sensors))

    asyncio.run(run())
    return 0


def cmd_sim_arm(args: argparse.Namespace) -> int:
    from devices.arm import load_profiles
    from firmware_sim.arm import ArmFirmware

    passwords = load_credentials_file(args.credentials) if args.credentials else {}
    profiles = load_profiles()
    if args.profile not in profiles:
        raise ConfigError(f"no arm profile {args.profile!r} in config/arms (have: {', '.join(profiles)})")

    async def run() -> None:
        arms = [
            ArmFirmware(
                DeviceRef(args.cohort, f"learner{i:02d}", "arm1"),
                profiles[args.profile],
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
        stop = stop_on_signals()
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(arm.run()) for arm in arms]
            await stop.wait()
            for task in tasks:
                task.cancel()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
