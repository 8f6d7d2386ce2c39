"""A month of 1 Hz readings exported through the hub (by hand): --days (30) × 86,400 points of one air-quality
device (--fields of its schema) written straight to influxd in line-protocol batches, then
`GET /api/devices/…/readings.csv` over the whole window, read as it streams. Prints the rows and bytes received,
the time taken, the InfluxDB count they must equal, and the hub's RSS before the export and at its peak (psutil,
sampled every 50 ms): the export pages through InfluxDB, so the growth stays that of a page, not of the month.

    .venv/bin/python benchmarks/bench_export.py [--days 30 --fields 4 --format csv]

The lab: its own mosquitto and influxd in a temp state dir, the hub in its own process (its RSS is its own).
Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import sys
import threading
import time
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.spawned import hub_process, services
from devices.kinds import AIR_QUALITY
from devices.topics import DeviceRef
from hub.access.registry import Registry
from hub.config import HubConfig, InfluxConfig, LabConfig, MqttConfig
from tests.support import influx_query

REF = DeviceRef("bench", "ana", "aq")
BATCH = 20_000


async def fill(url: str, start_s: int, points: int, fields: list[str]) -> float:
    """`points` readings, one a second from `start_s`, posted in batches by 4 writers; seconds taken."""
    tags = ",".join(f"{k}={v}" for k, v in REF.tags.items())
    began = time.monotonic()

    def batch(first: int) -> str:
        return "\n".join(
            f"air_quality,{tags} "
            + ",".join(f"{f}={(i * 7 + n) % 500 / 10}" for n, f in enumerate(fields))
            + f" {start_s + i}"
            for i in range(first, min(points, first + BATCH))
        )

    async with aiohttp.ClientSession() as http:
        queue: asyncio.Queue[int] = asyncio.Queue()
        for first in range(0, points, BATCH):
            queue.put_nowait(first)

        async def writer() -> None:
            while not queue.empty():
                first = queue.get_nowait()
                async with http.post(f"{url}/write?db=bench&precision=s", data=batch(first)) as resp:
                    assert resp.status == 204, await resp.text()
                if first % (BATCH * 20) == 0:
                    print(f"  written {first + BATCH:,} of {points:,}", flush=True)

        await asyncio.gather(*(writer() for _ in range(4)))
    return time.monotonic() - began


class Sampler(threading.Thread):
    def __init__(self, proc: psutil.Process) -> None:
        super().__init__(daemon=True)
        self.proc, self.peak, self.running = proc, 0, True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.05)


async def export(url: str, token: str, start_s: int, end_s: int) -> tuple[int, int, float]:
    """Rows (lines but the header) and bytes received, seconds taken."""
    lines, size, began = 0, 0, time.monotonic()
    timeout = aiohttp.ClientTimeout(total=3600)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        headers = {"Authorization": f"Bearer {token}"}
        async with http.get(f"{url}?from={start_s}&to={end_s}", headers=headers) as resp:
            assert resp.status == 200, await resp.text()
            async for chunk in resp.content.iter_chunked(1 << 16):
                lines += chunk.count(b"\n")
                size += len(chunk)
    return lines, size, time.monotonic() - began


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--fields", type=int, default=4, help="how many of the air-quality fields each reading holds")
    ap.add_argument("--format", choices=("csv", "jsonl"), default="csv")
    args = ap.parse_args()
    fields = list(AIR_QUALITY.fields)[: args.fields]
    points = int(args.days * 86400)
    with services("labhub-bench-export-") as lab:
        influx_query(lab.influx_port, "bench", "CREATE DATABASE bench")
        end_s = int(time.time()) // 60 * 60
        start_s = end_s - points
        print(f"writing {points:,} readings of {len(fields)} fields ({', '.join(fields)}) …", flush=True)
        took = asyncio.run(fill(lab.influx_url, start_s, points, fields))
        print(f"written in {took:.0f} s ({points / took:,.0f} points/s)")
        registry_path = lab.state / "registry.sqlite3"
        registry = Registry(registry_path)
        registry.add_device(REF, "air_quality", None)
        _, token = registry.add_token("trainer", "*", "bench")
        registry.close()
        with sqlite3.connect(registry_path) as db:  # registered before its readings (else they are someone else's)
            db.execute("UPDATE devices SET created_ns = 0")
        cfg = LabConfig(
            state_dir=lab.state,
            mqtt=MqttConfig(port=lab.mqtt_port, launch=False),
            influx=InfluxConfig(url=lab.influx_url, database="bench", launch=False),
            hub=HubConfig(http_port=0, open_mode=True, registry=str(registry_path)),
        )
        with hub_process(cfg) as (http_port, hub):
            url = f"http://127.0.0.1:{http_port}/api/devices/{REF.key}/readings.{args.format}"
            asyncio.run(export(url, token, end_s - 3600, end_s))  # warm-up: an hour, so imports and pools count
            time.sleep(1)
            before = hub.memory_info().rss
            sampler = Sampler(hub)
            sampler.start()
            lines, size, seconds = asyncio.run(export(url, token, start_s, end_s))
            sampler.running = False
            sampler.join()
        [series] = influx_query(lab.influx_port, "bench", f"SELECT count({fields[0]}) FROM air_quality")
        count = series["values"][0][1]
        rows = lines - (1 if args.format == "csv" else 0)
        print(
            f"exported {rows:,} rows ({count:,} in InfluxDB: {'equal' if rows == count else 'DIFFERENT'}), "
            f"{size / 2**20:,.0f} MiB in {seconds:.0f} s ({rows / seconds:,.0f} rows/s); hub RSS "
            f"{before / 2**20:.0f} MiB before, {sampler.peak / 2**20:.0f} MiB peak: "
            f"+{(sampler.peak - before) / 2**20:.1f} MiB"
        )


if __name__ == "__main__":
    main()
