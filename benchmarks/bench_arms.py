"""Command benchmark: N simulated arms, each driven by its own phone app at R commands/s, for S seconds.

    .venv/bin/python benchmarks/bench_arms.py                 # 10 arms, sliders at 20 commands/s each, 60 s
    .venv/bin/python benchmarks/bench_arms.py --seconds 20    # shorter
    .venv/bin/python benchmarks/bench_arms.py --arms 200 --total-rate 100 --seconds 30   # 100 commands/s in all

The lab as deployed: the hub runs with its default limits (`api_requests_per_second`, per token, and
`commands_per_second`, per arm: 20/s each), and each app speaks with its own learner's token, as a phone in
a lab would; 20 commands/s per arm is a slider being dragged. It starts its own mosquitto and influxd,
runs the hub as a separate process, the arm firmware simulators in a second process and the apps in this
one (apps and arms are not on the hub's event loop), and waits for every arm to be online (presence events
on the live WebSocket) before the apps start. Prints p50/p99 of HTTP→accepted and of HTTP→done minus the
move's physical duration, and how commands ended.

Exits 1 when a run fails its own checks: a command ended other than `done` or `failed` because a newer
slider target superseded it (coalescing), a command was left unfinished, a request was refused for the
rate (429), an unsafe command was not refused with 422, or the arms were not online within 30 s. Whatever
ends it (a failure, Ctrl-C, SIGTERM from `timeout`), the hub, the arms, mosquitto and influxd are stopped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.spawned import clean_up
from firmware_sim.app import PhoneApp
from hub.access.registry import Registry
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port, stop_processes


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def wait_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while True:
            try:
                async with session.get(url) as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit(f"{url} did not answer")
            await asyncio.sleep(0.1)


async def wait_online(base: str, token: str, cohort: str, devices: list[str], timeout: float) -> float:
    """Wait for every arm's presence `online` on the live WebSocket (the first events are a snapshot)."""
    started = time.monotonic()
    online: set[str] = set()
    headers = {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession(headers=headers) as session,
        session.ws_connect(f"{base}/api/live", params={"cohort": cohort}) as ws,
    ):
        async with asyncio.timeout(timeout):
            while not online.issuperset(devices):
                message = await ws.receive()
                if message.type != aiohttp.WSMsgType.TEXT:
                    raise SystemExit(f"the live view closed before the arms were online ({message.type})")
                event = message.json()
                if event.get("type") == "presence":
                    (online.add if event.get("online") else online.discard)(event["device"])
    return time.monotonic() - started


async def drive(base: str, devices: list[str], rate: float, seconds: float, tokens: list[str]) -> list[PhoneApp]:
    """One app per arm, each with its own token and HTTP connections, as one phone per learner."""
    apps = [PhoneApp(base, device, rate, seed=i) for i, device in enumerate(devices)]
    sessions = [aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) for token in tokens]
    try:
        tasks = [asyncio.create_task(app.run(session, seconds)) for app, session in zip(apps, sessions, strict=True)]
        started = time.monotonic()
        while not all(t.done() for t in tasks):
            await asyncio.wait(tasks, timeout=5)
            sent = sum(a.stats.sent for a in apps)
            print(f"  {time.monotonic() - started:5.1f} s  {sent} commands sent", flush=True)
        for task in tasks:
            task.result()
    finally:
        for session in sessions:
            await session.close()
    return apps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", type=int, default=10)
    ap.add_argument("--rate", type=float, default=20.0, help="commands per second per arm (a slider: 20)")
    ap.add_argument("--total-rate", type=float, help="commands per second over all arms (sets --rate)")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--apps", type=int, help="how many arms the apps drive (default: all)")
    args = ap.parse_args()
    if args.total_rate:
        args.rate = args.total_rate / (args.apps or args.arms)
    # Stopped by `timeout` or Ctrl-C: unwind through the finally below, so nothing started keeps running.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started: list[subprocess.Popen[bytes]] = []
    services: list[Any] = []
    state = Path(tempfile.mkdtemp(prefix="labhub-armbench-"))
    code = 1
    try:
        code = run(args, state, started, services)
        return code
    finally:
        stop_processes(started, 20)
        for service in reversed(services):
            service.stop()
        clean_up(state, code == 0)


def run(args: argparse.Namespace, state: Path, started: list[subprocess.Popen[bytes]], services: list[Any]) -> int:
    os.chmod(state, 0o755)
    mqtt_port, influx_port, http_port = free_port(), free_port(), free_port()
    services.append(start_mosquitto(state, port=mqtt_port))  # closed, as in a lab: every arm has its own account
    services.append(start_influxd(state, http_port=influx_port, rpc_port=free_port()))
    devices = [f"bench/learner{i:02d}/arm1" for i in range(1, args.arms + 1)]  # as `labhub sim arm` names them
    registry = Registry(state / "registry.sqlite3")
    _, trainer = registry.add_token("trainer", "bench", "benchmark: watches the arms come online")
    tokens = [registry.add_token("learner", d.rsplit("/", 1)[0], "benchmark phone app")[1] for d in devices]
    registry.close()
    cfg = state / "bench.toml"
    cfg.write_text(
        f'state_dir = "{state}"\n[mqtt]\nport = {mqtt_port}\nlaunch = false\n'
        f'[influx]\nurl = "http://127.0.0.1:{influx_port}"\nlaunch = false\n[hub]\nhttp_port = {http_port}\n'
        # the deployed limits: api_requests_per_second and commands_per_second left at their defaults
        + "".join(f'[[devices]]\nid = "{d}"\nkind = "arm"\nprofile = "mearm"\n' for d in devices)
    )
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "hub", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(state / "hub.log", "wb"),
    )
    started.append(hub)
    asyncio.run(wait_http(f"http://127.0.0.1:{http_port}/healthz", 30))  # the hub made the arms' accounts
    arms = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hub.cli",
            "sim",
            "arm",
            "--count",
            str(args.arms),
            "--cohort",
            "bench",
            "--port",
            str(mqtt_port),
            "--credentials",
            str(state / "lab-credentials.toml"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=open(state / "arms.log", "wb"),
    )
    started.insert(0, arms)
    base = f"http://127.0.0.1:{http_port}"
    asyncio.run(wait_http(f"{base}/healthz", 30))
    try:
        took = asyncio.run(wait_online(base, trainer, "bench", devices, 30))
    except TimeoutError:
        print("FAILED: the arms were not all online within 30 s")
        return 1
    print(f"  all {args.arms} arms online after {took:.1f} s (presence on the live WebSocket)")
    driven = args.apps or args.arms
    apps = asyncio.run(drive(base, devices[:driven], args.rate, args.seconds, tokens[:driven]))
    timings = [t for app in apps for t in app.stats.timings.values()]
    accepted = [(t.accepted - t.posted) * 1000 for t in timings if t.accepted is not None]
    hub_accepted = [t.hub_accepted_ms for t in timings if t.hub_accepted_ms is not None]
    hub_sent = [t.hub_sent_ms for t in timings if t.hub_sent_ms is not None]
    print(f"  request → published   p50 {percentile(hub_sent, 50):.2f} ms   p99 {percentile(hub_sent, 99):.2f} ms")
    done = [
        ((t.finished - t.posted) - t.expected_s) * 1000
        for app in apps
        for t in app.stats.timings.values()
        if t.state == "done" and t.finished and not t.interrupted
    ]
    interrupted = sum(1 for t in timings if t.interrupted)
    states: dict[str, int] = {}
    for t in timings:
        states[t.state] = states.get(t.state, 0) + 1
    refused = sum(app.stats.refused for app in apps)
    http_errors: dict[int, int] = {}
    for app in apps:
        for status, n in app.stats.http_errors.items():
            http_errors[status] = http_errors.get(status, 0) + n
    throttled = http_errors.pop(429, 0)
    superseded = sum(1 for t in timings if t.state == "failed" and t.reason.startswith("superseded"))
    unexpected: dict[str, int] = {}
    for t in timings:
        if t.state == "done" or (t.state == "failed" and t.reason.startswith("superseded")):
            continue
        key = f"{t.state}: {t.reason[:60]}" if t.reason else t.state
        unexpected[key] = unexpected.get(key, 0) + 1
    acc = (round(percentile(accepted, 50), 2), round(percentile(accepted, 99), 2))
    inside = (round(percentile(hub_accepted, 50), 2), round(percentile(hub_accepted, 99), 2))
    after = (round(percentile(done, 50), 2), round(percentile(done, 99), 2))
    result = {
        "arms": args.arms,
        "rate_per_arm": args.rate,
        "limits": "deployed defaults (api_requests_per_second, commands_per_second)",
        "seconds": args.seconds,
        "commands": len(timings),
        "refused_422": refused,
        "throttled_429": throttled,
        "http_errors": http_errors,
        "states": states,
        "superseded": superseded,
        "interrupted": interrupted,
        "unexpected": unexpected,
        "http_to_accepted_ms": {"p50": acc[0], "p99": acc[1]},
        "hub_request_to_accepted_ms": {"p50": inside[0], "p99": inside[1]},
        "http_to_done_minus_move_ms": {"p50": after[0], "p99": after[1]},
    }
    print()
    print(
        f"commands                {len(timings)} sent to {driven} arms at {args.rate:g}/s each for "
        f"{args.seconds:g} s (+{refused} unsafe ones refused with 422, {throttled} refused for the rate: 429)"
    )
    print(f"ended                   {states} ({superseded} of the failed superseded by a newer slider target)")
    print(f"HTTP → accepted         p50 {acc[0]} ms   p99 {acc[1]} ms   (as the app sees it, on its WebSocket)")
    print(f"  inside the hub        p50 {inside[0]} ms   p99 {inside[1]} ms   (request received → device accepted)")
    print(
        f"HTTP → done − move time p50 {after[0]} ms   p99 {after[1]} ms   "
        f"(whole moves only: {interrupted} were cut short by the next target)"
    )
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    name = out / f"arms-{time.strftime('%Y%m%d-%H%M%S')}.json"
    name.write_text(json.dumps(result, indent=2))
    print(f"results written to {name}")
    expected_unsafe = len(timings) * 0.05 * 0.5  # the apps make ~5% of commands unsafe
    failures = []
    if unexpected:
        failures.append(f"commands that ended otherwise than expected: {unexpected}")
    if throttled:
        failures.append(f"{throttled} requests refused for the rate (429)")
    if http_errors:
        failures.append(f"HTTP errors: {http_errors}")
    if refused < expected_unsafe:
        failures.append(f"only {refused} unsafe commands refused with 422 (expected about 5% of {len(timings)})")
    if not timings:
        failures.append("no command was sent")
    if failures:
        print("FAILED: " + "; ".join(failures))
        return 1
    print("checks passed: every command done or superseded, unsafe ones refused, nothing throttled")
    return 0


if __name__ == "__main__":
    sys.exit(main())
