"""The `labhub` command: `up` (the whole lab), `hub` (the service alone), `sim air` (simulated sensors)."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlparse

from hub.config import (
    ARM_PROFILES,
    DEFAULT_ARM_PROFILE,
    DEFAULT_CONFIG,
    ConfigError,
    DeviceConfig,
    LabConfig,
    load_config,
)
from hub.services import Service, ServiceError, start_influxd, start_mosquitto
from hub.topics import DeviceRef

log = logging.getLogger("labhub")


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s " + _worker_tag(args) + "%(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    try:
        code: int = args.func(args)
    except* (ConfigError, ServiceError) as group:
        for err in group.exceptions:
            log.error("%s", err)
        code = 2
    except* KeyboardInterrupt:
        code = 130
    return code


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
        p.add_argument("--http-port", type=int, help="hub HTTP API port (default 8080)")
        p.add_argument("--closed", action="store_true", help="refuse devices not declared in the config")

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
    air.set_defaults(func=cmd_sim_air)
    arm = sim_sub.add_parser("arm", help="simulated robotic arms (servo firmware)")
    arm.add_argument("--count", type=int, default=1)
    arm.add_argument("--profile", default="mearm", help="arm profile from config/arms (default mearm)")
    arm.add_argument("--fault", choices=_arm_faults(), help="misbehave like a real board")
    arm.add_argument("--cohort", default="sim")
    arm.add_argument("--host", default="127.0.0.1")
    arm.add_argument("--port", type=int, default=1883)
    arm.set_defaults(func=cmd_sim_arm)
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
    if args.http_port is not None:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, http_port=args.http_port))
    if args.closed:
        cfg = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, open_mode=False))
    return cfg


def sim_devices(cfg: LabConfig, extra: int) -> LabConfig:
    """Declare `extra` simulated air-quality sensors `sim/learnerNN/aq1` on top of the config's devices."""
    known = {d.ref for d in cfg.devices}
    added = [DeviceConfig(DeviceRef("sim", f"learner{i:02d}", "aq1"), "air_quality", True) for i in range(1, extra + 1)]
    return dataclasses.replace(cfg, devices=cfg.devices + tuple(d for d in added if d.ref not in known))


def start_services(cfg: LabConfig) -> list[Service]:
    services: list[Service] = []
    cfg.state_dir.mkdir(parents=True, exist_ok=True)
    try:
        if cfg.mqtt.launch:
            services.append(start_mosquitto(cfg.state_dir, cfg.mqtt.host, cfg.mqtt.port))
        if cfg.influx.launch and cfg.influx.backend == "v1":
            url = urlparse(cfg.influx.url)
            services.append(
                start_influxd(cfg.state_dir, url.hostname or "127.0.0.1", url.port or 8086, cfg.influx.rpc_port)
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
        workers = [_worker_argv(args, cfg, i, extra) for i in range(1, max(1, args.workers))]
        return asyncio.run(_run_lab(cfg, services, simulated, workers, args.workers))
    finally:
        for service in reversed(services):
            service.stop()
        log.info("lab stopped")


def cmd_hub(args: argparse.Namespace) -> int:
    cfg = sim_devices(_configure(args), args.sim_count)
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
    return argv + (["--closed"] if args.closed else [])


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
    from hub.app import Hub

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
        fleet = []
        for i, device in enumerate(simulated):
            sim: AirSensor | ArmFirmware
            if device.kind == "arm":
                profile = ARM_PROFILES[device.profile or DEFAULT_ARM_PROFILE]
                sim = ArmFirmware(device.ref, profile, cfg.mqtt.host, cfg.mqtt.port, seed=i)
            else:
                sim = AirSensor(device.ref, cfg.mqtt.host, cfg.mqtt.port, cfg.sim.period_s, seed=i)
            fleet.append(tg.create_task(sim.run(), name=f"sim-{device.ref.key}"))
        arms = [d.ref for d in simulated if d.kind == "arm"]
        if arms and worker == 0:  # a phone app drives the first arm now and then, as a learner would
            fleet.append(tg.create_task(_demo_app(f"http://{cfg.hub.http_host}:{hub.http_port}", arms[0].key)))
        if worker == 0:
            _banner(cfg, hub.http_port, simulated, workers)
        await hub_task
        watcher.cancel()
        for task in fleet + helpers:
            task.cancel()
    return exit_code


async def _demo_app(base_url: str, device: str) -> None:
    import aiohttp

    from firmware_sim.app import PhoneApp

    await asyncio.sleep(2.0)  # let the arm come online
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                await PhoneApp(base_url, device, rate_per_s=0.2, unsafe_share=0.1).run(session)
            except (aiohttp.ClientError, OSError) as err:
                log.warning("demo app: %s; starting again in 5 s", err)
                await asyncio.sleep(5.0)


def _banner(cfg: LabConfig, http_port: int, simulated: list[DeviceConfig], workers: int) -> None:
    example = next((d.ref for d in cfg.devices if d.kind == "air_quality"), DeviceRef("demo", "ana", "aq1"))
    arms = [d.ref for d in simulated if d.kind == "arm"]
    air = sum(1 for d in simulated if d.kind == "air_quality")
    lines = [
        "",
        "LabHub is up",
        f"  MQTT broker    {cfg.mqtt.host}:{cfg.mqtt.port}",
        f"  InfluxDB       {cfg.influx.url}  (database '{cfg.influx.database}')",
        f"  hub API        http://{cfg.hub.http_host}:{http_port}/  (health: /healthz, devices: /api/devices)",
        f"  simulated      {air} air-quality sensors, {len(arms)} arm{'s' if len(arms) != 1 else ''}",
        f"  hub workers    {workers}"
        + (f" (APIs on ports {http_port}…{http_port + workers - 1})" if workers > 1 else ""),
        f"  mode           {'open: unknown devices are accepted as generic' if cfg.hub.open_mode else 'closed'}",
        "  try:",
        f"    mosquitto_sub -p {cfg.mqtt.port} -t 'lab/{example.cohort}/{example.learner}/{example.device}/errors' &",
        f"    mosquitto_pub -p {cfg.mqtt.port} -t '{example.topic('telemetry')}' -m '{{\"pm25\": \"twelve\"}}'",
        *(
            [
                f"    curl -s -X POST http://{cfg.hub.http_host}:{http_port}/api/devices/{arms[0].key}/commands?wait=5 "
                '-d \'{"type": "move", "targets": {"base": 45}}\''
            ]
            if arms
            else []
        ),
        "  Ctrl-C stops everything.",
        "",
    ]
    print("\n".join(lines), flush=True)


def cmd_sim_air(args: argparse.Namespace) -> int:
    from firmware_sim.air import AirSensor

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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)

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
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(arm.run()) for arm in arms]
            await stop.wait()
            for task in tasks:
                task.cancel()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
