"""Fault test: `labhub up` supervises the services it launched. At 200 QoS 1 readings/s from a device account,
mosquitto is killed with SIGKILL, then influxd: each is back within 3 s, the hub reconnects, /healthz says what
happened, and every reading the device sent is in InfluxDB exactly once.

The lab runs as users run it (a `labhub up` process); the services are found by their config path under this
test's own state dir, so nothing else on the machine is touched.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hub.adapters.influx_admin import pings
from hub.credentials import load_credentials, read_secret
from hub.ops.services import free_port, port_in_use
from tests.conftest import make_state_dir
from tests.support import PacedPublisher, influx_query, wait_for

RATE = 200  # readings a second, as the acceptance asks
DEVICE = "sup/ada/dev"  # a declared generic device: it publishes with its own broker account
BACK_WITHIN_S = 3.0


def pid_running(config: Path) -> int | None:
    """The pid of the process whose command line names `config` (the lab's mosquitto or influxd), if one runs."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(config).encode() in argv and state != "Z":
            return int(entry.name)
    return None


@dataclass
class Lab:
    """A `labhub up` process on free ports, its output collected by a thread."""

    state: Path
    mqtt_port: int
    influx_port: int
    http_port: int
    proc: subprocess.Popen[bytes] | None = None
    reader: threading.Thread | None = None
    output: list[str] = field(default_factory=list)
    token: str = ""

    def start(self) -> None:
        config = self.state / "lab.toml"
        config.write_text(
            f'state_dir = "{self.state}"\n'
            f"[mqtt]\nport = {self.mqtt_port}\nlaunch = true\n"
            f'[influx]\nurl = "http://127.0.0.1:{self.influx_port}"\nrpc_port = {free_port()}\nlaunch = true\n'
            f"[hub]\nhttp_port = {self.http_port}\n"
            f'[[devices]]\nid = "{DEVICE}"\nkind = "generic"\n'
        )
        argv = [sys.executable, "-m", "hub.cli", "up", "--config", str(config), "--no-sim"]
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        wait_for(lambda: "Ctrl-C stops everything" in self.text(), 45, "the banner of `labhub up`:\n" + self.text())
        self.token = read_secret(self.state / "secrets" / "api-trainer") or ""

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.decode(errors="replace"))

    def text(self) -> str:
        return "".join(self.output)

    def get(self, path: str) -> dict[str, Any]:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", headers={"Authorization": f"Bearer {self.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as resp:
                return dict(json.load(resp))
        except urllib.error.HTTPError as err:
            return dict(json.loads(err.read()))
        except OSError:
            return {}

    def mqtt_connects(self) -> int:
        mqtt = self.get("/api/stats").get("mqtt") or {}
        return int(mqtt.get("connects", 0)) if mqtt.get("connected") else 0

    def counts(self) -> tuple[int, int]:
        """(points, distinct sequence numbers) the device has in InfluxDB."""
        auth = ("labhub_hub", read_secret(self.state / "secrets" / "influx-hub") or "")
        where = "FROM /^generic\\./ WHERE cohort = 'sup'"
        try:
            total = influx_query(self.influx_port, "labhub", f"SELECT count(n) {where}", auth)
            distinct = influx_query(self.influx_port, "labhub", f"SELECT count(distinct(n)) {where}", auth)
        except (OSError, AssertionError):
            return 0, 0
        return sum(int(s["values"][0][1]) for s in total), sum(int(s["values"][0][1]) for s in distinct)

    def stop(self) -> int | None:
        """SIGTERM, as Ctrl-C would; its exit code (None: it had to be killed)."""
        if self.proc is None:
            return None
        code: int | None = self.proc.poll()
        if code is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.reader is not None:
            self.reader.join(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        return code


class HealthWatch(threading.Thread):
    """Polls /healthz with the trainer's token every 20 ms and keeps every distinct reason it saw."""

    def __init__(self, lab: Lab) -> None:
        super().__init__(daemon=True)
        self.lab = lab
        self.reasons: list[str] = []
        self.running = True

    def run(self) -> None:
        while self.running:
            for reason in self.lab.get("/healthz").get("reasons", []):
                if reason not in self.reasons:
                    self.reasons.append(reason)
            time.sleep(0.02)

    def saw(self, text: str) -> bool:
        return any(text in reason for reason in self.reasons)


@pytest.fixture
def lab() -> Iterator[Lab]:
    state = make_state_dir("labhub-supervisor-")
    lab = Lab(state, free_port(), free_port(), free_port())
    try:
        yield lab
    finally:
        code = lab.stop()
        for config in ("mosquitto.conf", "influxdb.conf"):  # never leave a service behind, whatever failed
            if (pid := pid_running(state / config)) is not None:
                os.kill(pid, signal.SIGKILL)
        print(lab.text()[-4000:] if code != 0 else "")
        shutil.rmtree(state, ignore_errors=True)


def kill(config: Path, back: Callable[[], bool]) -> float:
    """SIGKILL the service started with `config`; wait until a new process of it answers. Returns when it was
    killed (time.monotonic())."""
    old = pid_running(config)
    assert old is not None, f"no process runs {config.name}"
    os.kill(old, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: (pid_running(config) or old) != old and back(), 10, f"{config.name}'s service to be back")
    return killed


def test_mosquitto_then_influxd_killed_under_labhub_up_are_restarted_and_no_reading_is_lost(lab: Lab) -> None:
    lab.start()
    wait_for(lab.mqtt_connects, 10, "the hub to connect")
    password = load_credentials(lab.state)[DEVICE]
    health = HealthWatch(lab)
    health.start()
    # No device timestamp: the hub stamps each reading, so a reading stored twice would count twice.
    pub = PacedPublisher(lab.mqtt_port, lambda i: f"lab/{DEVICE}/telemetry", RATE, DEVICE, auth=(DEVICE, password))
    pub.start()
    try:
        wait_for(lambda: lab.counts()[1] >= RATE, 10, "the first second of readings in InfluxDB")

        connects = lab.mqtt_connects()
        # The lab's listener counts each probe twice against its connection limit: probe the hub's internal one.
        killed = kill(lab.state / "mosquitto.conf", lambda: port_in_use("127.0.0.1", lab.mqtt_port + 1))
        broker_back = time.monotonic() - killed
        wait_for(lambda: lab.mqtt_connects() > connects, 10, "the hub to reconnect to the broker")
        hub_back = time.monotonic() - killed
        offline_during_broker = pub.offline
        stored_before = lab.counts()[1]
        wait_for(lambda: lab.counts()[1] >= stored_before + RATE, 10, "readings to flow again after the broker")

        killed = kill(lab.state / "influxdb.conf", lambda: pings(f"http://127.0.0.1:{lab.influx_port}/ping"))
        database_back = time.monotonic() - killed
        stored_before = lab.counts()[1]
        wait_for(lambda: lab.counts()[1] >= stored_before + RATE, 15, "readings to reach InfluxDB again")
        pub.finish(20)
        wait_for(lambda: lab.counts()[1] >= pub.published, 20, "every reading in InfluxDB")
        stored, distinct = lab.counts()
        final = lab.get("/healthz")
    finally:
        pub.running = False
        health.running = False
    print(
        f"\nmosquitto back {broker_back:.2f} s after SIGKILL (hub reconnected {hub_back:.2f} s), "
        f"influxd back {database_back:.2f} s; published {pub.published} ({offline_during_broker} while the broker "
        f"was down), stored {distinct}, lost {pub.published - distinct}, duplicates {stored - distinct}"
    )
    assert broker_back < BACK_WITHIN_S and database_back < BACK_WITHIN_S
    assert offline_during_broker > 0  # paho queued readings while disconnected, and they arrived (below)
    assert distinct == pub.published and stored == distinct
    assert health.saw("mosquitto exited (code -9)") and health.saw("influxd exited (code -9)"), health.reasons
    services = final["services"]
    assert services["mosquitto"]["restarts"] == 1 and services["mosquitto"]["last_exit"] == -9
    assert services["influxd"]["restarts"] == 1 and services["influxd"]["last_exit"] == -9
    assert final["status"] == "ok", final
    wait_for(
        lambda: "influxd up (restarted 1x, last exit code -9)" in lab.text(), 6, "the progress line to show restarts"
    )
    assert "mosquitto exited (code -9); restarting it" in lab.text()
    assert lab.stop() == 0
