"""Open-loop benchmark: devices publish at a fixed rate whatever the hub does, through the lab's real mosquitto
into the hub and the real influxd; what the hub fails to take shows as readings lost, a long drain, memory.

    .venv/bin/python benchmarks/bench_open.py --mode find                      # highest rate, 0 lost, drain ≤ 1 s
    .venv/bin/python benchmarks/bench_open.py --mode overload --capacity 30000 # 1.5× and 2× that, 20 s each
    .venv/bin/python benchmarks/bench_open.py --mode latency                   # 500/s: publish→queryable, CPU
    .venv/bin/python benchmarks/bench_open.py --mode fleet                     # 1,000 devices at 1 Hz: RSS, CPU
    ... --open            undeclared `generic` devices, anonymous, broker and hub in classroom open mode
    ... --workers 2       two hub processes sharing the load

The publisher is `openpub.c` (compiled into bench-results/ on first use): one connection per device, QoS 0,
a ~117-byte JSON reading per message with a per-device `seq` and a strictly increasing millisecond `ts`,
paced every millisecond (due = rate × elapsed), round-robin over the devices, each device's readings
written within the millisecond (--flush-ms N: every N ms, fewer writes, cheaper and less like devices);
it costs ~3% of a core at 500/s, ~14% at 45,000/s (mostly the kernel's loopback TCP).
By default the lab is closed, as deployed: the devices are declared (kind `generic`), the hub makes their
broker accounts at start (timed), and each device logs in with its own. Services and hub stay up across
trials; before each, the hub is idle. Each trial has its own range of `seq`, so loss is counted exactly,
per trial, by query: published − distinct `seq` stored (and duplicates: points − distinct).
Drain: from the last byte published until the hub's /api/stats `stored` counter has them all.

- find: 10 s trials (--trial-s) from --start ×1.5 until one fails (any loss, or drain > --max-drain),
  then bisection down to --resolution. A line per trial: offered and stored rate, lost, drain, CPU % of a
  core of the hub, influxd, mosquitto and the publisher, the hub's peak RSS (psutil, 10 Hz), and the share of
  the window its main thread ran and waited, ready, for a CPU (/proc schedstat); then the result.
- overload: 1.5× and 2× --capacity (or what find finds) for --overload-s: stored rate during the offered
  window and overall, lost and where (not delivered by the broker vs inside the hub; the broker's `$SYS`
  dropped counter; the hub's counters that moved), drain, peak RSS; and why the stored rate is what it is:
  what the hub read while offered and once the load stopped, the share of the window its intake was paused
  (waiting for InfluxDB), its main thread's run and wait shares, the machine's idle share.
- latency: --rate (500/s) for --seconds (30) twice: first without probes for the CPU % of the hub, influxd,
  mosquitto and the publisher (steady: from 5 s in, past each device's first contact; the whole window too),
  then with open-loop probes (bench_ingest's Prober, which polls InfluxDB every 2 ms and so costs influxd far
  more than the readings) for p50/p99 publish→queryable.
- fleet: --devices (1,000) at --hz (1) for --seconds (60): hub RSS peak and end, CPU %, lost.

Each run first measures two references on the same broker (no hub yet): the broker's raw rate (the C
publisher flat out → mosquitto → a bare C subscriber) and paho's bare receive rate (a paho-mqtt 2.x client
counting in on_message), so the ratios hold across machines (--skip-refs to skip). Results also go to
bench-results/open-<mode>-<time>.json. Everything started is stopped at the end, on Ctrl-C and on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_ingest import PROBE, PROBE_TIMEOUT_S, Prober, percentile
from benchmarks.openload import (
    RESULTS,
    CpuWindow,
    Lab,
    Publisher,
    Sample,
    Sampler,
    StatsPoller,
    count_stored,
    openpub,
    paho_rate,
    raw_rate,
)
from benchmarks.spawned import clean_up
from hub.credentials import load_credentials

DRAIN_STALL_S = 5.0  # the stored counter still for this long after the last publish: the rest is lost
IDLE_S = 1.0  # the hub is idle when its counters have not moved for this long
STEADY_AFTER_S = 5.0  # the steady CPU window starts this long into a run: past the devices' first contacts
LATE_WARN_MS = 100.0  # a publisher this far behind its schedule offered less than the nominal rate


class Bench:
    """Trials on one lab: each offers `rate` for `seconds` with fresh sequence numbers, waits for the drain,
    and counts what was stored by query."""

    def __init__(self, lab: Lab, flush_ms: float, poll_s: float = 0.1) -> None:
        self.lab = lab
        self.flush_ms = flush_ms
        self.lines = lab.device_lines()
        self.procs = lab.processes()
        self.sampler = Sampler(self.procs["hub"], self.procs["mosquitto"][0])
        self.sampler.start()
        self.stats = StatsPoller(lab.http_ports, poll_s)
        self.stats.start()
        self.seq = 0  # the next trial's first sequence number (every device)
        self.publisher: Publisher | None = None

    def wait_idle(self, timeout: float = 120.0) -> Sample:
        """The hub's counters once they have stood still for IDLE_S (nothing left in flight)."""
        deadline = time.monotonic() + timeout
        still = self.stats.after(time.monotonic())
        while time.monotonic() < deadline:
            now = self.stats.after(time.monotonic())
            if any(now[k] != still[k] for k in ("received", "stored")) or now["spool.points_in_memory"]:
                still = now
            elif now.sent - still.sent >= IDLE_S:
                return now
        print(f"  (the hub did not become idle within {timeout:.0f} s)")
        return still

    def run(self, rate: float, seconds: float, prober: Prober | None = None) -> dict[str, Any]:
        before = self.wait_idle()
        assert self.lab.sys is not None
        self.lab.sys.reset()
        self.sampler.reset()
        self.stats.reset()
        cpu: list[CpuWindow] = []
        since_ms = int(time.time() * 1000) - 1000

        def on_start() -> None:
            cpu.append(CpuWindow(self.procs))
            if prober is not None:
                prober.start()

        pub = self.publisher = Publisher(
            self.lines, rate, seconds, seq_start=self.seq, flush_ms=self.flush_ms, on_start=on_start
        )
        pub.start()
        shown = 0
        while pub.running():
            time.sleep(0.05)
            if pub.started.is_set() and len(cpu) == 1 and time.monotonic() - pub.t0 >= STEADY_AFTER_S:
                cpu.append(CpuWindow(self.procs))  # steady: each device's first contact is behind
            if pub.started.is_set() and time.monotonic() - pub.t0 >= shown + 1:
                shown += 1
                now = self.stats.latest
                stored = now["stored"] - before["stored"] - (len(prober.published) if prober else 0)
                print(
                    f"    {shown:4d} s  sent {pub.sent:,} ({pub.sent / shown:,.0f}/s)  stored {stored:,} "
                    f"({stored / shown:,.0f}/s, as of {time.monotonic() - now.at:.1f} s ago)  "
                    f"behind ≤ {pub.behind_ms:.0f} ms  hub RSS {self.sampler.rss_mb:.0f} MB",
                    flush=True,
                )
        out = pub.wait()
        t_end = out["t_end_ns"] / 1e9
        window_cpu = cpu[0].pct()
        contention = cpu[0].contention()
        steady_cpu = cpu[1].pct() if len(cpu) > 1 else window_cpu
        probes = 0
        if prober is not None:
            prober.stop.set()
            time.sleep(0.05)  # its publishing loop ends
            probes = len(prober.published)
        sent = int(out["sent"])
        target = before["stored"] + sent + probes
        drained_at, last, shown = None, self.stats.latest, 0
        while True:
            sample = self.stats.after(last.sent + 0.01)
            if sample.sent > t_end and sample["stored"] >= target:
                drained_at = sample.at  # when the answer came: an upper bound
                break
            if sample["stored"] != last["stored"]:
                last = sample
            elif sample.sent - last.sent > DRAIN_STALL_S:
                break  # the counter stands still short of the target: readings were lost
            if time.monotonic() - t_end >= shown + 1:
                shown += 1
                print(f"    drain {shown} s: {target - sample['stored']:,} readings not stored yet", flush=True)
        trial_cpu = cpu[0].pct()
        after = self.stats.after(time.monotonic())
        if prober is not None:
            prober.join(timeout=PROBE_TIMEOUT_S + 5)
        hi = self.seq + max(out["per_device"]) + 1
        points, distinct = count_stored(self.lab.influx_port, self.seq, hi, since_ms)
        self.seq = hi
        span = max(1e-6, t_end - pub.t0)
        end = drained_at if drained_at is not None else time.monotonic()
        # The stored rate within the offered window: from the last answer that came before its end.
        inside = [s for s in self.stats.history if pub.t0 + 0.5 < s.at <= t_end]
        window = (inside[-1]["stored"] - before["stored"]) / (inside[-1].at - pub.t0) if inside else None
        drain = [s for s in self.stats.history if t_end < s.at <= end]
        return {
            "rate": rate,
            "seconds": round(span, 2),
            "sent": sent,
            "unsent_bytes": out["unsent_bytes"],
            "behind_max_ms": out["behind_max_ms"],
            "connect_s": pub.connect_s,
            "stored_per_s_window": None if window is None else round(window),
            "stored_per_s": round(distinct / max(1e-6, end - pub.t0)),
            "stored": distinct,
            "lost": sent - distinct,
            "duplicates": points - distinct,
            "drain_s": None if drained_at is None else round(max(0.0, drained_at - t_end), 2),
            "cpu_pct_window": window_cpu,
            "contention": contention,
            "intake": intake(before, inside, drain, pub.t0),
            "cpu_pct_steady": steady_cpu,
            "cpu_pct": trial_cpu,
            "publisher_cpu_pct": round(100 * out["cpu_s"] / max(1e-6, span + pub.connect_s), 1),
            "hub_peak_rss_mb": round(self.sampler.peak_mb, 1),
            "hub_rss_end_mb": round(self.sampler.rss_mb, 1),
            "mosquitto_peak_rss_mb": round(self.sampler.broker_peak_mb, 1),
            "stats_slowest_answer_s": round(self.stats.slowest_s, 2),
            "stats_unanswered": self.stats.unanswered,
            "hub_counters": {k: v - before[k] for k, v in after.counters.items() if v != before[k]},
            "broker_peak": dict(self.lab.sys.peak),
            "drained_mono": end,
        }

    def close(self) -> None:
        self.sampler.done.set()
        self.stats.done.set()
        if self.publisher is not None:
            self.publisher.stop()


def intake(before: Sample, inside: list[Sample], drain: list[Sample], t0: float) -> dict[str, float | None]:
    """What the hub read from the broker while the load was offered and once it stopped (readings/s), and
    the share of the window's samples in which its intake was paused (backpressure from the spool or InfluxDB)."""

    def rate(first: Sample, last: Sample, since: float) -> float | None:
        span = last.at - since
        return round((last["received"] - first["received"]) / span) if span >= 0.5 else None

    return {
        "read_per_s_window": rate(before, inside[-1], t0) if inside else None,
        "read_per_s_drain": rate(drain[0], drain[-1], drain[0].at) if drain else None,
        "paused_pct": round(100 * sum(1 for s in inside if s["spool.intake_paused"]) / len(inside), 1)
        if inside
        else None,
    }


def pct_text(value: float | None) -> str:
    return "?" if value is None else f"{value:.0f}%"


def passed(t: dict[str, Any], max_drain: float) -> bool:
    return t["lost"] == 0 and t["duplicates"] == 0 and t["drain_s"] is not None and t["drain_s"] <= max_drain


def rate_text(rate: int | None) -> str:
    return "?" if rate is None else f"{rate:,}"


def trial_line(n: int, t: dict[str, Any], verdict: str) -> str:
    cpu = t["cpu_pct"]
    drain = "never" if t["drain_s"] is None else f"{t['drain_s']:.2f} s"
    return (
        f"trial {n:2d}  {t['rate']:>7,.0f}/s  stored {rate_text(t['stored_per_s_window']):>7}/s  lost {t['lost']:>6,}  "
        f"drain {drain:>6}  CPU hub {cpu['hub']:3.0f}% influxd {cpu['influxd']:3.0f}% mosquitto "
        f"{cpu['mosquitto']:3.0f}% pub {t['publisher_cpu_pct']:.0f}%  RSS {t['hub_peak_rss_mb']:.0f} MB  "
        f"late {t['behind_max_ms']:.0f} ms  stats ≤{t['stats_slowest_answer_s']:.1f} s  "
        f"hub ran {pct_text(t['contention']['hub_main_ran_pct'])} waited {pct_text(t['contention']['hub_main_waited_pct'])}"
        f"  {verdict}"
    )


def find(bench: Bench, args: argparse.Namespace, trials: list[dict[str, Any]]) -> float:
    """×1.5 steps from --start until a trial fails (or ÷1.5 until one passes), then bisection."""

    def trial(rate: float) -> bool:
        print(f"  trial {len(trials) + 1}: {rate:,.0f} readings/s for {args.trial_s:g} s", flush=True)
        t = bench.run(rate, args.trial_s)
        ok = passed(t, args.max_drain)
        trials.append(t | {"passed": ok})
        print(trial_line(len(trials), t, "pass" if ok else "FAIL"), flush=True)
        if t["behind_max_ms"] > LATE_WARN_MS:
            print(f"  (the publisher fell {t['behind_max_ms']:.0f} ms behind its schedule: it offered less)")
        return ok

    best, fail, rate = 0.0, 0.0, float(args.start)
    if trial(rate):
        best = rate
        while trial(rate := round(rate * 1.5)):
            best = rate
        fail = rate
    else:
        fail = rate
        while rate > 100 and not best:
            rate = round(rate / 1.5)
            if trial(rate):
                best = rate
            else:
                fail = rate
    while best and (fail - best) / best > args.resolution:
        mid = round((best + fail) / 2)
        if trial(mid):
            best = mid
        else:
            fail = mid
    print(
        f"\nfound: {best:,.0f} readings/s with 0 lost and drain ≤ {args.max_drain:g} s "
        f"(first failing: {fail:,.0f}/s; {args.trial_s:g} s trials, resolution {args.resolution:.1%})"
    )
    return best


def overload(bench: Bench, args: argparse.Namespace, capacity: float, trials: list[dict[str, Any]]) -> None:
    assert bench.lab.sys is not None
    for factor in (1.5, 2.0):
        rate = round(capacity * factor)
        dropped0 = bench.lab.sys.values.get("publish/messages/dropped", 0.0)
        print(f"\noverload {factor:g}× {capacity:,.0f} = {rate:,}/s for {args.overload_s:g} s", flush=True)
        t = bench.run(rate, args.overload_s)
        print("  waiting for the broker's next $SYS report (every 10 s)", flush=True)
        dropped = bench.lab.sys.fresh("publish/messages/dropped", t["drained_mono"])
        t["broker_dropped"] = None if dropped is None else int(dropped - dropped0)
        t["factor"] = factor
        trials.append(t)
        received = t["hub_counters"].get("received", 0)
        rejected = sum(v for k, v in t["hub_counters"].items() if k.startswith("rejected."))
        drain = "never (readings lost)" if t["drain_s"] is None else f"{t['drain_s']:.2f} s"
        peak = t["broker_peak"]
        print(f"  offered          {rate:,}/s: {t['sent']:,} sent, generator at worst {t['behind_max_ms']:.0f} ms late")
        window = t["stored_per_s_window"]
        print(
            f"  stored           {rate_text(window)}/s during the offered window "
            f"({'?' if window is None else f'{window / capacity:.0%}'} of capacity), "
            f"{t['stored_per_s']:,}/s overall ({t['stored_per_s'] / capacity:.0%}), until drained"
        )
        read, sched = t["intake"], t["contention"]
        print(
            f"  hub intake       read {rate_text(read['read_per_s_window'])}/s while offered, "
            f"{rate_text(read['read_per_s_drain'])}/s once the load stopped; paused {pct_text(read['paused_pct'])} "
            "of the window (backpressure)"
        )
        print(
            f"  CPU share        the hub's main thread ran {pct_text(sched['hub_main_ran_pct'])} of the window and "
            f"waited {pct_text(sched['hub_main_waited_pct'])} for a CPU; the machine was idle "
            f"{pct_text(sched['machine_idle_pct'])} of the time"
        )
        print(
            f"  lost (by query)  {t['lost']:,} ({t['lost'] / max(1, t['sent']):.2%})   duplicates {t['duplicates']:,}"
        )
        print(
            f"  where            not delivered by the broker {t['sent'] - received:,} (its $SYS dropped "
            f"counter: +{t['broker_dropped']}); inside the hub {received - t['stored'] - rejected:,}; "
            f"rejected {rejected:,}"
        )
        print(
            f"  broker           peak RSS {t['mosquitto_peak_rss_mb']:.0f} MB (10 Hz), its $SYS (every 10 s): "
            f"peak stored messages {peak.get('store/messages/count', 0):,.0f}, "
            f"clients connected {peak.get('clients/connected', 0):,.0f}"
        )
        print(f"  hub counters     {', '.join(f'{k} +{v:,}' for k, v in sorted(t['hub_counters'].items()))}")
        print(f"  drain            {drain}")
        print(
            f"  /api/stats       slowest answer {t['stats_slowest_answer_s']:.2f} s, "
            f"{t['stats_unanswered']} polls unanswered within 5 s"
        )
        cpu = t["cpu_pct"]
        print(
            f"  hub RSS          peak {t['hub_peak_rss_mb']:.0f} MB (10 Hz samples), end {t['hub_rss_end_mb']:.0f} MB;"
            f"  CPU hub {cpu['hub']:.0f}% influxd {cpu['influxd']:.0f}% mosquitto {cpu['mosquitto']:.0f}%"
        )


def latency(bench: Bench, args: argparse.Namespace, trials: list[dict[str, Any]]) -> bool:
    """Two windows at the same rate: without probes for the CPU figures (the probes' poller queries InfluxDB
    every 2 ms, which costs influxd far more than the readings do), then with them for the latency."""
    lab = bench.lab
    print(f"CPU window: {args.rate:,.0f}/s for {args.seconds:g} s, no probes", flush=True)
    quiet = bench.run(args.rate, args.seconds)
    print(f"latency window: {args.rate:,.0f}/s for {args.seconds:g} s with a probe every {args.probe_interval:g} s")
    prober = Prober(lab.mqtt_port, lab.influx_port, args.probe_interval, load_credentials(lab.state)[PROBE])
    t = bench.run(args.rate, args.seconds, prober)
    lat = prober.latencies
    t["latency_ms"] = {
        "probes": len(prober.published),
        "p50": round(percentile(lat, 50), 2),
        "p99": round(percentile(lat, 99), 2),
        "max": round(max(lat, default=float("nan")), 2),
        "timeouts": prober.timeouts,
        # When the slowest probe was sent, in seconds from the first: a transient as the stream starts, or not?
        "max_at_s": round(prober.published[lat.index(max(lat))] - prober.published[0], 2) if lat else None,
    }
    trials += [quiet, t]
    m = t["latency_ms"]
    print(
        f"\n{args.rate:,.0f} readings/s from {lab.devices} devices, 2 × {args.seconds:g} s: "
        f"lost {quiet['lost'] + t['lost']:,}, duplicates {quiet['duplicates'] + t['duplicates']:,}"
    )
    print(
        f"publish → queryable  p50 {m['p50']} ms  p99 {m['p99']} ms  max {m['max']} ms "
        f"(sent {m['max_at_s']} s into the window; {m['probes']} open-loop probes, {m['timeouts']} timeouts)"
    )
    for what, w, key in (
        ("CPU (% of one core)", quiet, "cpu_pct_steady"),
        ("  whole window", quiet, "cpu_pct_window"),
        ("  with the probes", t, "cpu_pct_steady"),
    ):
        cpu = w[key]
        print(
            f"{what:<20} hub {cpu['hub']}%  influxd {cpu['influxd']}%  mosquitto {cpu['mosquitto']}%  "
            f"publisher {w['publisher_cpu_pct']}%"
        )
    print(f"  (steady: from {STEADY_AFTER_S:g} s into the window, past the {lab.devices} devices' first contacts)")
    print(f"hub RSS              peak {max(quiet['hub_peak_rss_mb'], t['hub_peak_rss_mb']):.0f} MB")
    return quiet["lost"] + t["lost"] == 0 and m["timeouts"] == 0


def fleet(bench: Bench, args: argparse.Namespace, trials: list[dict[str, Any]]) -> bool:
    rate = bench.lab.devices * args.hz
    t = bench.run(rate, args.seconds)
    trials.append(t)
    cpu = t["cpu_pct_window"]
    print(
        f"\n{bench.lab.devices:,} devices connected in {t['connect_s']:.1f} s, each at {args.hz:g} Hz "
        f"for {t['seconds']:.0f} s: sent {t['sent']:,}, lost {t['lost']:,}, duplicates {t['duplicates']:,}"
    )
    print(f"hub RSS              peak {t['hub_peak_rss_mb']:.0f} MB, end {t['hub_rss_end_mb']:.0f} MB")
    print(
        f"CPU (% of one core)  hub {cpu['hub']}%  influxd {cpu['influxd']}%  mosquitto {cpu['mosquitto']}%  "
        f"publisher {t['publisher_cpu_pct']}%"
    )
    return t["lost"] == 0


def refs(lab: Lab, args: argparse.Namespace) -> dict[str, Any]:
    connections = min(lab.devices, 50)  # the internal listener takes 64 clients
    print(f"references: {args.ref_count:,} readings flat out over {connections} connections", flush=True)
    raw = raw_rate(lab, args.ref_count, connections)
    print(f"  broker raw rate      {raw['rate']:>9,}/s to a bare C subscriber ({raw['received']:,}/{raw['sent']:,})")
    bare = paho_rate(lab, args.ref_count, connections)
    print(f"  paho bare receive    {bare['rate']:>9,}/s in on_message ({bare['received']:,}/{bare['sent']:,})")
    return {"broker_raw": raw, "paho_bare": bare}


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mode", choices=("find", "overload", "latency", "fleet"), default="find")
    ap.add_argument("--devices", type=int, help="device connections (default 500; fleet 1,000)")
    ap.add_argument("--open", action="store_true", help="undeclared devices, anonymous, broker and hub in open mode")
    ap.add_argument("--workers", type=int, default=1, help="hub processes sharing the load")
    ap.add_argument(
        "--hub-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [hub] setting for the hub under test, as in labhub.toml (repeatable), e.g. batch_max_points=10000",
    )
    ap.add_argument("--skip-refs", action="store_true", help="skip the broker's raw rate and paho's bare rate")
    ap.add_argument("--ref-count", type=int, default=300_000, help="readings sent for each reference")
    ap.add_argument("--flush-ms", type=float, default=0.0, help="publisher: write a device's readings every N ms")
    ap.add_argument("--start", type=float, default=10_000, help="find: first trial's rate")
    ap.add_argument("--trial-s", type=float, default=10.0, help="find: seconds per trial")
    ap.add_argument("--resolution", type=float, default=0.025, help="find: stop bisecting at this gap")
    ap.add_argument("--max-drain", type=float, default=1.0, help="find: seconds allowed to drain")
    ap.add_argument("--capacity", type=float, help="overload: the capacity (default: run find first)")
    ap.add_argument("--overload-s", type=float, default=20.0, help="overload: seconds per load")
    ap.add_argument("--rate", type=float, default=500.0, help="latency: readings/s")
    ap.add_argument("--probe-interval", type=float, default=0.02, help="latency: seconds between probes")
    ap.add_argument("--hz", type=float, default=1.0, help="fleet: readings/s per device")
    ap.add_argument("--seconds", type=float, help="latency (default 30) and fleet (default 60): run this long")
    args = ap.parse_args()
    args.devices = args.devices or (1000 if args.mode == "fleet" else 500)
    args.seconds = args.seconds or (60.0 if args.mode == "fleet" else 30.0)
    return args


def stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds through every finally: services stopped


def main() -> int:
    args = parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    openpub()  # compile before anything starts
    lab = Lab(args.devices, args.open, args.workers, args.hub_option)
    bench: Bench | None = None
    trials: list[dict[str, Any]] = []
    report: dict[str, Any] = {"mode": args.mode, "args": vars(args), "cores": os.cpu_count(), "trials": trials}
    ok, finished = True, False
    options = f"; hub: {', '.join(args.hub_option)}" if args.hub_option else ""
    print(
        f"open-loop benchmark, mode {args.mode}: {args.devices} devices, {'open' if args.open else 'closed'} lab"
        f"{options}"
    )
    try:
        lab.start_services()
        report["refs"] = None if args.skip_refs else refs(lab, args)
        lab.start_hub()
        report["hub_start_s"] = round(lab.hub_start_s, 1)
        report["accounts_s"] = round(lab.accounts_s, 1)
        report["hub_start_cpu_s"] = lab.start_cpu_s
        # The modes that measure CPU at classroom rates poll the hub's stats once a second: 10 polls a second
        # of /api/stats with 500 devices would be a load of their own, not the hub's.
        bench = Bench(lab, args.flush_ms, 1.0 if args.mode in ("latency", "fleet") else 0.1)
        if args.mode == "find":
            report["capacity"] = find(bench, args, trials)
        elif args.mode == "overload":
            capacity = args.capacity or find(bench, args, trials)
            report["capacity"] = capacity
            overload(bench, args, capacity, trials)
        elif args.mode == "latency":
            ok = latency(bench, args, trials)
        else:
            ok = fleet(bench, args, trials)
        if report["refs"] and report.get("capacity"):
            raw, bare = report["refs"]["broker_raw"]["rate"], report["refs"]["paho_bare"]["rate"]
            print(
                f"capacity / broker raw = {report['capacity'] / raw:.2f}, / paho bare = {report['capacity'] / bare:.2f}"
            )
        finished = True
        return 0 if ok else 1
    except KeyboardInterrupt as stop:
        print(f"\nstopped ({str(stop) or 'Ctrl-C'}): stopping the publisher, the hub and the services", flush=True)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if bench is not None:
            bench.close()
        lab.stop()
        for t in trials:
            t.pop("drained_mono", None)
        if trials or report.get("refs"):
            RESULTS.mkdir(exist_ok=True)
            name = RESULTS / f"open-{args.mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
            name.write_text(json.dumps(report, indent=2, default=str))
            print(f"results written to {name}")
        clean_up(lab.state, finished)
        left = [p.pid for p in psutil.Process().children(recursive=True)]
        if left:
            print(f"still running after the cleanup: {left}")


if __name__ == "__main__":
    sys.exit(main())
