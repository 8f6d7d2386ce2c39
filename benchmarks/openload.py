"""The open-loop benchmark's machinery (`bench_open.py`): the lab (the real mosquitto, influxd and hub
processes), the C publisher (`openpub.c`, compiled on first use), a 10 Hz sampler of the hub's RSS, the
broker's `$SYS` counters, loss by query, and the two references (the broker's raw rate, paho's bare rate).
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import bench_ingest
from benchmarks.bench_ingest import PROBE, hub_stats, influx_series
from hub.access.dynsec import HUB_USER
from hub.access.registry import Registry
from hub.credentials import load_credentials, read_secret
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port, stop_processes

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "benchmarks" / "openpub.c"
RESULTS = ROOT / "bench-results"


def openpub() -> Path:
    """The C publisher, compiled into bench-results/ on first use and whenever its source is newer."""
    binary = RESULTS / "openpub-bin" / "openpub"
    if not binary.exists() or binary.stat().st_mtime < SOURCE.stat().st_mtime:
        binary.parent.mkdir(parents=True, exist_ok=True)
        building = binary.with_name(f"openpub.{os.getpid()}")
        subprocess.run(["gcc", "-O2", "-Wall", "-o", str(building), str(SOURCE)], check=True)
        building.replace(binary)  # a run starting meanwhile never sees half a binary
    return binary


def device_id(i: int) -> str:
    return f"bench/d{i:04d}/aq1"


def count_stored(influx_port: int, seq_lo: int, seq_hi: int, since_ms: int) -> tuple[int, int]:
    """(points, distinct sequence numbers) stored for the bench devices with lo ≤ seq < hi, since `since_ms`:
    per device, summed (a device's seq values are its own)."""
    q = (
        "SELECT count(seq), count(distinct(seq)) FROM /^generic\\.bench\\./ WHERE device = 'aq1' "
        f"AND time >= {since_ms}ms AND seq >= {seq_lo} AND seq < {seq_hi} GROUP BY learner"
    )
    points = distinct = 0
    for series in influx_series(influx_port, q):
        _, n, d = series["values"][0]
        points, distinct = points + int(n), distinct + int(d)
    return points, distinct


def flat_counters(stats: dict[str, Any], prefix: str = "") -> dict[str, int]:
    """The integer counters of /api/stats, flattened (`spool.pauses`); durations and sizes left out."""
    out: dict[str, int] = {}
    for key, value in stats.items():
        name = prefix + key
        if isinstance(value, dict):
            out |= flat_counters(value, name + ".")
        elif isinstance(value, bool):
            out[name] = int(value)
        elif isinstance(value, int) and not any(s in key for s in ("_ms", "_s", "bytes", "uptime", "last")):
            out[name] = value
    return out


def cpu_s(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return 0.0


class Sampler(threading.Thread):
    """The hub's RSS (all workers together) and mosquitto's (where readings wait while the hub pauses its
    intake) at 10 Hz, with their peaks since the last `reset`."""

    def __init__(self, hub: list[psutil.Process], broker: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.hub, self.broker = hub, broker
        self.rss_mb = self.peak_mb = 0.0
        self.broker_rss_mb = self.broker_peak_mb = 0.0
        self.done = threading.Event()

    def sample(self) -> None:
        try:
            self.rss_mb = sum(p.memory_info().rss for p in self.hub) / 2**20
            self.broker_rss_mb = self.broker.memory_info().rss / 2**20
        except psutil.Error:
            pass  # a process that just stopped: the last figures stand

    def reset(self) -> None:
        self.sample()
        self.peak_mb, self.broker_peak_mb = self.rss_mb, self.broker_rss_mb

    def run(self) -> None:
        while not self.done.wait(0.1):
            self.sample()
            self.peak_mb = max(self.peak_mb, self.rss_mb)
            self.broker_peak_mb = max(self.broker_peak_mb, self.broker_rss_mb)


SYS_KEPT = (  # of `$SYS/broker/…`
    "publish/messages/dropped",
    "publish/messages/received",
    "store/messages/count",
    "store/messages/bytes",
    "clients/connected",
)


class SysWatch:
    """The broker's `$SYS` counters (published every 10 s), as the hub's account sees them on the internal
    listener; `peak` keeps each one's highest value since `reset`."""

    def __init__(self, port: int, login: tuple[str, str]) -> None:
        self.values: dict[str, float] = {}
        self.peak: dict[str, float] = {}
        self.updated: dict[str, float] = {}  # topic → monotonic time of its last value
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-open-sys")
        self.client.username_pw_set(*login)
        self.client.on_connect = lambda c, *_: c.subscribe("$SYS/#")
        self.client.on_message = self._on_message
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _on_message(self, _c: object, _u: object, msg: paho.MQTTMessage) -> None:
        try:
            value = float(msg.payload.split()[0])
        except (ValueError, IndexError):
            return
        topic = msg.topic.removeprefix("$SYS/broker/")
        if topic not in SYS_KEPT:
            return
        self.values[topic] = value
        self.peak[topic] = max(value, self.peak.get(topic, value))
        self.updated[topic] = time.monotonic()

    def reset(self) -> None:
        self.peak = dict(self.values)

    def fresh(self, topic: str, after: float, timeout: float = 12.0) -> float | None:
        """The counter's first value published after monotonic time `after` (mosquitto: every 10 s)."""
        deadline = time.monotonic() + timeout
        while self.updated.get(topic, 0.0) <= after and time.monotonic() < deadline:
            time.sleep(0.1)
        return self.values.get(topic)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@dataclass(frozen=True, slots=True)
class Sample:
    """The hub's counters (all workers summed), asked at `sent`, answered at `at` (monotonic times)."""

    sent: float
    at: float
    counters: dict[str, int]

    def __getitem__(self, key: str) -> int:
        return self.counters.get(key, 0)


class StatsPoller(threading.Thread):
    """Every worker's /api/stats every `interval_s` (10 Hz by default; the CPU modes poll once a second, as
    the poll costs the hub too). An overloaded hub answers late or not at all: the slowest answer and the
    unanswered polls since `reset` are kept, and a sample is only whole when every worker answered."""

    def __init__(self, ports: list[int], interval_s: float = 0.1) -> None:
        super().__init__(daemon=True)
        self.ports = ports
        self.interval_s = interval_s
        self.latest = Sample(0.0, 0.0, {})
        self.history: list[Sample] = []
        self.slowest_s = 0.0
        self.unanswered = 0
        self.done = threading.Event()

    def reset(self) -> None:
        self.history, self.slowest_s, self.unanswered = [], 0.0, 0

    def run(self) -> None:
        while not self.done.is_set():
            sent = time.monotonic()
            total: dict[str, int] = {}
            try:
                for port in self.ports:
                    for key, value in flat_counters(hub_stats(port)).items():
                        total[key] = total.get(key, 0) + value
            except (OSError, TimeoutError):
                self.unanswered += 1
                total = {}
            at = time.monotonic()
            self.slowest_s = max(self.slowest_s, at - sent)
            if total:
                self.latest = Sample(sent, at, total)
                self.history.append(self.latest)
            self.done.wait(max(0.0, sent + self.interval_s - time.monotonic()))

    def after(self, moment: float, timeout: float = 60.0) -> Sample:
        """The first sample asked for after `moment` (the latest one if none comes within `timeout`)."""
        deadline = time.monotonic() + timeout
        while self.latest.sent < moment and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.latest


@dataclass
class Publisher:
    """One run of `openpub pub`: its progress lines are read by a thread; `on_start` runs when it begins."""

    lines: list[str]
    rate: float
    seconds: float = 0.0
    count: int = 0
    seq_start: int = 0
    flush_ms: float = 0.0
    on_start: Callable[[], None] = lambda: None
    t0: float = 0.0  # monotonic time of the schedule's origin
    connect_s: float = 0.0
    sent: int = 0
    behind_ms: float = 0.0
    result: dict[str, Any] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    started: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    def start(self) -> None:
        argv = [str(openpub()), "pub", "-", "--rate", str(self.rate), "--seq-start", str(self.seq_start)]
        argv += ["--flush-ms", str(self.flush_ms)]
        argv += ["--count", str(self.count)] if self.count else ["--seconds", str(self.seconds)]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdin is not None
        self.proc.stdin.write("\n".join(self.lines).encode() + b"\n")
        self.proc.stdin.close()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for raw in self.proc.stdout:
            word, _, rest = raw.decode().strip().partition(" ")
            if word == "connected":
                _, t0_ns, connect_s = rest.split()
                self.t0, self.connect_s = int(t0_ns) / 1e9, float(connect_s)
                self.on_start()
                self.started.set()
            elif word == "progress":
                _, sent, behind = rest.split()
                self.sent, self.behind_ms = int(sent), float(behind)
            elif word == "done":
                self.result = json.loads(rest)
                self.sent = int(self.result["sent"])

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait(self) -> dict[str, Any]:
        assert self.proc is not None
        self.proc.wait()
        assert self.reader is not None
        self.reader.join(10)  # its last line
        if self.proc.returncode != 0 or not self.result:
            raise RuntimeError(f"the publisher failed (exit code {self.proc.returncode}); see its stderr above")
        return self.result

    def stop(self) -> None:
        if self.proc is not None:
            stop_processes([self.proc], 5)


class Lab:
    """A fresh state directory with the lab's real mosquitto and influxd; `start_hub` writes the lab config
    (closed: every bench device declared as `generic`, each with its own broker account; open: anonymous
    devices, only the latency probe declared) and starts the hub's processes. `stop` stops them all."""

    def __init__(self, devices: int, open_mode: bool, workers: int, hub_options: Sequence[str] = ()) -> None:
        """`hub_options`: `key = value` lines for the hub's [hub] table (TOML values), e.g. `batch_max_points = 10000`."""
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # mosquitto inherits it: 1,000+ clients
        self.devices, self.open_mode, self.workers = devices, open_mode, workers
        self.hub_options = list(hub_options)
        self.state = Path(tempfile.mkdtemp(prefix="labhub-open-"))
        os.chmod(self.state, 0o755)
        self.mqtt_port, self.influx_port, self.rpc_port = free_port(), free_port(), free_port()
        base = free_port()
        self.http_ports = [base + i for i in range(workers)]  # worker i serves on http_port + i
        self.hubs: list[subprocess.Popen[bytes]] = []
        self.broker: Service | None = None
        self.influxd: Service | None = None
        self.sys: SysWatch | None = None
        self.accounts_s = 0.0  # from the hub's start until the declared devices' accounts are saved
        self.hub_start_s = 0.0
        self.start_cpu_s: dict[str, float] = {}
        self.max_connections = devices + 100
        self.internal_port = self.mqtt_port + 1
        self.hub_login = (HUB_USER, "")

    def start_services(self) -> None:
        """mosquitto (closed, or open to anonymous clients) and influxd; the viewer token; the $SYS watcher."""
        self.broker = start_mosquitto(
            self.state, port=self.mqtt_port, open_mode=self.open_mode, max_connections=self.max_connections
        )
        self.influxd = start_influxd(self.state, http_port=self.influx_port, rpc_port=self.rpc_port)
        registry = Registry(self.state / "registry.sqlite3")
        _, bench_ingest.TOKEN[0] = registry.add_token("viewer", "*", "benchmark")
        registry.close()
        self.hub_login = (HUB_USER, read_secret(self.state / "secrets" / "mqtt-hub") or "")
        self.sys = SysWatch(self.internal_port, self.hub_login)

    def start_hub(self) -> None:
        declared = [PROBE] + ([] if self.open_mode else [device_id(i) for i in range(self.devices)])
        devices = "".join(f'[[devices]]\nid = "{d}"\nkind = "generic"\n' for d in declared)
        cfg = self.state / "bench.toml"
        cfg.write_text(
            f'state_dir = "{self.state}"\n'
            f"[mqtt]\nport = {self.mqtt_port}\nlaunch = false\nmax_connections = {self.max_connections}\n"
            f'[influx]\nurl = "http://127.0.0.1:{self.influx_port}"\nlaunch = false\n'
            f"[hub]\nhttp_port = {self.http_ports[0]}\nopen_mode = {str(self.open_mode).lower()}\n"
            + "".join(f"{option}\n" for option in self.hub_options)
            + devices
        )
        assert self.broker is not None
        broker = psutil.Process(self.broker.proc.pid)
        broker_cpu0 = cpu_s(broker)
        started = time.monotonic()
        for worker in range(self.workers):
            argv = [sys.executable, "-m", "hub.cli", "hub", "--config", str(cfg)]
            argv += ["--worker", str(worker), "--workers", str(self.workers)]
            log = open(self.state / f"hub-{worker}.log", "wb")
            self.hubs.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log))
            log.close()
        # Worker 0 makes the declared devices' broker accounts (saved to the credentials file at the end)
        # before it serves HTTP or connects.
        deadline, shown = started + 600, started
        while not all(self.connected(port) for port in self.http_ports):
            if not self.accounts_s and len(load_credentials(self.state)) >= len(declared):
                self.accounts_s = time.monotonic() - started
            if any(hub.poll() is not None for hub in self.hubs) or time.monotonic() > deadline:
                raise RuntimeError(f"the hub did not start; see {self.state}/hub-*.log")
            if time.monotonic() - shown >= 5:
                shown = time.monotonic()
                made = f"made in {self.accounts_s:.1f} s" if self.accounts_s else "being made"
                print(f"  hub starting for {shown - started:.0f} s: {len(declared)} broker accounts {made}", flush=True)
            time.sleep(0.05)
        self.accounts_s = self.accounts_s or time.monotonic() - started
        self.hub_start_s = time.monotonic() - started
        self.start_cpu_s = {"hub": cpu_s(psutil.Process(self.hubs[0].pid)), "mosquitto": cpu_s(broker) - broker_cpu0}
        print(
            f"hub up in {self.hub_start_s:.1f} s: {len(declared)} declared devices' broker accounts made "
            f"in {self.accounts_s:.1f} s (CPU meanwhile: hub {self.start_cpu_s['hub']:.1f} s, "
            f"mosquitto {self.start_cpu_s['mosquitto']:.1f} s)"
        )

    def connected(self, port: int) -> bool:
        try:
            return bool(hub_stats(port)["mqtt"]["connected"])  # type: ignore[index]
        except OSError:
            return False

    def device_lines(self) -> list[str]:
        """The C publisher's device file: host port client_id username password topic."""
        passwords = {} if self.open_mode else load_credentials(self.state)
        lines = []
        for i in range(self.devices):
            ref = device_id(i)
            login = "- -" if self.open_mode else f"{ref} {passwords[ref]}"
            lines.append(f"127.0.0.1 {self.mqtt_port} bench-d{i:04d} {login} lab/{ref}/telemetry")
        return lines

    def processes(self) -> dict[str, list[psutil.Process]]:
        assert self.broker is not None and self.influxd is not None
        return {
            "hub": [psutil.Process(h.pid) for h in self.hubs],
            "influxd": [psutil.Process(self.influxd.proc.pid)],
            "mosquitto": [psutil.Process(self.broker.proc.pid)],
        }

    def stop(self) -> None:
        stop_processes(self.hubs, 20)
        if self.sys is not None:
            self.sys.close()
        for service in (self.influxd, self.broker):
            if service is not None:
                service.stop()


def main_thread_sched(proc: psutil.Process) -> tuple[int, int] | None:
    """Nanoseconds a process's main thread has run on a CPU, and waited runnable for one (Linux's schedstat)."""
    try:
        run, wait, _ = Path(f"/proc/{proc.pid}/task/{proc.pid}/schedstat").read_text().split()
        return int(run), int(wait)
    except (OSError, ValueError):
        return None


class CpuWindow:
    """CPU seconds of each service (all its processes) between `__init__` and `pct()`, as % of one core; and
    `contention()`: how the hub's main threads shared the machine meanwhile."""

    def __init__(self, procs: dict[str, list[psutil.Process]]) -> None:
        self.procs = procs
        self.at = time.monotonic()
        self.start = self._now()
        self.sched = [main_thread_sched(p) for p in procs["hub"]]
        self.machine = psutil.cpu_times()

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_s(p) for p in ps) for name, ps in self.procs.items()}

    def pct(self) -> dict[str, float]:
        span = max(1e-6, time.monotonic() - self.at)
        now = self._now()
        return {name: round(100 * (now[name] - self.start[name]) / span, 1) for name in self.procs}

    def contention(self) -> dict[str, float | None]:
        """Since `__init__`, as % of the window: how long the hub's main thread (the mean over workers) ran,
        and how long it was ready to run but waited for a CPU; and the machine's idle share (all cores).
        A hub that waits for a CPU while the machine is busy is short of cores, not slow or held back."""
        span_ns = max(1.0, (time.monotonic() - self.at) * 1e9)
        ran, waited = [], []
        for proc, before in zip(self.procs["hub"], self.sched, strict=True):
            after = main_thread_sched(proc)
            if before is not None and after is not None:
                ran.append(100 * (after[0] - before[0]) / span_ns)
                waited.append(100 * (after[1] - before[1]) / span_ns)
        now = psutil.cpu_times()
        total = sum(now) - sum(self.machine)
        idle = (now.idle + getattr(now, "iowait", 0.0)) - (self.machine.idle + getattr(self.machine, "iowait", 0.0))
        return {
            "hub_main_ran_pct": round(sum(ran) / len(ran), 1) if ran else None,
            "hub_main_waited_pct": round(sum(waited) / len(waited), 1) if waited else None,
            "machine_idle_pct": round(100 * idle / total, 1) if total > 0 else None,
        }


def ref_lines(port: int, login: tuple[str, str], connections: int) -> list[str]:
    return [f"127.0.0.1 {port} bench-raw{i} {login[0]} {login[1]} lab/raw/d{i}/x/telemetry" for i in range(connections)]


def raw_rate(lab: Lab, count: int, connections: int) -> dict[str, float]:
    """The C publisher flat out → mosquitto → the C subscriber counting PUBLISH packets (no hub running)."""
    argv = [str(openpub()), "sub", "127.0.0.1", str(lab.internal_port), "bench-rawsub", *lab.hub_login, "lab/raw/#"]
    sub = subprocess.Popen([*argv, "--count", str(count)], stdout=subprocess.PIPE)
    try:
        assert sub.stdout is not None
        if sub.stdout.readline().strip() != b"ready":
            raise RuntimeError("the raw subscriber did not subscribe")
        pub = Publisher(ref_lines(lab.internal_port, lab.hub_login, connections), rate=0, count=count)
        pub.start()
        pub.wait()
        out = json.loads(sub.stdout.readline().decode().partition(" ")[2])
    finally:
        sub.terminate()
        sub.wait()
    span = max(1e-9, (out["last_ns"] - out["first_ns"]) / 1e9)
    return {"rate": round(out["received"] / span), "received": out["received"], "sent": count}


def paho_rate(lab: Lab, count: int, connections: int) -> dict[str, float]:
    """The same flat-out load to a stock paho-mqtt 2.x client that only counts messages in on_message."""
    stamps = [0.0, 0.0]  # first and last arrival (monotonic)
    counted = [0]
    subscribed = threading.Event()

    def on_message(_c: object, _u: object, _m: object) -> None:
        stamps[1] = time.monotonic()
        if not counted[0]:
            stamps[0] = stamps[1]
        counted[0] += 1

    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-paho")
    client.username_pw_set(*lab.hub_login)
    client.on_connect = lambda c, *_: c.subscribe("lab/raw/#")
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", lab.internal_port)
    client.loop_start()
    try:
        if not subscribed.wait(10):
            raise RuntimeError("paho did not subscribe")
        pub = Publisher(ref_lines(lab.internal_port, lab.hub_login, connections), rate=0, count=count)
        pub.start()
        pub.wait()
        while counted[0] < count and time.monotonic() - max(stamps[1], pub.t0) < 3:
            time.sleep(0.01)
    finally:
        client.loop_stop()
        client.disconnect()
    span = max(1e-9, stamps[1] - stamps[0])
    return {"rate": round(counted[0] / span), "received": counted[0], "sent": count}
