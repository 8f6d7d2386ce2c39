"""The lab runner: the one owner of what `labhub up` and `labhub hub` start, and of stopping all of it.

Start order: the services the config launches (mosquitto, influxd), the lab's API tokens, the hub (in this
process) and its extra worker processes; once the hub is ready, the simulated devices, the serial bridges, the demo
phone app, and the banner. Every start has its cleanup, on one AsyncExitStack or in one TaskGroup. SIGINT,
SIGTERM or SIGHUP (or a service that keeps dying: one that dies is started again) stops the hub first, which
drains what it has accepted; then the helpers are cancelled, and the services stopped last, the last started first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import urlparse

from hub.access.dynsec import DynsecError
from hub.access.records import RegistryError
from hub.config import DeviceConfig, LabConfig, ServiceError
from hub.credentials import load_credentials, read_secret, secret_path
from hub.ops.banner import banner
from hub.ops.fleet import BRIDGE_RESTART, demo_app, keep_running, make_bridges, simulators
from hub.ops.influxd import start_influxd
from hub.ops.leftovers import forget, me, stop_leftovers, write_record
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, StartAborted
from hub.ops.signals import stop_signals
from hub.ops.state import DEMO_APP_TOKEN, lab_tokens, private_state_dir
from hub.pace import Backoff
from hub.runtime import Hub
from hub.status import ServiceState

log = logging.getLogger("labhub")

SERVICE_CHECK_S = 0.1  # a dead service is noticed within this
SERVICE_RESTART = Backoff(first_s=0.1, cap_s=2.0, jitter=False)  # the first restart at once: back within 3 s
FAST_FAILURES = 5  # a service that dies (or fails to start) this often within FAST_WINDOW_S stops the lab
FAST_WINDOW_S = 60.0
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
    """Run `plan` until SIGINT, SIGTERM or SIGHUP. 0 after a clean stop; 1 if a service kept dying; 128 + the signal's number
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
                lan=cfg.lan,
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
                retention=cfg.retention,
            )
        )
    return starters


class _Lab:
    """One run of a plan: what it started, and whether it is stopping."""

    def __init__(self, plan: LabPlan) -> None:
        self.plan = plan
        self.services: list[_Supervised] = []
        self.hub: Hub | None = None
        self.signalled = 0  # the first stop signal's number
        self.stopping = False
        self.exit_code = 0
        self.launched = False  # the services are up: "lab stopped" is said once they are down again
        self.abort_start = threading.Event()  # set by a stop: a service still starting gives up at once
        self.workers: dict[str, int] = {}  # extra worker → the pid running it now
        self.me = me("labhub")

    def _on_signal(self, sig: int) -> None:
        self.signalled = self.signalled or sig
        self._stop()

    def _stop(self) -> None:
        self.stopping = True
        self.abort_start.set()
        if self.hub is not None:
            self.hub.stop()

    def _record(self) -> None:
        """What this lab runs, for the next one to stop if this one is killed outright (hub.ops.leftovers)."""
        if self.plan.whole_lab and self.me is not None:
            children = [(s.service.name, s.service.proc.pid) for s in self.services] + list(self.workers.items())
            write_record(self.plan.cfg.state_dir, self.me, children)

    def _stopped(self) -> None:
        if self.launched:
            log.info("lab stopped")

    async def run(self) -> int:
        plan, cfg = self.plan, self.plan.cfg
        loop = asyncio.get_running_loop()
        async with contextlib.AsyncExitStack() as stack:
            for sig in stop_signals():
                loop.add_signal_handler(sig, self._on_signal, sig)
                stack.callback(loop.remove_signal_handler, sig)
            private_state_dir(cfg.state_dir)
            if plan.whole_lab:
                stack.callback(self._stopped)
                await asyncio.to_thread(stop_leftovers, cfg.state_dir, self.abort_start)  # a killed lab's
                stack.callback(forget, cfg.state_dir)  # last: all stopped, nothing left to record
                await self._launch_services(stack)
                self.launched = True
                lab_tokens(cfg, plan.simulated)
            if self.signalled:  # stopped while the services started: the hub never runs
                return 128 + self.signalled
            hub = self.hub = Hub(
                cfg, report_every_s=5.0, worker=plan.worker, workers=plan.workers, services=self.service_states
            )
            async with asyncio.TaskGroup() as tg:
                hub_task = tg.create_task(hub.run(), name="hub")
                helpers = [
                    tg.create_task(self._supervise(argv, f"worker {i}"), name=f"worker-{i}")
                    for i, argv in enumerate(plan.extra_workers, 1)
                ]
                if self.services:
                    helpers.append(tg.create_task(self._watch_services(), name="services"))
                await hub.ready.wait()
                self._save_broker_sessions()
                if plan.own_process:
                    settle_gc()
                if not self.stopping:  # a stop during the hub's start-up: no fleet, no banner
                    helpers += await self._start_fleet(tg, hub)
                if plan.worker == 0 and not self.stopping:
                    print(banner(cfg, hub.http_port, plan.simulated, plan.workers, hub.tls), flush=True)
                await hub_task
                for task in helpers:
                    task.cancel()
        return self.exit_code

    async def _launch_services(self, stack: contextlib.AsyncExitStack) -> None:
        """Each service starts in a thread (its start-up blocks) and is stopped when the stack closes (whichever
        process runs it by then: a restart replaces it); a stop during a start ends it at once, and the start
        stops what it spawned."""
        for start in service_starters(self.plan.cfg, self.abort_start):
            if self.signalled:
                return
            try:
                service = await asyncio.to_thread(start)
            except StartAborted:
                return
            supervised = _Supervised(
                start, self.abort_start, service, ServiceState(service.name, True, since=time.time())
            )
            stack.push_async_callback(asyncio.to_thread, supervised.stop)
            self.services.append(supervised)
            self._record()

    def service_states(self) -> list[ServiceState]:
        """What the hub shows of the lab's services (health, progress line)."""
        return [supervised.state for supervised in self.services]

    def _save_broker_sessions(self) -> None:
        """Once the hub has subscribed, mosquitto writes its persistence file now (SIGUSR1) instead of at its
        next autosave: a broker killed before then would come back without the hub's session, and readings
        sent before the hub subscribed again would have no subscriber."""
        for supervised in self.services:
            if supervised.service.name == "mosquitto" and supervised.service.alive():
                supervised.service.proc.send_signal(signal.SIGUSR1)

    async def _watch_services(self) -> None:
        """A service that dies is started again, with the same ports, data and config: at once, then with
        backoff while it keeps dying. One that dies FAST_FAILURES times within FAST_WINDOW_S takes the lab
        down, with its log's tail to say why. The hub keeps its spool meanwhile and reconnects by itself."""
        while True:
            await asyncio.sleep(SERVICE_CHECK_S)
            for supervised in self.services:
                if self.stopping:
                    return
                if not supervised.service.alive() and not await self._restart(supervised):
                    self.exit_code = 1
                    self._stop()
                    return

    async def _restart(self, supervised: _Supervised) -> bool:
        """Start a dead service again until it answers. False once it has failed too often: the lab stops."""
        name = supervised.service.name
        died = time.monotonic()
        while not self.stopping:
            code = supervised.service.proc.returncode
            failures = supervised.failed()
            supervised.state = replace(supervised.state, up=False, last_exit=code, since=time.time())
            if failures >= FAST_FAILURES:
                log.error(
                    "%s exited (code %s), %d times within %.0f s; stopping the lab. Its log:\n%s",
                    name,
                    code,
                    failures,
                    FAST_WINDOW_S,
                    supervised.service.log_tail(),
                )
                return False
            delay = SERVICE_RESTART.delay(failures - 1)
            log.error(
                "%s exited (code %s); restarting it in %.1f s. Its log:\n%s",
                name,
                code,
                delay,
                supervised.service.log_tail(),
            )
            await asyncio.sleep(delay)
            try:
                await asyncio.to_thread(supervised.restart)
            except StartAborted:
                return True
            except ServiceError as err:
                log.error("%s did not start again: %s", name, err)
                continue
            supervised.state = replace(
                supervised.state, up=True, restarts=supervised.state.restarts + 1, since=time.time()
            )
            self._record()
            log.warning(
                "%s restarted, back %.1f s after it died (restart %d)",
                name,
                time.monotonic() - died,
                supervised.state.restarts,
            )
            return True
        return True

    async def _supervise(self, argv: Sequence[str], name: str) -> None:
        """Run an extra worker; restart it if it dies while the lab runs; stop it when cancelled."""
        attempt = 0
        while True:
            async with _child(argv) as proc:
                self.workers[name] = proc.pid
                self._record()
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


@dataclass(slots=True)
class _Supervised:
    """A service the lab launched: how to start it again, the process running it now, and what health shows."""

    start: Callable[[], Service]
    abort: threading.Event  # the lab's: set, a start under way gives up
    service: Service
    state: ServiceState
    failures: list[float] = field(default_factory=list)  # time.monotonic() of its recent deaths and failed starts
    lock: threading.Lock = field(default_factory=threading.Lock)  # a start and the final stop, one after the other

    def failed(self) -> int:
        """Count one more failure; how many there were within FAST_WINDOW_S."""
        now = time.monotonic()
        self.failures = [t for t in self.failures if now - t < FAST_WINDOW_S] + [now]
        return len(self.failures)

    def restart(self) -> None:
        """Start it again (in a thread: a start blocks until the service answers)."""
        with self.lock:
            self.service = self.start()

    def stop(self) -> None:
        """When the lab closes: a restart under way gives up (or finishes) first, so no process is left behind."""
        self.abort.set()
        with self.lock:
            self.service.stop()


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
