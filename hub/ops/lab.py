"""The lab runner: the one owner of what `labhub up` and `labhub hub` start, and of stopping all of it.

Start order: the services the config launches (mosquitto, influxd), the lab's API tokens, the hub (in this
process) and its extra worker processes; once the hub is ready, the simulated devices, the serial bridges, the demo
phone app, and the banner. Every start has its cleanup, on one AsyncExitStack or in one TaskGroup. SIGINT or
SIGTERM (or a service that dies) stops the hub first, which drains what it has accepted; then the helpers are
cancelled, and the services stopped last, the last started first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import threading
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlparse

from hub.access.dynsec import DynsecError
from hub.access.records import RegistryError
from hub.config import DeviceConfig, LabConfig
from hub.credentials import load_credentials, read_secret, secret_path
from hub.ops.banner import banner
from hub.ops.fleet import BRIDGE_RESTART, demo_app, keep_running, make_bridges, simulators
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, StartAborted
from hub.ops.signals import SIGNALS
from hub.ops.state import DEMO_APP_TOKEN, lab_tokens, private_state_dir
from hub.pace import Backoff
from hub.runtime import Hub

log = logging.getLogger("labhub")

SERVICE_CHECK_S = 1.0
WORKER_RESTART = Backoff(first_s=1.0, cap_s=1.0, jitter=False)
WORKER_STOP_S = 20.0  # a worker drains what it has accepted before it exits; past this it is killed


@dataclass(frozen=True, slots=True)
class LabPlan:
    """What to run: `labhub up` is the whole lab; `labhub hub` is the hub alone (or one worker of several)."""

    cfg: LabConfig
    simulated: tuple[DeviceConfig, ...] = ()
    whole_lab: bool = False  # launch the config's services and keep the lab's API tokens
    extra_workers: tuple[tuple[str, ...], ...] = ()  # the command lines of worker processes to supervise
    workers: int = 1
    worker: int = 0
    own_process: bool = False  # the lab is this process's whole life (the CLI): it may tune the process


GC_YOUNG = 20_000  # allocations between collections of young objects (Python's default: 700)


def settle_gc() -> None:
    """Once the hub is up: what it made so far (config, device table, registry, imports) lives as long as the
    process, so the cyclic collector stops scanning it (gc.freeze); readings in flight are many, short-lived and
    acyclic, so young objects are collected every GC_YOUNG allocations instead of 700 (about 5% of the hot
    path's time at tens of thousands of readings a second). Only for a process that is the lab: a test run
    that starts many hubs would freeze each one's garbage."""
    gc.freeze()
    gc.set_threshold(GC_YOUNG, 20, 20)


async def run_lab(plan: LabPlan) -> int:
    """Run `plan` until SIGINT or SIGTERM. 0 after a clean stop; 1 if a service died; 128 + the signal's number
    if it came before the hub started."""
    return await _Lab(plan).run()


def service_starters(cfg: LabConfig, abort: threading.Event | None = None) -> list[Callable[[], Service]]:
    """The services the config asks the lab to launch, in start order (each start blocks until it answers, or
    until `abort` is set: then it stops what it spawned and raises StartAborted)."""
    starters: list[Callable[[], Service]] = []
    if cfg.mqtt.launch:
        starters.append(
            functools.partial(
                start_mosquitto,
                cfg.state_dir,
                cfg.mqtt.host,
                cfg.mqtt.port,
                open_mode=cfg.hub.open_mode,
                internal_port=cfg.mqtt.internal_port,
                max_connections=cfg.mqtt.max_connections,
                abort=abort,
            )
        )
    if cfg.influx.launch and cfg.influx.backend == "v1":
        url = urlparse(cfg.influx.url)
        starters.append(
            functools.partial(
                start_influxd,
                cfg.state_dir,
                url.hostname or "127.0.0.1",
                url.port or 8086,
                cfg.influx.rpc_port,
                auth=True,
                database=cfg.influx.database,
                abort=abort,
            )
        )
    return starters


class _Lab:
    """One run of a plan: what it started, and whether it is stopping."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.services: list[Service] = []
        self.hub: Hub | None = None
        self.signalled = 0  # the first stop signal's number
        self.stopping = False
        self.exit_code = 0
        self.launched = False  # the services are up: "lab stopped" is said once they are down again
        self.abort_start = threading.Event()  # set by a stop: a service still starting gives up at once

    def _on_signal(self, sig: int) -> None:
        self.signalled = self.signalled or sig
        self._stop()

    def _stop(self) -> None:
        self.stopping = True
        self.abort_start.set()
        if self.hub is not None:
            self.hub.stop()

    def _stopped(self) -> None:
        if self.launched:
            log.info("lab stopped")

    async def run(self) -> int:
        plan, cfg = self.plan, self.plan.cfg
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            for sig in SIGNALS:
                loop.add_signal_handler(sig, self._on_signal, sig)
                stack.callback(loop.remove_signal_handler, sig)
            private_state_dir(cfg.state_dir)
            if plan.whole_lab:
                stack.callback(self._stopped)
                await self._launch_services(stack)
                self.launched = True
                lab_tokens(cfg, plan.simulated)
            if self.signalled:  # stopped while the services started: the hub never runs
                return 128 + self.signalled
            hub = self.hub = Hub(cfg, report_every_s=5.0, worker=plan.worker, workers=plan.workers)
            async with asyncio.TaskGroup() as tg:
                hub_task = tg.create_task(hub.run(), name="hub")
                helpers = [
                    tg.create_task(self._supervise(argv, f"worker {i}"), name=f"worker-{i}")
                    for i, argv in enumerate(plan.extra_workers, 1)
                ]
                if self.services:
                    helpers.append(tg.create_task(self._watch_services(), name="services"))
                await hub.ready.wait()
                if plan.own_process:
                    settle_gc()
                if not self.stopping:  # a stop during the hub's start-up: no fleet, no banner
                    helpers += await self._start_fleet(tg, hub)
                if plan.worker == 0 and not self.stopping:
                    print(banner(cfg, hub.http_port, plan.simulated, plan.workers), flush=True)
                await hub_task
                for task in helpers:
                    task.cancel()
        return self.exit_code

    async def _launch_services(self, stack: contextlib.AsyncExitStack) -> None:
        """Each service starts in a thread (its start-up blocks) and is stopped when the stack closes; a stop
        during a start ends it at once, and the start stops what it spawned."""
        for start in service_starters(self.plan.cfg, self.abort_start):
            if self.signalled:
                return
            try:
                service = await asyncio.to_thread(start)
            except StartAborted:
                return
            stack.push_async_callback(asyncio.to_thread, service.stop)
            self.services.append(service)

    async def _watch_services(self) -> None:
        """A service that dies takes the lab down, with its log's tail to say why."""
        while True:
            await asyncio.sleep(SERVICE_CHECK_S)
            for service in self.services:
                if not service.alive():
                    log.error(
                        "%s exited (code %s); stopping the lab. Its log:\n%s",
                        service.name,
                        service.proc.returncode,
                        service.log_tail(),
                    )
                    self.exit_code = 1
                    self._stop()
                    return

    async def _supervise(self, argv: Sequence[str], name: str) -> None:
        """Run an extra worker; restart it if it dies while the lab runs; stop it when cancelled."""
        attempt = 0
        while True:
            async with _child(argv) as proc:
                code = await proc.wait()
            if self.stopping:  # a Ctrl-C in the terminal reaches the workers too
                return
            delay = WORKER_RESTART.delay(attempt)
            attempt += 1
            log.error("%s exited with code %s; restarting it", name, code)
            await asyncio.sleep(delay)

    async def _start_fleet(self, tg: asyncio.TaskGroup, hub: Hub) -> list[asyncio.Task[None]]:
        """Simulated devices, the config's USB-serial boards and the demo phone app, once the hub is ready."""
        plan, cfg = self.plan, self.plan.cfg
        credentials = load_credentials(cfg.state_dir)
        missing = [d.ref.key for d in plan.simulated if d.ref.key not in credentials]
        if missing and not cfg.hub.open_mode:
            log.warning(
                "no password on file for %s: rotate with `labhub device rotate ID` to simulate them", ", ".join(missing)
            )
        tasks = [
            tg.create_task(sim.run(), name=f"sim-{sim.ref.key}") for sim in simulators(cfg, plan.simulated, credentials)
        ]
        if cfg.serial and plan.worker == 0:
            try:
                bridges = await make_bridges(cfg, cfg.serial)
            except (DynsecError, RegistryError) as err:
                log.error("serial bridges not started: %s", err)
                bridges = []
            tasks += [
                tg.create_task(keep_running(b.run, f"bridge {b.ref.key}", BRIDGE_RESTART), name=f"bridge-{b.ref.key}")
                for b in bridges
            ]
        arms = [d.ref for d in plan.simulated if d.kind == "arm"]
        if arms and plan.worker == 0:  # a phone app drives the first arm now and then, as a learner would
            token = read_secret(secret_path(cfg.state_dir, DEMO_APP_TOKEN)) or ""
            url = f"http://{cfg.hub.http_host}:{hub.http_port}"
            tasks.append(tg.create_task(demo_app(url, arms[0].key, token), name="demo-app"))
        return tasks


@contextlib.asynccontextmanager
async def _child(argv: Sequence[str]) -> AsyncIterator[asyncio.subprocess.Process]:
    """A child process, stopped on the way out if it still runs: SIGTERM, then SIGKILL after WORKER_STOP_S."""
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), WORKER_STOP_S)
            except TimeoutError:
                proc.kill()
                await proc.wait()
