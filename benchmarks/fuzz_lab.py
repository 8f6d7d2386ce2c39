"""Long-run fuzz of a real lab: hostile MQTT messages and HTTP requests for N minutes, with canaries.

    .venv/bin/python benchmarks/fuzz_lab.py --minutes 10          # the acceptance run
    .venv/bin/python benchmarks/fuzz_lab.py --minutes 2 --rate 2500

It starts its own closed mosquitto and influxd, registers learners (each with an air-quality sensor, an arm and
a generic device, a learner MQTT account and an API token) and a canary learner, and runs the hub in its own
process with a loop-lag probe beside it. Load generators in other processes offer:

- hostile MQTT (raw QoS 0 PUBLISH frames, each device and learner app on its own account): telemetry as JSON,
  line protocol and bare values on `telemetry/<field>`, status, acknowledgements, command requests — drawn from
  the Hypothesis strategies of tests/hostile.py (a pool per process and seed), varied by cheap mutations;
- hostile HTTP (aiohttp, the learners' tokens): command bodies with hostile headers, query and paths, now and
  then a cohort CSV import and a WebSocket with hostile messages; hostile arm firmware answers every command
  with drawn acknowledgements.

The canaries (an air-quality sensor and a generic device) publish every 50 ms; the main process checks every
second that their readings are stored with no gap over 1 s, and probes publish → queryable. Progress every
~10 s; at the end: messages and requests sent, hub crashes, max canary gap, foreign points (every series
checked as in the adversarial tests), boundary failures by surface, errors logged but not counted, hub peak
RSS, loop lag p99. Exit status 0 when the acceptance holds (see --help), 1 otherwise.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import multiprocessing as mp
import os
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from benchmarks import rawmqtt
from devices.topics import DeviceRef
from hub.config import HubConfig, InfluxConfig, LabConfig, MqttConfig
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port

DB = "labhub"
LEARNERS = ("l0", "l1", "l2", "l3")
DEVICES = {"aq1": "air_quality", "arm1": "arm", "gen1": "generic"}
CANARY = "cyd"
CANARIES = {"canq": "air_quality", "cang": "generic"}
CANARY_PERIOD_S = 0.05
ACCEPT = {"mqtt": 1_000_000, "http": 10_000, "gap_s": 1.0, "rss_mb": 200.0}


def lab_config(state: Path, mqtt_port: int, influx_port: int, http_port: int) -> LabConfig:
    return LabConfig(
        state_dir=state,
        mqtt=MqttConfig(port=mqtt_port, launch=False, client_id="fuzz-hub"),
        influx=InfluxConfig(url=f"http://127.0.0.1:{influx_port}", database=DB, launch=False),
        hub=HubConfig(http_port=http_port, open_mode=False),
    )


def percentile(values: list[float], p: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# The hub, in its own process, with a lag probe and an error-log counter ----------------------------------------


def hub_process(state: str, ports: tuple[int, int, int], status_path: str) -> None:
    from hub.runtime import Hub

    logging.basicConfig(
        level=logging.INFO,
        filename=str(Path(state) / "hub.log"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    errors: dict[str, int] = {}

    class Count(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            errors[record.name] = errors.get(record.name, 0) + 1

    logging.getLogger().addHandler(Count(logging.ERROR))
    lags: list[float] = []

    async def probe() -> None:
        while True:
            started = time.monotonic()
            await asyncio.sleep(0.005)
            lags.append(time.monotonic() - started - 0.005)

    def write_status(status: dict[str, Any]) -> None:
        tmp = status_path + ".tmp"
        Path(tmp).write_text(json.dumps(status))
        os.replace(tmp, status_path)

    async def report(hub: Hub) -> None:
        while True:
            await asyncio.sleep(1.0)
            boundaries = getattr(hub, "boundaries", None)
            failures = {f"{s}/{e}": n for (s, e), n in getattr(boundaries, "failures", {}).items()}
            status = {
                "lag_p99_s": percentile(lags, 99),
                "lag_max_s": max(lags, default=0.0),
                "lag_samples": len(lags),
                "boundaries": failures,
                "errors_logged": dict(errors),
                "received": hub.ingest.totals.received,
                "stored": hub.ingest.totals.stored,
                "rejected": sum(hub.ingest.totals.rejected.values()),
            }
            write_status(status)

    async def main() -> None:
        hub = Hub(lab_config(Path(state), *ports))
        tasks = [asyncio.create_task(probe()), asyncio.create_task(report(hub))]
        try:
            await hub.run()
        finally:
            for task in tasks:
                task.cancel()

    asyncio.run(main())


# Hostile MQTT: raw QoS 0 PUBLISH frames, one connection per account ---------------------------------------------


def _frame(topic: str, payload: bytes) -> bytes:
    return rawmqtt.publish_frame(rawmqtt.topic_head(topic), payload)


class RawClient:
    """A minimal MQTT 3.1.1 client that only publishes at QoS 0 (cheap: the load must not starve the hub)."""

    def __init__(self, port: int, username: str, password: str) -> None:
        self.port, self.username, self.password = port, username, password
        self.sock: socket.socket | None = None
        self.reconnects = 0

    def connect(self) -> None:
        client_id = f"fuzz-{os.getpid()}-{random.randrange(1 << 30)}"
        sock = rawmqtt.connect(self.port, client_id, self.username, self.password)
        sock.setblocking(True)
        self.sock = sock

    def send(self, data: bytes) -> None:
        for _ in range(3):
            try:
                if self.sock is None:
                    self.connect()
                    self.reconnects += 1
                assert self.sock is not None
                self.sock.sendall(data)
                return
            except OSError:
                with contextlib.suppress(OSError):
                    if self.sock is not None:
                        self.sock.close()
                self.sock = None
                time.sleep(0.05)


def mqtt_load(
    seed: int, port: int, accounts: list[dict[str, Any]], rate: float, sent: Any, stop: Any, ready: Any
) -> None:
    """One load process: draw pools, build frames for each account's own topics, send them at `rate`/s."""
    from tests import hostile

    rng = random.Random(seed)
    telemetry = [p for p in hostile.draw(hostile.telemetry_json, 1500, seed)] + hostile.draw(
        hostile.telemetry_lp, 600, seed
    )
    bare = hostile.draw(hostile.telemetry_bare, 600, seed)
    status = hostile.draw(hostile.status_payload, 200, seed)
    acks = hostile.draw(hostile.ack_payload(), 400, seed)
    requests = hostile.draw(hostile.command_payload, 800, seed)
    frames: list[tuple[int, bytes]] = []  # (client index, frame)
    clients = [RawClient(port, a["username"], a["password"]) for a in accounts]
    for client in clients:
        client.connect()
    for _ in range(30_000):
        i = rng.randrange(len(accounts))
        account = accounts[i]
        if account["learner_app"]:
            device = rng.choice(account["devices"])
            payload = hostile.mutate(rng, rng.choice(requests), requests)
            frames.append((i, _frame(f"lab/{device}/commands/request", payload)))
            continue
        base = f"lab/{account['username']}"
        roll = rng.random()
        if roll < 0.6:
            frames.append((i, _frame(base + "/telemetry", hostile.mutate(rng, rng.choice(telemetry), telemetry))))
        elif roll < 0.8:
            name, payload = rng.choice(bare)
            frames.append((i, _frame(f"{base}/telemetry/{name}", hostile.mutate(rng, payload, telemetry))))
        elif roll < 0.85:
            frames.append((i, _frame(base + "/status", rng.choice(status))))
        elif account["arm"]:
            frames.append((i, _frame(base + "/ack", hostile.mutate(rng, rng.choice(acks), acks))))
        else:
            frames.append((i, _frame(base + "/telemetry", rng.choice(telemetry))))
    ready.set()
    started = time.monotonic()
    n = 0
    chunk = 50
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate)
        if n >= due:
            time.sleep(0.005)
            continue
        batch: dict[int, list[bytes]] = {}
        for k in range(chunk):
            i, frame = frames[(n + k) % len(frames)]
            batch.setdefault(i, []).append(frame)
        for i, parts in batch.items():
            clients[i].send(b"".join(parts))
        n += chunk
        with sent.get_lock():
            sent.value += chunk


# Hostile HTTP, WebSockets and arm firmware -------------------------------------------------------------------------


def http_load(seed: int, cfg: dict[str, Any], rate: float, sent: Any, bad: Any, stop: Any, ready: Any) -> None:
    import aiohttp
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    from tests import hostile

    rng = random.Random(seed)
    commands = hostile.draw(hostile.http_commands, 1500, seed)
    csvs = hostile.draw(hostile.cohort_csv("csvk"), 60, seed)
    frames = hostile.draw(hostile.ws_frames, 200, seed)
    queries = hostile.draw(hostile.ws_queries, 60, seed)
    firmware = hostile.draw(hostile.ack_bodies, 300, seed)

    firmware_clients = []
    for arm in cfg["arms"]:
        client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-fw-{arm['username'].replace('/', '-')}")
        client.username_pw_set(arm["username"], arm["password"])
        topic = f"lab/{arm['username']}"

        def on_message(c: Any, u: Any, msg: Any, topic: str = topic) -> None:
            try:
                command_id = str(json.loads(msg.payload)["id"])
            except (ValueError, KeyError, TypeError):
                return
            c.publish(topic + "/ack", json.dumps({"id": command_id, "status": "accepted"}), qos=1)
            body = dict(rng.choice(firmware))
            body["id"] = command_id
            c.publish(topic + "/ack", hostile.encode(hostile.dump(body)), qos=1)

        client.on_message = on_message
        client.on_connect = lambda c, u, f, rc, p, topic=topic: c.subscribe(topic + "/commands", qos=1)
        client.connect("127.0.0.1", cfg["mqtt_port"])
        client.loop_start()
        firmware_clients.append(client)

    async def one(session: aiohttp.ClientSession, i: int) -> None:
        learner = cfg["learners"][i % len(cfg["learners"])]
        token = learner["tokens"][i % len(learner["tokens"])]
        base = cfg["base"]
        roll = rng.random()
        if roll < 0.02:
            body = rng.choice(csvs).replace(b"csvk", cfg["csv_cohort"].encode())
            headers = {"Authorization": f"Bearer {cfg['trainer']}", "Content-Type": "text/csv"}
            async with session.post(base + "/api/registry/import", data=body, headers=headers) as resp:
                await resp.read()
                status = resp.status
        elif roll < 0.05:
            query = urllib.parse.urlencode([*rng.choice(queries), ("device", learner["arm"])])
            try:
                async with session.ws_connect(
                    f"{base}/api/live?{query}", protocols=("labhub", f"bearer.{token}")
                ) as ws:
                    for frame in rng.sample(frames, 4):
                        if ws.closed:
                            break
                        with contextlib.suppress(ConnectionResetError, aiohttp.ClientError):
                            await (
                                ws.send_str(frame.text) if frame.text is not None else ws.send_bytes(frame.data or b"")
                            )
                status = 101
            except aiohttp.WSServerHandshakeError as err:
                status = err.status
        else:
            command = rng.choice(commands)
            other = cfg["learners"][(i + 1) % len(cfg["learners"])]
            target = learner["arm"] if rng.random() < 0.9 else other["arm"]
            path = command.path(target)
            headers = {"Authorization": f"Bearer {token}"}
            if command.content_type:
                headers["Content-Type"] = command.content_type
            if command.idempotency_key is not None:
                headers["Idempotency-Key"] = command.idempotency_key
            params = {"wait": command.wait.encode("utf-8", "replace").decode()} if command.wait is not None else {}
            async with session.post(base + path, data=command.body, params=params, headers=headers) as resp:
                await resp.read()
                status = resp.status
            if target != learner["arm"] and command.path_device is None and 200 <= status < 300:
                with bad.get_lock():
                    bad.value += 1000  # a learner commanded another's arm
        if status >= 500:
            with bad.get_lock():
                bad.value += 1
        with sent.get_lock():
            sent.value += 1

    async def main() -> None:
        ready.set()
        started = time.monotonic()
        n = 0
        pending: set[asyncio.Task[None]] = set()
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=40)) as session:
            while not stop.is_set():
                due = int((time.monotonic() - started) * rate)
                while n < due and len(pending) < 64:
                    task = asyncio.create_task(one(session, n))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
                    n += 1
                await asyncio.sleep(0.01)
            await asyncio.gather(*pending, return_exceptions=True)

    asyncio.run(main())
    for client in firmware_clients:
        client.disconnect()
        client.loop_stop()


# Canaries and checks (main process) -------------------------------------------------------------------------------


def influx(port: int, q: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/query?" + urllib.parse.urlencode({"db": DB, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(url, timeout=10) as resp:
        data = json.load(resp)
    series: list[dict[str, Any]] = data["results"][0].get("series", [])
    return series


class Canaries(threading.Thread):
    """Publish every 50 ms from each canary; measure the gaps in what is stored and publish → queryable."""

    def __init__(self, mqtt_port: int, influx_port: int, cohort: str, passwords: dict[str, str]) -> None:
        super().__init__(daemon=True)
        import paho.mqtt.client as paho
        from paho.mqtt.enums import CallbackAPIVersion

        from tests import hostile

        self.influx_port = influx_port
        self.stop = threading.Event()
        self.refs = {name: DeviceRef(cohort, CANARY, name) for name in CANARIES}
        self.measurements = {
            name: hostile.reading_measurement(kind, self.refs[name]) for name, kind in CANARIES.items()
        }
        self.clients = {}
        for name, ref in self.refs.items():
            client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"fuzz-canary-{name}")
            client.username_pw_set(ref.key, passwords[ref.key])
            client.connect("127.0.0.1", mqtt_port)
            client.loop_start()
            self.clients[name] = client
        self.max_gap_s = 0.0
        self.max_store_s = 0.0
        self.gaps_over_1s = 0
        self.checked_to = time.time_ns()
        self.last_seen = {name: time.time_ns() for name in CANARIES}

    def run(self) -> None:
        n = 0
        next_check = time.monotonic() + 1.0
        while not self.stop.wait(CANARY_PERIOD_S):
            n += 1
            self.clients["canq"].publish(
                self.refs["canq"].topic("telemetry"), json.dumps({"temperature": 20 + n % 50 / 10})
            )
            self.clients["cang"].publish(
                self.refs["cang"].topic("telemetry"), json.dumps({"level": float(n), "label": "ok"})
            )
            if time.monotonic() >= next_check:
                next_check = time.monotonic() + 1.0
                with contextlib.suppress(OSError, KeyError, ValueError):
                    self.check()

    def check(self) -> None:
        """Stored since the last check, per canary: gaps between receipt stamps (a stalled hub shows as one)."""
        now = time.time_ns()
        for name in CANARIES:
            column = "temperature" if name == "canq" else "level"
            q = (
                f'SELECT "{column}" FROM "{self.measurements[name]}" WHERE device = \'{name}\' '
                f"AND time > {self.last_seen[name]} ORDER BY time"
            )
            series = influx(self.influx_port, q)
            times = [row[0] for row in series[0]["values"]] if series else []
            # The newest reading may still be on its way: a gap counts once the next one is stored, or once it
            # is over 1 s old with nothing after it.
            points = [self.last_seen[name], *times]
            for a, b in itertools.pairwise(points):
                self.note_gap((b - a) / 1e9)
            if times:
                self.last_seen[name] = times[-1]
            self.max_store_s = max(self.max_store_s, (now - points[-1]) / 1e9 - CANARY_PERIOD_S)
            if (now - points[-1]) / 1e9 > 1.0 + CANARY_PERIOD_S:
                self.note_gap((now - points[-1]) / 1e9)

    def note_gap(self, gap: float) -> None:
        if gap > self.max_gap_s:
            self.max_gap_s = gap
        if gap > 1.0:
            self.gaps_over_1s += 1

    def close(self) -> None:
        self.stop.set()
        self.join(5)
        for client in self.clients.values():
            client.disconnect()
            client.loop_stop()


# Setup -------------------------------------------------------------------------------------------------------------


async def register(cfg: LabConfig, cohort: str, csv_cohort: str) -> dict[str, Any]:
    """Accounts for every learner, device and canary (one CSV import), a bridge-free lab; tokens."""
    from hub.access.accounts import Accounts
    from hub.access.cohort_csv import parse_csv
    from hub.access.registry import Registry

    registry = Registry(cfg.registry_path)
    try:
        rows = ["cohort,learner,device,kind,profile,description"]
        for learner in (*LEARNERS, CANARY):
            rows.append(f"{cohort},{learner},,,,")
        for learner in LEARNERS:
            rows += [
                f"{cohort},{learner},{d},{kind},{'mearm' if kind == 'arm' else ''}," for d, kind in DEVICES.items()
            ]
        rows += [f"{cohort},{CANARY},{d},{kind},," for d, kind in CANARIES.items()]
        made = await Accounts.for_lab(cfg, registry).import_lines(
            parse_csv("\n".join(rows), frozenset(["mearm", "braccio"]))
        )
        passwords = {c.username: c.password for c in made}
        tokens = {
            learner: [registry.add_token("learner", f"{cohort}/{learner}", f"fuzz {k}")[1] for k in range(2)]
            for learner in LEARNERS
        }
        trainer = registry.add_token("trainer", csv_cohort, "fuzz")[1]
    finally:
        registry.close()
    return {"passwords": passwords, "tokens": tokens, "trainer": trainer}


def foreign(influx_port: int, cohort: str) -> list[str]:
    from tests import hostile

    devices = [(DeviceRef(cohort, learner, d), kind) for learner in LEARNERS for d, kind in DEVICES.items()]
    devices += [(DeviceRef(cohort, CANARY, d), kind) for d, kind in CANARIES.items()]
    keys = [row[0] for s in influx(influx_port, "SHOW SERIES") for row in s.get("values", [])]
    fields = {s["name"]: [row[0] for row in s.get("values", [])] for s in influx(influx_port, "SHOW FIELD KEYS")}
    return hostile.foreign_points(keys, fields, hostile.allowed_series(devices))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--rate", type=float, default=2500.0, help="hostile MQTT messages/s offered, in all")
    ap.add_argument("--http-rate", type=float, default=25.0, help="hostile HTTP requests/s offered")
    ap.add_argument("--publishers", type=int, default=2, help="MQTT load processes")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the state directory (logs) at the end")
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="labhub-fuzz-"))
    os.chmod(state, 0o755)
    mqtt_port, influx_port, rpc_port, http_port = free_port(), free_port(), free_port(), free_port()
    broker = start_mosquitto(state, port=mqtt_port, open_mode=False)
    influxd = start_influxd(state, http_port=influx_port, rpc_port=rpc_port)
    cfg = lab_config(state, mqtt_port, influx_port, http_port)
    cohort, csv_cohort = "fuzz", "fuzzcsv"
    ctx = mp.get_context("spawn")
    status_path = str(state / "hub-status.json")
    procs: list[Any] = []
    hub: Any = None
    canaries: Canaries | None = None
    crashes = 0
    peak_rss = 0.0
    try:
        lab = asyncio.run(register(cfg, cohort, csv_cohort))
        passwords = lab["passwords"]

        def start_hub() -> Any:
            proc = ctx.Process(target=hub_process, args=(str(state), (mqtt_port, influx_port, http_port), status_path))
            proc.start()
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/healthz", timeout=2):
                        return proc
                time.sleep(0.1)
            raise SystemExit(f"the hub did not start; see {state}/hub.log")

        hub = start_hub()
        canaries = Canaries(mqtt_port, influx_port, cohort, passwords)
        canaries.start()
        stop = ctx.Event()
        mqtt_sent = ctx.Value("q", 0)
        http_sent = ctx.Value("q", 0)
        http_bad = ctx.Value("q", 0)
        accounts = []
        for learner in LEARNERS:
            key = f"{cohort}/{learner}"
            accounts.append(
                {
                    "username": key,
                    "password": passwords[key],
                    "learner_app": True,
                    "arm": False,
                    "devices": [f"{key}/{d}" for d in DEVICES],
                }
            )
            for d, kind in DEVICES.items():
                accounts.append(
                    {
                        "username": f"{key}/{d}",
                        "password": passwords[f"{key}/{d}"],
                        "learner_app": False,
                        "arm": kind == "arm",
                    }
                )
        readies = []
        for i in range(args.publishers):
            ready = ctx.Event()
            share = accounts[i :: args.publishers]
            procs.append(
                ctx.Process(
                    target=mqtt_load,
                    args=(args.seed * 100 + i, mqtt_port, share, args.rate / args.publishers, mqtt_sent, stop, ready),
                )
            )
            readies.append(ready)
        http_cfg = {
            "base": f"http://127.0.0.1:{http_port}",
            "mqtt_port": mqtt_port,
            "learners": [{"tokens": lab["tokens"][learner], "arm": f"{cohort}/{learner}/arm1"} for learner in LEARNERS],
            "arms": [{"username": f"{cohort}/{l}/arm1", "password": passwords[f"{cohort}/{l}/arm1"]} for l in LEARNERS],  # noqa: E741
            "trainer": lab["trainer"],
            "csv_cohort": csv_cohort,
        }
        ready = ctx.Event()
        procs.append(
            ctx.Process(target=http_load, args=(args.seed, http_cfg, args.http_rate, http_sent, http_bad, stop, ready))
        )
        readies.append(ready)
        for proc in procs:
            proc.start()
        print(f"drawing hostile pools ({args.publishers} MQTT processes, 1 HTTP process)…", flush=True)
        for ready in readies:
            ready.wait(300)
        print(
            f"fuzzing for {args.minutes} min: {args.rate:.0f} MQTT msg/s and {args.http_rate:.0f} HTTP req/s offered",
            flush=True,
        )
        started = time.monotonic()
        end = started + args.minutes * 60
        next_print = started + 10
        last = (0, 0, started)
        status: dict[str, Any] = {}
        while time.monotonic() < end:
            time.sleep(0.5)
            if not hub.is_alive():
                crashes += 1
                print(f"!! the hub died (exit code {hub.exitcode}); restarting it", flush=True)
                hub = start_hub()
            with contextlib.suppress(psutil.Error):
                peak_rss = max(peak_rss, psutil.Process(hub.pid).memory_info().rss / 2**20)
            with contextlib.suppress(OSError, ValueError):
                status = json.loads(Path(status_path).read_text())
            now = time.monotonic()
            if now >= next_print:
                next_print += 10
                m, h = mqtt_sent.value, http_sent.value
                rate_m = (m - last[0]) / (now - last[2])
                rate_h = (h - last[1]) / (now - last[2])
                last = (m, h, now)
                failures = sum(status.get("boundaries", {}).values())
                print(
                    f"{now - started:6.0f} s  MQTT {m:,} ({rate_m:,.0f}/s)  HTTP {h:,} ({rate_h:.0f}/s, bad {http_bad.value})  "
                    f"hub received {status.get('received', 0):,} rejected {status.get('rejected', 0):,}  "
                    f"canary max gap {canaries.max_gap_s:.2f} s  lag p99 {status.get('lag_p99_s', 0) * 1000:.1f} ms "
                    f"max {status.get('lag_max_s', 0) * 1000:.0f} ms  boundary failures {failures}  RSS {peak_rss:.0f} MB  "
                    f"crashes {crashes}",
                    flush=True,
                )
        stop.set()
        for proc in procs:
            proc.join(60)
        time.sleep(2)  # the last messages reach InfluxDB
        with contextlib.suppress(OSError, ValueError):
            status = json.loads(Path(status_path).read_text())
        canaries.close()
        problems = foreign(influx_port, cohort)
        errors = status.get("errors_logged", {})
        failures = status.get("boundaries", {})
        uncounted = sum(n for name, n in errors.items() if name != "hub.boundary") - sum(failures.values())
        elapsed = time.monotonic() - started
        print("\nresults")
        print(f"  duration                {elapsed / 60:.1f} min")
        print(f"  hostile MQTT messages   {mqtt_sent.value:,} ({mqtt_sent.value / elapsed:,.0f}/s)")
        print(
            f"  hostile HTTP requests   {http_sent.value:,} ({http_sent.value / elapsed:,.1f}/s); 5xx {http_bad.value % 1000}, cross-learner 2xx {http_bad.value // 1000}"
        )
        print(f"  hub received / rejected {status.get('received', 0):,} / {status.get('rejected', 0):,}")
        print(f"  crashes                 {crashes}")
        print(f"  canary max gap          {canaries.max_gap_s:.2f} s ({canaries.gaps_over_1s} gaps over 1 s)")
        print(f"  foreign points          {len(problems)}")
        for problem in problems[:20]:
            print(f"    {problem}")
        print(f"  boundary failures       {failures or 'none'}")
        print(f"  errors logged           {errors or 'none'} (not counted by a boundary: {max(0, uncounted)})")
        print(f"  hub peak RSS            {peak_rss:.0f} MB")
        print(
            f"  loop lag                p99 {status.get('lag_p99_s', 0) * 1000:.1f} ms, max {status.get('lag_max_s', 0) * 1000:.0f} ms"
        )
        ok = (
            crashes == 0
            and canaries.max_gap_s <= ACCEPT["gap_s"]
            and not problems
            and peak_rss < ACCEPT["rss_mb"]
            and http_bad.value == 0
            and (args.minutes < 10 or (mqtt_sent.value >= ACCEPT["mqtt"] and http_sent.value >= ACCEPT["http"]))
        )
        print(f"  acceptance              {'met' if ok else 'NOT met'}")
        return 0 if ok else 1
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        if canaries is not None and canaries.is_alive():
            canaries.stop.set()
        if hub is not None and hub.is_alive():
            hub.terminate()  # SIGTERM: the hub stops cleanly
            hub.join(30)
        influxd.stop()
        broker.stop()
        if args.keep:
            print(f"state and logs kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
