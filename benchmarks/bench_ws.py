"""MQTT over WebSockets under load (by hand): --clients (1,000) WebSocket MQTT clients held open through /mqtt,
--publishers (200) of them publishing at --hz (1) for --seconds (60), open loop (each publisher's due time is
fixed by the clock, whatever the hub does). Prints a progress line every 5 s; at the end the hub's and
mosquitto's peak RSS and CPU (% of a core, psutil), readings sent and stored (InfluxDB count): nothing lost.

    .venv/bin/python benchmarks/bench_ws.py [--clients 1000 --publishers 200 --hz 1 --seconds 60]

The lab: its own mosquitto (classroom open mode, max_connections above --clients) and influxd in a temp state
dir, the hub in its own process (so its CPU and RSS are its own), the clients here in one asyncio loop (aiohttp
WebSockets writing raw MQTT 3.1.1 packets: CONNECT, then QoS 0 PUBLISH). Everything is stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import aiohttp
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.rawmqtt import publish_frame, remaining_length, topic_head
from benchmarks.spawned import hub_process, services
from hub.config import HubConfig, InfluxConfig, LabConfig, MqttConfig
from tests.support import influx_count


def connect_packet(client_id: str) -> bytes:
    name = client_id.encode()
    body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(name).to_bytes(2, "big") + name  # clean session, keepalive 60
    return b"\x10" + remaining_length(len(body)) + body


async def client(http: aiohttp.ClientSession, url: str, i: int, ready: list[int]) -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url, protocols=("mqtt",), heartbeat=None)
    await ws.send_bytes(connect_packet(f"wsbench-{i}"))
    msg = await ws.receive(timeout=30)
    assert msg.type == aiohttp.WSMsgType.BINARY and msg.data[:1] == b"\x20" and msg.data[3:4] == b"\x00", msg
    ready.append(i)
    return ws


async def drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    async for _ in ws:  # PINGRESPs and nothing else: the clients subscribe to nothing
        pass


async def publisher(ws: aiohttp.ClientWebSocketResponse, i: int, hz: float, seconds: float, start: float) -> int:
    head = topic_head(f"lab/wsbench/l{i}/d1/telemetry")
    n = 0
    while n < int(seconds * hz):
        due = start + n / hz + (i % 100) / (100 * hz)  # spread over the period
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        await ws.send_bytes(publish_frame(head, b'{"v": %d}' % n))
        n += 1
    return n


class Sampler:
    def __init__(self, **procs: psutil.Process) -> None:
        self.procs = procs
        self.rss = {name: 0 for name in procs}
        self.cpu0 = {name: p.cpu_times() for name, p in procs.items()}
        self.t0 = time.monotonic()

    def sample(self) -> None:
        for name, p in self.procs.items():
            self.rss[name] = max(self.rss[name], p.memory_info().rss)

    def cpu(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.t0
        out = {}
        for name, p in self.procs.items():
            t, t0 = p.cpu_times(), self.cpu0[name]
            out[name] = 100 * ((t.user + t.system) - (t0.user + t0.system)) / elapsed
        return out


async def bench(args: argparse.Namespace, cfg: LabConfig, http_port: int, hub: psutil.Process, broker: int) -> None:
    url = f"http://127.0.0.1:{http_port}/mqtt"
    ready: list[int] = []
    conn = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=conn) as http:
        t = time.monotonic()
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for batch in range(0, args.clients, 100):
            sockets += await asyncio.gather(
                *(client(http, url, i, ready) for i in range(batch, min(batch + 100, args.clients)))
            )
        print(f"{len(sockets)} WebSocket MQTT clients connected through /mqtt in {time.monotonic() - t:.1f} s")
        readers = [asyncio.create_task(drain(ws)) for ws in sockets]
        sampler = Sampler(hub=hub, mosquitto=psutil.Process(broker))
        start = time.monotonic() + 1
        pubs = [
            asyncio.create_task(publisher(sockets[i], i, args.hz, args.seconds, start)) for i in range(args.publishers)
        ]
        while not all(p.done() for p in pubs):
            await asyncio.sleep(0.5)
            sampler.sample()
            if int(time.monotonic() - start) % 5 == 0 and time.monotonic() - start > 0.5:
                stored = influx_count(cfg_influx_port(cfg), cfg.influx.database, "/.*/", "v")
                print(
                    f"t={time.monotonic() - start:5.1f}s stored {stored}  hub RSS {sampler.rss['hub'] >> 20} MiB, "
                    f"open sockets {sum(not ws.closed for ws in sockets)}",
                    flush=True,
                )
                await asyncio.sleep(0.5)
        sent = sum(p.result() for p in pubs)
        cpu = sampler.cpu()
        deadline = time.monotonic() + 30
        stored = 0
        while time.monotonic() < deadline:
            stored = influx_count(cfg_influx_port(cfg), cfg.influx.database, "/.*/", "v")
            if stored >= sent:
                break
            await asyncio.sleep(0.5)
        still_open = sum(not ws.closed for ws in sockets)
        for ws in sockets:
            await ws.close()
        for r in readers:
            r.cancel()
    print(
        f"RESULT clients {args.clients} (open at the end: {still_open}), publishers {args.publishers} at "
        f"{args.hz} Hz for {args.seconds} s: sent {sent}, stored {stored}, lost {sent - stored}; "
        f"hub peak RSS {sampler.rss['hub'] >> 20} MiB, CPU {cpu['hub']:.1f}% of a core; "
        f"mosquitto peak RSS {sampler.rss['mosquitto'] >> 20} MiB, CPU {cpu['mosquitto']:.1f}%"
    )


def cfg_influx_port(cfg: LabConfig) -> int:
    return int(cfg.influx.url.rsplit(":", 1)[1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=1000)
    ap.add_argument("--publishers", type=int, default=200)
    ap.add_argument("--hz", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    with services("labhub-bench-ws-", max_connections=args.clients + 100) as lab:
        cfg = LabConfig(
            state_dir=lab.state,
            mqtt=MqttConfig(port=lab.mqtt_port, launch=False, max_connections=args.clients + 100),
            influx=InfluxConfig(url=lab.influx_url, database="wsbench", launch=False),
            hub=HubConfig(
                http_port=0,
                open_mode=True,
                mqtt_ws_per_address=args.clients,
                mqtt_ws_max=args.clients,
                mqtt_ws_connects_per_second=1000.0,
            ),
        )
        with hub_process(cfg) as (http_port, hub):
            asyncio.run(bench(args, cfg, http_port, hub, lab.broker_pid))


if __name__ == "__main__":
    main()
