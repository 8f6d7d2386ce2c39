"""MQTT adapter micro-benchmark: the fast receive path against stock paho (its fallback), in the same run.

    .venv/bin/python benchmarks/bench_mqtt_adapter.py                    # 50,000 messages, 3 rounds
    .venv/bin/python benchmarks/bench_mqtt_adapter.py --messages 200000 --rounds 5

A real mosquitto (closed, as in a lab, on a free loopback port with a temp dir) and one `MqttClient`
subscribed as the hub is (QoS 1 subscription, manual acks: each QoS 1 message acknowledged from the message
callback). A publisher in another process sends N pre-encoded PUBLISH frames of a 160-byte reading as fast
as the broker takes them, at QoS 0 and then at QoS 1 (reading the broker's PUBACKs). The rate is the
adapter's while it is the slowest party; the fast path at QoS 0 comes near the broker's own rate (~230,000
messages/s to a bare `mosquitto_sub` in bench_ingest's runs), so the CPU per message is the steadier figure of
the adapter's cost. Rounds alternate fast and stock so both see the same machine; each figure is the best round.

Prints, per QoS and variant: messages/s received (first message → last) and the receiving process's CPU
per message, then fast/stock ratios. Exits 1 if a variant lost messages or the fast path was not in use.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import rawmqtt
from hub.access.dynsec import HUB_USER
from hub.adapters.mqtt import Message, MqttClient
from hub.adapters.paho_fastpath import FastClient
from hub.credentials import read_secret
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port

PAYLOAD = (
    b'{"pm1_0": 7.1, "pm2_5": 11.4, "pm10": 19.8, "temperature": 21.37, "humidity": 44.2, '
    b'"pressure": 1012.6, "eco2": 612, "tvoc": 41, "raw_h2": 13402, "seq": 123456}'
)


def frames(topic: str, count: int, qos: int) -> bytes:
    """`count` PUBLISH frames of PAYLOAD; QoS 1 ones with packet ids 1…65535, cycling."""
    head = rawmqtt.topic_head(topic)
    if not qos:
        return rawmqtt.publish_frame(head, PAYLOAD) * count
    out = bytearray()
    for i in range(count):
        body = head + (i % 65535 + 1).to_bytes(2, "big") + PAYLOAD
        out += b"\x32" + rawmqtt.remaining_length(len(body)) + body
    return bytes(out)


def publish(port: int, login: tuple[str, str], topic: str, count: int, qos: int, go: threading.Event) -> None:
    """In its own process: connect, wait for `go`, send everything; at QoS 1 wait for every PUBACK."""
    data = frames(topic, count, qos)
    sock = rawmqtt.connect(port, f"bench-pub-{os.getpid()}", *login)
    go.wait()
    if qos:
        drained = threading.Thread(target=_read_pubacks, args=(sock, count), daemon=True)
        drained.start()
    for start in range(0, len(data), 1 << 20):
        sock.sendall(data[start : start + (1 << 20)])
    if qos:
        drained.join(120)
    sock.sendall(b"\xe0\x00")  # DISCONNECT
    sock.close()


def _read_pubacks(sock: socket.socket, count: int) -> None:
    want = 4 * count  # PUBACK: 0x40 0x02 id id
    while want > 0:
        chunk = sock.recv(1 << 16)
        if not chunk:
            return
        want -= len(chunk)


@dataclass
class Run:
    received: int
    rate: float  # messages/s, first received → last
    cpu_us: float  # receiving process's CPU per message
    fast: bool  # the client really was the fast one


async def receive(port: int, login: tuple[str, str], qos: int, count: int, fast: bool, tag: str) -> Run:
    done = asyncio.Event()
    times = {"first": 0.0, "last": 0.0, "n": 0}

    def on_message(message: Message) -> None:
        if times["n"] == 0:
            times["first"] = time.perf_counter()
        times["n"] += 1
        client.ack(message.mid, message.qos)
        if times["n"] >= count:
            times["last"] = time.perf_counter()
            done.set()

    root = f"lab/bench/{tag}"
    client = MqttClient(
        "127.0.0.1",
        port,
        f"bench-sub-{tag}",
        on_message=on_message,
        subscriptions=[(f"{root}/#", 1)],
        manual_ack=True,
        username=login[0],
        password=login[1],
        fast_path=fast,
    )
    task = asyncio.create_task(client.run())
    go = multiprocessing.get_context("fork").Event()
    publisher = multiprocessing.get_context("fork").Process(
        target=publish, args=(port, login, f"{root}/d", count, qos, go), daemon=True
    )
    try:
        await client.wait_connected(10)
        publisher.start()
        cpu = time.process_time()
        go.set()
        try:
            await asyncio.wait_for(done.wait(), 120)
        except TimeoutError:
            times["last"] = time.perf_counter()
        cpu = time.process_time() - cpu
    finally:
        await client.stop()
        await task
        if publisher.pid is not None:
            publisher.join(30)
    n = int(times["n"])
    elapsed = max(1e-9, times["last"] - times["first"])
    return Run(n, n / elapsed, cpu / max(1, n) * 1e6, isinstance(client._client, FastClient))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=50_000, help="per QoS, variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    state = Path(tempfile.mkdtemp(prefix="labhub-bench-mqtt-"))
    os.chmod(state, 0o755)
    port, internal = free_port(), free_port()
    broker = start_mosquitto(state, port=port, internal_port=internal)
    login = (HUB_USER, read_secret(state / "secrets" / "mqtt-hub") or "")
    best: dict[tuple[int, str], Run] = {}
    failed = False
    try:
        for qos in (0, 1):
            for round_ in range(args.rounds):
                for name, fast in (("fast", True), ("stock", False)):
                    run = asyncio.run(
                        receive(internal, login, qos, args.messages, fast, f"q{qos}-{name}-{round_}")
                    )  # the broker's internal listener: the lab one binds client ids to usernames
                    if run.received != args.messages or run.fast != fast:
                        failed = True
                        print(
                            f"  qos {qos} {name} round {round_}: {run.received:,}/{args.messages:,} received, "
                            f"fast client: {run.fast}"
                        )
                    if (qos, name) not in best or run.rate > best[qos, name].rate:
                        best[qos, name] = run
    finally:
        broker.stop()
        shutil.rmtree(state, ignore_errors=True)

    print(f"{args.messages:,} messages of {len(PAYLOAD)} bytes per QoS, variant and round; best of {args.rounds}")
    print(f"{'':5}  {'fast path':>25}  {'stock paho':>25}  {'fast/stock':>10}")
    for qos in (0, 1):
        fast, stock = best[qos, "fast"], best[qos, "stock"]
        print(
            f"QoS {qos}  {fast.rate:>10,.0f} msg/s {fast.cpu_us:>5.1f} µs  {stock.rate:>10,.0f} msg/s "
            f"{stock.cpu_us:>5.1f} µs  {fast.rate / stock.rate:>9.2f}×"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
