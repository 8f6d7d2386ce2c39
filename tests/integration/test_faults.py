"""Fault tests: real processes on loopback, bounded in time. Each reports published / stored / lost / duplicates.

InfluxDB killed or frozen, the hub SIGKILLed, the broker restarted: a reading the hub accepted is in
InfluxDB in the end, exactly once.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from hub.access.registry import Registry
from hub.ops.influxd import start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port
from tests.conftest import make_state_dir, unique
from tests.support import PacedPublisher, influx_query, wait_for

REPORT: list[str] = []


@dataclass
class Lab:
    """Its own mosquitto, influxd and hub process, so a test can kill any of them."""

    state: Path
    mqtt_port: int
    influx_port: int
    rpc_port: int
    http_port: int
    config: Path
    mosquitto: Service | None = None
    influxd: Service | None = None
    hub: subprocess.Popen[bytes] | None = None
    hub_logs: list[Path] = field(default_factory=list)
    token: str = ""

    def start_influxd(self) -> None:
        self.influxd = start_influxd(self.state, http_port=self.influx_port, rpc_port=self.rpc_port)

    def start_mosquitto(self) -> None:
        self.mosquitto = start_mosquitto(self.state, port=self.mqtt_port, open_mode=True)

    def start_hub(self) -> None:
        log_path = self.state / f"hub-{len(self.hub_logs)}.log"
        self.hub_logs.append(log_path)
        with open(log_path, "wb") as out:
            self.hub = subprocess.Popen(
                [sys.executable, "-m", "hub.cli", "hub", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        wait_for(lambda: (self.stats() or {}).get("mqtt", {}).get("connected"), 30, "the hub to connect")

    def stats(self) -> dict[str, Any] | None:
        if not self.token:
            registry = Registry(self.state / "registry.sqlite3")
            _, self.token = registry.add_token("viewer", "*", "fault tests")
            registry.close()
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}/api/stats", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                result: dict[str, Any] = json.load(resp)
                return result
        except OSError:
            return None

    def health(self) -> dict[str, Any] | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}/healthz", timeout=2) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:
            return dict(json.loads(err.read()))
        except OSError:
            return None

    def counts(self, cohort: str) -> tuple[int, int]:
        """(points, distinct sequence numbers) stored for a cohort."""
        try:
            total = influx_query(
                self.influx_port, "labhub", f"SELECT count(n) FROM /^generic\\./ WHERE cohort = '{cohort}'"
            )
            distinct = influx_query(
                self.influx_port, "labhub", f"SELECT count(distinct(n)) FROM /^generic\\./ WHERE cohort = '{cohort}'"
            )
        except (OSError, AssertionError):
            return 0, 0
        # One series per learner's measurement; sequence numbers are unique across learners.
        return sum(int(s["values"][0][1]) for s in total), sum(int(s["values"][0][1]) for s in distinct)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in self.hub_logs if p.exists())


@pytest.fixture
def lab() -> Iterator[Lab]:
    state = make_state_dir("labhub-fault-")
    ports = [free_port() for _ in range(4)]
    config = state / "lab.toml"
    config.write_text(
        f'state_dir = "{state}"\n'
        f"[mqtt]\nport = {ports[0]}\nlaunch = false\n"
        f'[influx]\nurl = "http://127.0.0.1:{ports[1]}"\nlaunch = false\ntimeout_s = 2.0\n'
        f"[hub]\nhttp_port = {ports[3]}\nopen_mode = true\n"  # publishers here are anonymous test clients
    )
    lab = Lab(state, ports[0], ports[1], ports[2], ports[3], config)
    try:
        lab.start_mosquitto()
        lab.start_influxd()
        yield lab
    finally:
        if lab.hub is not None and lab.hub.poll() is None:
            lab.hub.terminate()
            try:
                lab.hub.wait(20)
            except subprocess.TimeoutExpired:
                lab.hub.kill()
        for service in (lab.influxd, lab.mosquitto):
            if service is not None:
                if service.proc.poll() is None:
                    os.kill(service.proc.pid, signal.SIGCONT)
                service.stop()
        shutil.rmtree(state, ignore_errors=True)


def publisher(port: int, cohort: str, rate: float, seconds: float, stamp: bool = False) -> PacedPublisher:
    """Four QoS 1 devices of `cohort` (one persistent client) publishing `rate` readings a second for `seconds`."""
    return PacedPublisher(
        port,
        lambda i: f"lab/{cohort}/learner{i % 4}/dev/telemetry",
        rate,
        client_id=f"pub-{cohort}",
        total=int(rate * seconds),
        clean_session=False,
        stamp=stamp,
    )


def report(name: str, published: int, stored: int, distinct: int, extra: str = "") -> None:
    line = (
        f"{name}: published {published}, stored {distinct}, lost {published - distinct}, "
        f"duplicates {stored - distinct}{extra}"
    )
    REPORT.append(line)
    print(line)


@dataclass
class Settled:
    stored: int  # points
    distinct: int  # distinct sequence numbers
    reached: float | None  # time.monotonic() when every published reading was first stored


def settle(lab: Lab, cohort: str, published: int, timeout: float, quiet: float = 3.0) -> Settled:
    """The counts once every published reading is stored and both counts have then stayed unchanged for
    `quiet` s (a spool replay or a redelivery can add a duplicate after the last reading arrived), or whatever
    is stored when `timeout` runs out (the caller's exact comparisons then say what is missing)."""
    deadline = time.monotonic() + timeout
    last, since, reached = lab.counts(cohort), time.monotonic(), None
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = lab.counts(cohort)
        if now[1] >= published and reached is None:
            reached = time.monotonic()
        if now != last:
            last, since = now, time.monotonic()
        elif reached is not None and time.monotonic() - since >= quiet:
            break
    stored, distinct = lab.counts(cohort)
    return Settled(stored, distinct, reached)


def test_influxd_killed_for_20s_at_2000_per_s_loses_nothing(lab: Lab) -> None:
    lab.start_hub()
    cohort = unique("k")
    pub = publisher(lab.mqtt_port, cohort, rate=2000, seconds=26)
    pub.start()
    time.sleep(3)  # the scenario's own timeline: 3 s normal, 20 s without InfluxDB, then back
    assert lab.influxd is not None
    os.kill(lab.influxd.proc.pid, signal.SIGKILL)
    lab.influxd.proc.wait()
    wait_for(lambda: (lab.health() or {}).get("status") == "degraded", 15, "health to say degraded")
    time.sleep(17)
    lab.start_influxd()
    back = time.monotonic()
    pub.finish(60)
    settled = settle(lab, cohort, pub.published, 30)
    stored, distinct = settled.stored, settled.distinct
    caught_up = (settled.reached or time.monotonic()) - back
    report(
        "influxd killed 20 s at 2,000/s",
        pub.published,
        stored,
        distinct,
        f", backlog stored {caught_up:.1f} s after influxd returned",
    )
    assert distinct == pub.published, lab.logs()
    assert stored == distinct
    assert caught_up < 15
    wait_for(lambda: (lab.health() or {}).get("status") == "ok", 10, "health ok again")


def test_influxd_frozen_10s_loses_nothing_and_health_says_so(lab: Lab) -> None:
    lab.start_hub()
    cohort = unique("s")
    pub = publisher(lab.mqtt_port, cohort, rate=1000, seconds=16)
    pub.start()
    time.sleep(3)
    assert lab.influxd is not None
    os.kill(lab.influxd.proc.pid, signal.SIGSTOP)
    degraded = wait_for(lambda: (lab.health() or {}).get("status") == "degraded", 9, "health to say degraded")
    time.sleep(7)
    os.kill(lab.influxd.proc.pid, signal.SIGCONT)
    pub.finish(60)
    settled = settle(lab, cohort, pub.published, 30)
    stored, distinct = settled.stored, settled.distinct
    report("influxd SIGSTOP 10 s at 1,000/s", pub.published, stored, distinct)
    assert degraded
    assert distinct == pub.published, lab.logs()
    assert stored == distinct
    wait_for(lambda: (lab.health() or {}).get("status") == "ok", 15, "health ok again")


def test_hub_sigkilled_mid_ingest_and_restarted_loses_nothing(lab: Lab) -> None:
    lab.start_hub()
    cohort = unique("h")
    pub = publisher(lab.mqtt_port, cohort, rate=1000, seconds=8)
    pub.start()
    time.sleep(3)
    assert lab.hub is not None
    lab.hub.send_signal(signal.SIGKILL)
    lab.hub.wait()
    time.sleep(1)
    lab.start_hub()
    pub.finish(60)
    settled = settle(lab, cohort, pub.published, 30)
    stored, distinct = settled.stored, settled.distinct
    report("hub SIGKILL + restart at 1,000/s", pub.published, stored, distinct)
    assert distinct == pub.published, lab.logs()
    assert stored == distinct, lab.logs()


def test_broker_restart_loses_no_qos1_reading_and_the_hub_is_back_within_5s(lab: Lab) -> None:
    lab.start_hub()
    cohort = unique("b")
    pub = publisher(lab.mqtt_port, cohort, rate=1000, seconds=8, stamp=True)
    pub.start()
    time.sleep(3)
    assert lab.mosquitto is not None
    connects = (lab.stats() or {})["mqtt"]["connects"]
    lab.mosquitto.stop()  # SIGTERM: mosquitto saves its persistence file on the way out
    time.sleep(1)
    lab.start_mosquitto()
    restarted = time.monotonic()
    wait_for(lambda: ((lab.stats() or {}).get("mqtt") or {}).get("connects", 0) > connects, 10, "the hub to reconnect")
    back_after = time.monotonic() - restarted
    pub.finish(60)
    settled = settle(lab, cohort, pub.published, 30)
    stored, distinct = settled.stored, settled.distinct
    report(
        "mosquitto restart at 1,000/s",
        pub.published,
        stored,
        distinct,
        f", hub back {back_after:.1f} s after the broker",
    )
    assert back_after < 5
    assert distinct == pub.published, lab.logs()
    assert stored == distinct


def test_malformed_flood_with_valid_readings(lab: Lab) -> None:
    lab.start_hub()
    cohort = unique("m")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"flood-{cohort}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", lab.mqtt_port)
    client.loop_start()
    bad = [
        b"{pm2_5: 3}",
        b'{"n": NaN}',
        b"\xff\xfe",
        b'{"n": {"deep": 1}}',
        b"[1,2]",
        b'{"n": 1,}',
        b"",
        b"x" * 20000,
        b'{"a b": 1}',
        b"m n=1i,n=2i",
    ]
    infos = []
    valid = 0
    for i in range(11_000):
        topic = f"lab/{cohort}/learner{i % 7}/dev/telemetry"
        if i % 11 == 0:
            payload = json.dumps({"n": valid}).encode()
            valid += 1
        else:
            payload = bad[i % len(bad)]
        infos.append(client.publish(topic, payload, qos=1))
    wait_for(lambda: all(info.is_published() for info in infos), 60, "all published")
    client.loop_stop()
    client.disconnect()
    settled = settle(lab, cohort, valid, 30)
    stored, distinct = settled.stored, settled.distinct
    stats = lab.stats() or {}
    report("10,000 malformed + 1,000 valid", valid, stored, distinct, f", rejected {sum(stats['rejected'].values())}")
    assert valid == 1000 and distinct == 1000 and stored == 1000
    assert sum(stats["rejected"].values()) == 10_000
    assert stats["writer"]["rejected_points"] == 0  # no InfluxDB 400
    assert lab.hub is not None and lab.hub.poll() is None


def test_conflict_in_the_first_write_into_a_new_database(lab: Lab) -> None:
    """InfluxDB down at start, so the first batch holds both types of `x`; only the second one is refused."""
    assert lab.influxd is not None
    lab.influxd.stop()
    shutil.rmtree(lab.state / "influxdb")
    lab.start_hub()
    cohort = unique("n")
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"conf-{cohort}")
    client.connect("127.0.0.1", lab.mqtt_port)
    client.loop_start()
    infos = [client.publish(f"lab/{cohort}/ana/dev/telemetry", json.dumps({"x": 1.5, "n": 0}), qos=1)]
    # Another device of the same learner: they share a measurement (other learners' types never apply).
    infos.append(client.publish(f"lab/{cohort}/ana/dev2/telemetry", json.dumps({"x": "text", "n": 1}), qos=1))
    infos += [client.publish(f"lab/{cohort}/eve/dev/telemetry", json.dumps({"n": i}), qos=1) for i in range(2, 10)]
    wait_for(lambda: all(info.is_published() for info in infos), 30, "all published")
    wait_for(lambda: (lab.stats() or {}).get("writer", {}).get("retries", 0) >= 1, 15, "writes to be retried")
    lab.start_influxd()
    settled = settle(lab, cohort, 9, 30)
    stored, distinct = settled.stored, settled.distinct
    client.loop_stop()
    client.disconnect()
    stats = lab.stats() or {}
    report(
        "conflict in a new database's first write",
        9,
        stored,
        distinct,
        " (and the conflicting one refused, as it should)",
    )
    assert distinct == 9 and stored == 9
    assert stats["rejected"] == {"type_conflict": 1}
