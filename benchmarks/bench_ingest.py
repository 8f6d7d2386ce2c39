"""Ingest benchmark: K simulated sensors publish M readings each through the real broker, one hub process
validates and stores them in the real influxd; the broker's raw rate for the same messages to a bare
subscriber is measured in the same run, so the ratio holds across machines.

    .venv/bin/python benchmarks/bench_ingest.py --readings 30000          # closed loop: as fast as stored
    .venv/bin/python benchmarks/bench_ingest.py --rate 20000 --seconds 15  # open loop: a fixed offered load

Two modes:

- **closed loop** (default): publishers are never more than `--window` readings ahead of what the hub
  reports stored. It finds the sustained rate, but the window hides loss and bounds latency by
  construction: "0 lost" and the p99 there say little about a hub that falls behind.
- **open loop** (`--rate R`): publishers send R readings/s in all on a fixed schedule, whatever the hub
  does. If the hub cannot keep up, the broker's queues fill and readings are lost: that is counted.
  How far the generator itself fell behind its schedule is printed too (a late generator under-offers).

Publishers are minimal QoS 0 clients (one connection per device, each with its own closed-broker account)
writing pre-encoded frames in large chunks: `mosquitto_pub -l` costs one system call per message, ~60% of
a core for ten of them here, which the hub, the broker and the database then lacked.

Every reading carries a per-device sequence number (`seq`, 0, 1, 2 …), so loss and duplicates are counted
by querying InfluxDB: per device, count(seq) − count(distinct(seq)) is the duplicates, and the distinct
values must be exactly 0 … M−1 (distinct count, min and max). The devices are `generic` (an air-quality
device may not send a `seq` field): each reading is the 9 air-quality fields plus `seq`.

Latency is measured by open-loop probes: a probe reading (with its own sequence number) is published every
`--probe-interval` s whether or not the earlier ones are stored, and InfluxDB is polled for the highest
probe stored; a probe's latency is publish → first poll that sees it (publish → queryable). A stall shows as
many slow probes, not as one. A probe not queryable within 10 s is a timeout.

Prints: sustained stored readings/s, lost and duplicated readings (by query), p50/p99 publish→queryable,
hub CPU and peak RSS, and the broker's raw rate. Exits 1 when a reading is lost, duplicated, rejected or
out of sequence, or a probe times out.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import psutil
from paho.mqtt.enums import CallbackAPIVersion

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import rawmqtt
from benchmarks.spawned import clean_up
from firmware_sim.air import AirModel
from hub.access.dynsec import HUB_USER
from hub.access.registry import Registry
from hub.credentials import load_credentials, read_secret
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port

DB = "labhub"
PROBE = "bench/probe/p1"
TOKEN = [""]  # the benchmark's viewer token for /api/stats


PROBE_TIMEOUT_S = 10.0


def payload_pool(size: int) -> list[bytes]:
    """JSON objects without their opening brace: the publisher puts `{"seq": N, ` in front."""
    model = AirModel(seed=7, boot_s=0.0)
    return [json.dumps(model.sample(1.7e9 + i)).encode()[1:] for i in range(size)]


def influx_series(port: int, q: str) -> list[dict[str, Any]]:
    url = f"http://127.0.0.1:{port}/query?" + urllib.parse.urlencode({"db": DB, "q": q, "epoch": "ns"})
    with urllib.request.urlopen(url, timeout=60) as resp:
        data = json.load(resp)
    result = data["results"][0]
    if "error" in result:
        raise RuntimeError(f"InfluxDB query failed: {result['error']}")
    series: list[dict[str, Any]] = result.get("series", [])
    return series


def influx_query(port: int, q: str) -> list[list[object]]:
    series = influx_series(port, q)
    return series[0]["values"] if series else []  # type: ignore[no-any-return]


def hub_stats(port: int) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/stats", headers={"Authorization": f"Bearer {TOKEN[0]}"}
    )
    with urllib.request.urlopen(request, timeout=5) as resp:
        result: dict[str, object] = json.load(resp)
        return result


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


class RawPublisher:
    """A minimal MQTT 3.1.1 QoS 0 publisher: PUBLISH frames encoded in Python and written in large chunks,
    each payload with the next sequence number of this device.

    `mosquitto_pub -l` makes one system call per message and, ten of them, took ~60% of a core here,
    which the hub, the broker and the database then lacked. This generator costs a few percent.
    """

    def __init__(self, port: int, client_id: str, topic: str, pool: list[bytes], login: tuple[str, str]) -> None:
        self.sock = rawmqtt.connect(port, client_id, *login)
        self.head = rawmqtt.topic_head(topic)
        self.pool = pool
        self.seq = 0  # the next reading's sequence number

    def _frame(self, seq: int) -> bytes:
        payload = b'{"seq": %d, ' % seq + self.pool[seq % len(self.pool)]
        return rawmqtt.publish_frame(self.head, payload)

    def send(self, count: int) -> None:
        first = self.seq
        self.seq += count
        self.sock.sendall(b"".join(self._frame(seq) for seq in range(first, first + count)))

    def close(self) -> None:
        self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()


def raw_broker_rate(
    mqtt_port: int, pool: list[bytes], devices: int, per_device: int, hub_login: tuple[str, str]
) -> tuple[float, int]:
    """The same messages, unpaced, to a bare `mosquitto_sub`: the broker's own rate on this machine (through
    the same ACL checks, as the hub's account)."""
    total = devices * per_device
    login = ["-u", hub_login[0], "-P", hub_login[1]]
    sub = subprocess.Popen(["mosquitto_sub", "-p", str(mqtt_port), *login, "-t", "lab/raw/#"], stdout=subprocess.PIPE)
    assert sub.stdout is not None
    stream = sub.stdout
    marker = subprocess.Popen(
        ["mosquitto_pub", "-p", str(mqtt_port), *login, "-t", "lab/raw/marker", "-l"], stdin=subprocess.PIPE
    )
    assert marker.stdin is not None
    ready = threading.Event()
    counted = {"n": 0, "first": 0.0, "last": 0.0}

    def count() -> None:
        for line in stream:
            if not ready.is_set():
                if line.startswith(b"marker"):
                    ready.set()
                continue
            if counted["n"] == 0:
                counted["first"] = time.perf_counter()
            counted["n"] += 1
            counted["last"] = time.perf_counter()
            if counted["n"] >= total:
                return

    reader = threading.Thread(target=count, daemon=True)
    reader.start()
    while not ready.wait(0.05):  # publish markers until the subscriber is known to be listening
        marker.stdin.write(b"marker\n")
        marker.stdin.flush()
    marker.stdin.close()
    marker.wait()
    devs = [RawPublisher(mqtt_port, f"raw-d{i}", f"lab/raw/d{i}", pool, hub_login) for i in range(devices)]
    started = time.perf_counter()
    for start in range(0, per_device, 1000):
        for dev in devs:
            dev.send(min(1000, per_device - start))
    for dev in devs:
        dev.close()
    reader.join(timeout=60)
    sub.terminate()
    sub.wait()
    elapsed = max(1e-9, (counted["last"] or time.perf_counter()) - started)
    return counted["n"] / elapsed, int(counted["n"])


class Prober(threading.Thread):
    """Open-loop latency probes: publish one every `interval_s` (whatever is outstanding), and poll InfluxDB
    for the highest probe stored. One device's readings are stored in order, so every probe up to it is
    queryable; its latency is publish → the first poll that sees it. Latencies in ms."""

    def __init__(self, mqtt_port: int, influx_port: int, interval_s: float, password: str) -> None:
        super().__init__(daemon=True)
        self.influx_port = influx_port
        self.interval_s = interval_s
        self.published: list[float] = []  # publish time of probe seq i
        self.latencies: list[float] = []
        self.seen = 0  # probes 0 … seen−1 are queryable
        self.stop = threading.Event()  # stop publishing
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-probe")
        self.client.username_pw_set(PROBE, password)
        self.client.connect("127.0.0.1", mqtt_port)
        self.client.loop_start()
        self.poller = threading.Thread(target=self._poll, daemon=True)
        self.done = threading.Event()  # stop polling

    def run(self) -> None:
        self.poller.start()
        next_at = time.perf_counter()
        while not self.stop.is_set():
            seq = len(self.published)
            self.published.append(time.perf_counter())
            self.client.publish(f"lab/{PROBE}/telemetry", json.dumps({"seq": seq}), qos=0)
            next_at += self.interval_s
            self.stop.wait(max(0.0, next_at - time.perf_counter()))
        deadline = time.perf_counter() + PROBE_TIMEOUT_S  # the last probes get their full time
        while self.seen < len(self.published) and time.perf_counter() < deadline:
            time.sleep(0.01)
        self.done.set()
        self.poller.join()
        self.client.loop_stop()
        self.client.disconnect()

    def _poll(self) -> None:
        # The probe's own measurement, over the last minute: a regex over every learner's measurement (500
        # in bench_open) made each poll cost influxd more than the readings did, and the rest waited on it.
        q = "SELECT max(seq) FROM \"generic.bench.probe\" WHERE device = 'p1' AND time > now() - 1m"
        while not self.done.is_set():
            try:
                rows = influx_query(self.influx_port, q)
            except (OSError, TimeoutError):
                continue  # a slow answer delays the probes it would have seen: that is their latency
            now = time.perf_counter()
            upto = int(float(rows[0][1])) + 1 if rows else 0  # type: ignore[arg-type]
            while self.seen < min(upto, len(self.published)):
                self.latencies.append((now - self.published[self.seen]) * 1000)
                self.seen += 1
            time.sleep(0.002)

    @property
    def timeouts(self) -> int:
        """Probes not queryable within PROBE_TIMEOUT_S (seen late, or never)."""
        late = sum(1 for ms in self.latencies if ms > PROBE_TIMEOUT_S * 1000)
        return late + len(self.published) - self.seen


def check_sequences(influx_port: int, devices: int, per_device: int) -> dict[str, int]:
    """Loss and duplicates by query: per device, count(seq) vs count(distinct(seq)), and the distinct values
    must be exactly 0 … per_device − 1."""
    q = (
        "SELECT count(seq), count(distinct(seq)) FROM /^generic\\.bench\\./ "
        "WHERE cohort = 'bench' AND device = 'aq1' GROUP BY learner"
    )
    bounds_q = "SELECT min(seq), max(seq) FROM /^generic\\.bench\\./ WHERE cohort = 'bench' AND device = 'aq1' GROUP BY learner"
    counts = {s["tags"]["learner"]: s["values"][0] for s in influx_series(influx_port, q)}
    bounds = {s["tags"]["learner"]: s["values"][0] for s in influx_series(influx_port, bounds_q)}
    result = {"stored": 0, "distinct": 0, "lost": 0, "duplicates": 0, "out_of_range": 0, "devices_missing": 0}
    for i in range(devices):
        learner = f"d{i:02d}"
        if learner not in counts:
            result["devices_missing"] += 1
            result["lost"] += per_device
            continue
        _, stored, distinct = counts[learner]
        _, low, high = bounds[learner]
        result["stored"] += int(stored)
        result["distinct"] += int(distinct)
        result["duplicates"] += int(stored) - int(distinct)
        result["lost"] += per_device - int(distinct)
        result["out_of_range"] += int(float(low) < 0) + int(float(high) > per_device - 1)
    return result


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--devices", type=int, default=10)
    ap.add_argument("--readings", type=int, default=30000, help="per device (ignored with --rate and --seconds)")
    ap.add_argument(
        "--rate", type=float, default=0, help="open loop: total readings/s on a fixed schedule; 0 = closed loop"
    )
    ap.add_argument("--seconds", type=float, help="with --rate: run this long")
    ap.add_argument("--window", type=int, default=5000, help="closed loop: max readings ahead of stored")
    ap.add_argument("--probe-interval", type=float, default=0.02, help="seconds between latency probes")
    ap.add_argument("--skip-raw", action="store_true", help="skip the broker's raw-rate measurement")
    ap.add_argument("--workers", type=int, default=1, help="hub worker processes sharing the load")
    args = ap.parse_args()
    per_device = int(args.rate * args.seconds / args.devices) if args.rate and args.seconds else args.readings
    total = per_device * args.devices
    pool = payload_pool(2000)

    state = Path(tempfile.mkdtemp(prefix="labhub-bench-"))
    passed = False
    os.chmod(state, 0o755)
    mqtt_port, influx_port, rpc_port, http_port = free_port(), free_port(), free_port(), free_port()
    broker = start_mosquitto(state, port=mqtt_port)  # closed, as in a lab: every device has its own account
    influxd = start_influxd(state, http_port=influx_port, rpc_port=rpc_port)
    registry = Registry(state / "registry.sqlite3")
    _, TOKEN[0] = registry.add_token("viewer", "*", "benchmark")
    registry.close()
    hub_login = (HUB_USER, read_secret(state / "secrets" / "mqtt-hub") or "")
    hubs: list[subprocess.Popen[bytes]] = []
    ports = [http_port + i for i in range(args.workers)]

    last_stored = [0]

    def stored_now() -> int:
        """What the hubs report stored; an overloaded hub may not answer in time (then the last figure)."""
        try:
            last_stored[0] = sum(int(hub_stats(port)["stored"]) for port in ports)  # type: ignore[call-overload]
        except (OSError, TimeoutError) as err:
            print(f"  (the hub's /api/stats did not answer: {err})", flush=True)
        return last_stored[0]

    try:
        raw_rate, raw_count = (
            # On the broker's internal listener: the lab one binds client ids to usernames, and these
            # publishers all use the hub's account.
            (0.0, 0) if args.skip_raw else raw_broker_rate(mqtt_port + 1, pool, args.devices, per_device, hub_login)
        )
        if not args.skip_raw:
            print(f"broker raw rate: {raw_rate:,.0f} msg/s to a bare mosquitto_sub ({raw_count:,}/{total:,} received)")

        devices = (
            "\n".join(f'[[devices]]\nid = "bench/d{i:02d}/aq1"\nkind = "generic"\n' for i in range(args.devices))
            + f'\n[[devices]]\nid = "{PROBE}"\nkind = "generic"\n'
        )  # the hub makes their accounts
        cfg = state / "bench.toml"
        cfg.write_text(
            f'state_dir = "{state}"\n[mqtt]\nport = {mqtt_port}\nlaunch = false\n'
            f'[influx]\nurl = "http://127.0.0.1:{influx_port}"\nlaunch = false\n'
            f"[hub]\nhttp_port = {http_port}\n{devices}"
        )
        for worker in range(args.workers):
            hubs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "hub.cli",
                        "hub",
                        "--config",
                        str(cfg),
                        "--worker",
                        str(worker),
                        "--workers",
                        str(args.workers),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=open(state / f"hub-{worker}.log", "wb"),
                )
            )
        deadline = time.monotonic() + 30
        for port, hub in zip(ports, hubs, strict=True):
            while True:
                try:
                    if hub_stats(port)["mqtt"]["connected"]:  # type: ignore[index]
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or hub.poll() is not None:
                    raise SystemExit(f"hub did not start; see {state}/hub-*.log")
                time.sleep(0.05)
        hub_procs = [psutil.Process(hub.pid) for hub in hubs]
        others = {"mosquitto": psutil.Process(broker.proc.pid), "influxd": psutil.Process(influxd.proc.pid)}
        cpu0 = sum(p.cpu_times().user + p.cpu_times().system for p in hub_procs)
        other0 = {k: p.cpu_times() for k, p in others.items()}

        passwords = load_credentials(state)
        prober = Prober(mqtt_port, influx_port, args.probe_interval, passwords[PROBE])
        devs = [
            RawPublisher(
                mqtt_port,
                f"bench-d{i:02d}",
                f"lab/bench/d{i:02d}/aq1/telemetry",
                pool,
                (f"bench/d{i:02d}/aq1", passwords[f"bench/d{i:02d}/aq1"]),
            )
            for i in range(args.devices)
        ]
        chunk = 200
        sent = 0
        started = time.perf_counter()
        prober.start()
        last_print = started
        stored = 0
        behind_s = 0.0  # open loop: how late the generator was on its own schedule, at worst
        while sent < total:
            now = time.perf_counter()
            if args.rate:
                due = min(total, int((now - started) * args.rate))
                behind_s = max(behind_s, (due - sent) / args.rate)
            else:
                stored = stored_now()
                due = min(total, stored + args.window)
            while sent + args.devices <= due or (sent < due and due == total):
                n = min(chunk, max(1, (due - sent) // args.devices))
                for dev in devs:
                    dev.send(n)
                sent += n * args.devices
            if now - last_print >= 1.0:
                stored = stored_now()
                print(
                    f"  {now - started:5.1f} s  published {sent:,}/{total:,}  stored {stored:,} "
                    f"({stored / (now - started):,.0f}/s)",
                    flush=True,
                )
                last_print = now
            time.sleep(0.002 if args.rate else 0.02)
        for dev in devs:
            dev.close()
        published = sent
        # Wait until the hub has stored everything, or its count stops moving for 5 s (readings were lost).
        deadline = time.monotonic() + 120
        last, moved_at = -1, time.monotonic()
        while time.monotonic() < deadline:
            stored = stored_now()
            if stored >= published + len(prober.published):
                break
            if stored != last:
                last, moved_at = stored, time.monotonic()
            elif time.monotonic() - moved_at > 5:
                break
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
        prober.stop.set()
        prober.join(timeout=PROBE_TIMEOUT_S + 5)
        hub_cpu = sum(p.cpu_times().user + p.cpu_times().system for p in hub_procs) - cpu0
        other_cpu = {
            k: (p.cpu_times().user + p.cpu_times().system) - (other0[k].user + other0[k].system)
            for k, p in others.items()
        }
        rss = max(peak_rss_mb(hub.pid) for hub in hubs)
        seqs = check_sequences(influx_port, args.devices, per_device)
        in_db = seqs["distinct"]
        stats = hub_stats(http_port)  # worker 0's view
        rejected = sum(sum(hub_stats(port)["rejected"].values()) for port in ports)  # type: ignore[attr-defined]
        lat = prober.latencies
        result = {
            "workers": args.workers,
            "spool": "on",
            "devices": args.devices,
            "mode": f"open loop at {args.rate:g}/s" if args.rate else f"closed loop, window {args.window}",
            "published": published,
            "stored_in_influxdb": seqs["stored"],
            "distinct_stored": in_db,
            "lost": seqs["lost"],
            "duplicates": seqs["duplicates"],
            "out_of_range": seqs["out_of_range"],
            "generator_behind_s": round(behind_s, 3),
            "seconds": round(elapsed, 2),
            "stored_per_s": round(in_db / elapsed),
            "rejected": rejected,
            "latency_ms": {
                "probes": len(lat),
                "p50": round(percentile(lat, 50), 2),
                "p99": round(percentile(lat, 99), 2),
                "max": round(max(lat, default=float("nan")), 2),
                "timeouts": prober.timeouts,
            },
            "hub_cpu_s": round(hub_cpu, 2),
            "hub_cpu_pct": round(100 * hub_cpu / elapsed),
            "hub_peak_rss_mb": round(rss, 1),
            "mosquitto_cpu_pct": round(100 * other_cpu["mosquitto"] / elapsed),
            "influxd_cpu_pct": round(100 * other_cpu["influxd"] / elapsed),
            "broker_raw_rate": round(raw_rate),
            "writer": stats["writer"],
            "cores": os.cpu_count(),
        }
        print()
        print(
            f"readings published      {published:,} by {args.devices} devices (QoS 0)"
            f"{f' at {args.rate:,.0f}/s (open loop)' if args.rate else f', closed loop (window {args.window:,})'}"
        )
        if args.rate:
            print(f"generator               at worst {behind_s * 1000:.0f} ms behind its schedule")
        print(
            f"stored in InfluxDB      {seqs['stored']:,}   lost {seqs['lost']:,}   duplicates {seqs['duplicates']:,}   "
            f"out of sequence {seqs['out_of_range']}   rejected {rejected}   (by query on seq)"
        )
        print(f"sustained               {in_db / elapsed:,.0f} readings/s validated and stored ({elapsed:.1f} s)")
        print(
            f"publish → queryable     p50 {result['latency_ms']['p50']} ms   p99 {result['latency_ms']['p99']} ms "  # type: ignore[index]
            f"max {result['latency_ms']['max']} ms ({len(prober.published)} open-loop probes, {prober.timeouts} timeouts)"  # type: ignore[index]
        )
        print(
            f"hub ({args.workers} worker{'s' if args.workers > 1 else ''})          "
            f"{result['hub_cpu_pct']}% CPU in all, peak RSS {rss:.0f} MiB per worker"
        )
        print(f"mosquitto / influxd     {result['mosquitto_cpu_pct']}% / {result['influxd_cpu_pct']}% CPU")
        if not args.skip_raw:
            print(f"broker raw rate         {raw_rate:,.0f} msg/s (hub/raw = {in_db / elapsed / raw_rate:.2f})")
        out = Path("bench-results")
        out.mkdir(exist_ok=True)
        name = out / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
        name.write_text(json.dumps(result, indent=2))
        print(f"results written to {name}")
        failures = [
            f"{what}: {n}"
            for what, n in (
                ("lost", seqs["lost"]),
                ("duplicated", seqs["duplicates"]),
                ("out of sequence", seqs["out_of_range"]),
                ("rejected", rejected),
                ("probe timeouts", prober.timeouts),
                ("unpublished", total - published),
            )
            if n
        ]
        if failures:
            print(f"FAILED: {', '.join(failures)}")
            return 1
        print("checks passed: nothing lost, duplicated, rejected or out of sequence; every probe within 10 s")
        passed = True
        return 0
    finally:
        for hub in hubs:
            hub.terminate()
        for hub in hubs:
            hub.wait(15)
        influxd.stop()
        broker.stop()
        clean_up(state, passed)


if __name__ == "__main__":
    sys.exit(main())
