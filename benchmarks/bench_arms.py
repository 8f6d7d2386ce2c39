"""Command benchmark: N simulated arms, simulated phone apps sending R commands/s in all, for S seconds.

    .venv/bin/python benchmarks/bench_arms.py                 # 50 arms, 20 commands/s, 60 s
    .venv/bin/python benchmarks/bench_arms.py --seconds 20    # shorter

It starts its own mosquitto and influxd, runs the hub as a separate process, the arm firmware simulators
in a second process and the apps in this one (apps and arms are not on the hub's event loop). Prints
p50/p99 of HTTP→accepted and of HTTP→done minus the move's physical duration, and how commands ended.
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

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from firmware_sim.app import PhoneApp
from hub.registry import Registry
from hub.services import free_port, start_influxd, start_mosquitto


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


async def drive(base: str, devices: list[str], rate: float, seconds: float, token: str) -> list[PhoneApp]:
    apps = [PhoneApp(base, device, rate / len(devices), seed=i) for i, device in enumerate(devices)]
    connector = aiohttp.TCPConnector(limit=200)
    headers = {"Authorization": f"Bearer {token}"}
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        tasks = [asyncio.create_task(app.run(session, seconds)) for app in apps]
        started = time.monotonic()
        while not all(t.done() for t in tasks):
            await asyncio.sleep(5)
            sent = sum(a.stats.sent for a in apps)
            print(f"  {time.monotonic() - started:5.1f} s  {sent} commands sent", flush=True)
        for task in tasks:
            task.result()
    return apps


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arms", type=int, default=50)
    ap.add_argument("--rate", type=float, default=20.0, help="commands per second, all apps together")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--apps", type=int, help="how many arms the apps drive (default: all)")
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="labhub-armbench-"))
    os.chmod(state, 0o755)
    mqtt_port, influx_port, http_port = free_port(), free_port(), free_port()
    broker = start_mosquitto(state, port=mqtt_port)  # closed, as in a lab: every arm has its own account
    influxd = start_influxd(state, http_port=influx_port, rpc_port=free_port())
    registry = Registry(state / "registry.sqlite3")
    _, token = registry.add_token("trainer", "bench", "benchmark apps")  # one trainer drives every arm
    registry.close()
    devices = [f"bench/learner{i:02d}/arm1" for i in range(1, args.arms + 1)]  # as `labhub sim arm` names them
    cfg = state / "bench.toml"
    cfg.write_text(
        f'state_dir = "{state}"\n[mqtt]\nport = {mqtt_port}\nlaunch = false\n'
        f'[influx]\nurl = "http://127.0.0.1:{influx_port}"\nlaunch = false\n[hub]\nhttp_port = {http_port}\n'
        # the hub's rate limit is per token, and here one token speaks for all the apps
        f"api_requests_per_second = 1000.0\n"
        + "".join(f'[[devices]]\nid = "{d}"\nkind = "arm"\nprofile = "mearm"\n' for d in devices)
    )
    hub = subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "hub", "--config", str(cfg)],
        stdout=subprocess.DEVNULL,
        stderr=open(state / "hub.log", "wb"),
    )
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
    try:
        base = f"http://127.0.0.1:{http_port}"
        asyncio.run(wait_http(f"{base}/healthz", 30))
        time.sleep(2)  # the arms' first poses and presence reach the hub
        apps = asyncio.run(drive(base, devices[: args.apps or args.arms], args.rate, args.seconds, token))
        timings = [t for app in apps for t in app.stats.timings.values()]
        accepted = [(t.accepted - t.posted) * 1000 for t in timings if t.accepted is not None]
        hub_accepted = [t.hub_accepted_ms for t in timings if t.hub_accepted_ms is not None]
        hub_sent = [t.hub_sent_ms for t in timings if t.hub_sent_ms is not None]
        print(f"  request → published   p50 {percentile(hub_sent, 50):.2f} ms   p99 {percentile(hub_sent, 99):.2f} ms")
        done = [((t.finished - t.posted) - t.expected_s) * 1000 for t in timings if t.state == "done" and t.finished]
        states: dict[str, int] = {}
        for t in timings:
            states[t.state] = states.get(t.state, 0) + 1
        refused = sum(app.stats.refused for app in apps)
        acc = (round(percentile(accepted, 50), 2), round(percentile(accepted, 99), 2))
        inside = (round(percentile(hub_accepted, 50), 2), round(percentile(hub_accepted, 99), 2))
        after = (round(percentile(done, 50), 2), round(percentile(done, 99), 2))
        result = {
            "arms": args.arms,
            "rate": args.rate,
            "seconds": args.seconds,
            "commands": len(timings),
            "refused_422": refused,
            "states": states,
            "http_to_accepted_ms": {"p50": acc[0], "p99": acc[1]},
            "hub_request_to_accepted_ms": {"p50": inside[0], "p99": inside[1]},
            "http_to_done_minus_move_ms": {"p50": after[0], "p99": after[1]},
        }
        print()
        print(
            f"commands                {len(timings)} sent to {args.arms} arms at {args.rate:g}/s for "
            f"{args.seconds:g} s (+{refused} unsafe ones refused with 422)"
        )
        print(f"ended                   {states}")
        print(f"HTTP → accepted         p50 {acc[0]} ms   p99 {acc[1]} ms   (as the app sees it, on its WebSocket)")
        print(f"  inside the hub        p50 {inside[0]} ms   p99 {inside[1]} ms   (request received → device accepted)")
        print(f"HTTP → done − move time p50 {after[0]} ms   p99 {after[1]} ms")
        out = Path("bench-results")
        out.mkdir(exist_ok=True)
        name = out / f"arms-{time.strftime('%Y%m%d-%H%M%S')}.json"
        name.write_text(json.dumps(result, indent=2))
        print(f"results written to {name}")
        return 0
    finally:
        for proc in (arms, hub):
            proc.send_signal(signal.SIGTERM)
        for proc in (arms, hub):
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
        influxd.stop()
        broker.stop()


if __name__ == "__main__":
    sys.exit(main())
