"""The kits' Arduino sketches, compiled with the host's g++ against stand-in headers (tests/kit_shims/arduino) that
record each call, then run for a few hundred loop passes on a virtual clock: the recorded client id, account,
last will, topics, buffer size, CA and cadence must be the device's. (The Uno's lines reach a real bridge and
InfluxDB in tests/integration/test_kit.py.)"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devices.decode import decode_payload
from devices.kinds import KINDS
from devices.serial_protocols import LineFramer, Telemetry, parse_line
from devices.topics import DeviceRef
from devices.validate import validate
from hub.adapters.tls import ensure_tls
from hub.config import LanConfig
from hub.kits.settings import Broker, KitSettings, make_settings
from hub.kits.writer import ESP_SKETCH, UNO_SKETCH, device_files, write_kit

SHIMS = Path(__file__).resolve().parents[1] / "kit_shims" / "arduino"
AQ1 = DeviceRef("demo", "ana", "aq1")
PASSWORD = 'pa"ss\\w0rd'  # a quote and a backslash: the C literal must carry them as they are


def compile_sketch(kit: Path, sketch: str, out: Path, *defines: str) -> Path:
    """g++ builds the sketch (.ino as C++, Arduino.h pre-included as the IDE does) with the stand-in harness."""
    gxx = shutil.which("g++")
    assert gxx, "g++ is needed to compile the kits' sketches (./lab installs it)"
    source = kit / sketch
    cmd = [gxx, "-std=c++17", "-Wall", "-Werror", f"-I{SHIMS}", f"-I{source.parent}", "-include", "Arduino.h"]
    cmd += [*(f"-D{d}" for d in defines), "-x", "c++", str(source), "-x", "none", str(SHIMS / "harness.cpp")]
    subprocess.run([*cmd, "-o", str(out)], check=True, timeout=120, capture_output=True, text=True)
    return out


def run(binary: Path, loops: int, step_ms: int = 100, **env: str) -> tuple[str, list[dict[str, Any]]]:
    done = subprocess.run(
        [str(binary), str(loops), str(step_ms)], capture_output=True, timeout=30, env={**os.environ, **env}
    )
    assert done.returncode == 0, done.stderr
    calls = [json.loads(line) for line in done.stderr.decode().splitlines()]
    return done.stdout.decode(), calls


def kit_of(tmp_path: Path, s: KitSettings) -> Path:
    folder = tmp_path / "kit"
    write_kit(folder, device_files(s))
    return folder


@pytest.fixture(scope="module")
def ca_pem(tmp_path_factory: pytest.TempPathFactory) -> str:
    return ensure_tls(tmp_path_factory.mktemp("tls"), LanConfig(enabled=True)).ca_pem().decode()


@pytest.mark.parametrize("board", ["ESP32", "ESP8266"])
@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_the_esp_sketch_connects_as_its_account_with_a_will_and_publishes_at_its_period(
    tmp_path: Path, ca_pem: str, board: str, tls: bool
) -> None:
    broker = Broker("192.168.1.10", 8883, True, ca_pem) if tls else Broker("192.168.1.10", 1883)
    s = make_settings(AQ1, "air_quality", broker, PASSWORD, wifi_ssid="classroom", wifi_password="wifi-pw")
    binary = compile_sketch(
        kit_of(tmp_path, s), ESP_SKETCH, tmp_path / "esp", *(["ESP8266"] if board == "ESP8266" else [])
    )
    printed, calls = run(binary, loops=160, KIT_HUB_SAYS='{"code": "unknown_field"}')  # 16 s of the board's time
    by = {c["call"]: c for c in calls}
    assert by["WiFi.begin"] == {"call": "WiFi.begin", "ssid": "classroom", "password": "wifi-pw"}
    assert by["setServer"] == {"call": "setServer", "host": "192.168.1.10", "port": broker.port}
    assert by["setBufferSize"]["size"] >= 512  # PubSubClient's 256 bytes cut longer payloads
    assert by["configTime"]["server"] == "pool.ntp.org"
    connects = [c for c in calls if c["call"] == "connect"]
    assert len(connects) == 1  # once connected it stays connected: no reconnect loop
    assert {k: v for k, v in connects[0].items() if k not in ("call", "at_ms", "ok")} == {
        "client_id": "demo/ana/aq1",  # the broker binds client ids to usernames
        "username": "demo/ana/aq1",
        "password": PASSWORD,
        "will_topic": "lab/demo/ana/aq1/status",
        "will_qos": 1,
        "will_retain": True,
        "will_message": "offline",
    }
    publishes = [c for c in calls if c["call"] == "publish"]
    assert publishes[0] | {"at_ms": 0} == {
        "call": "publish",
        "at_ms": 0,
        "topic": "lab/demo/ana/aq1/status",
        "payload": "online",
        "retain": True,
    }
    assert [c["topic"] for c in calls if c["call"] == "subscribe"] == ["lab/demo/ana/aq1/errors"]
    telemetry = [c for c in publishes if c["topic"] == "lab/demo/ana/aq1/telemetry"]
    gaps = {b["at_ms"] - a["at_ms"] for a, b in itertools.pairwise(telemetry)}
    assert len(telemetry) == 4 and gaps == {round(s.period_s * 1000)}  # 0, 5, 10, 15 s: the kind's period
    for c in telemetry:
        assert not c["retain"]
        (decoded,) = decode_payload(c["payload"].encode(), None, 16384)
        reading = validate(KINDS["air_quality"], decoded, time_ns(), {})  # valid, and its `ts` plausible
        assert set(reading.fields) == {name for name, _ in s.sample} and reading.timestamp_ns is not None
    assert 'hub says: {"code": "unknown_field"}' in printed  # the errors topic is printed for the learner
    trusted = [c["pem"] for c in calls if c["call"] in ("setCACert", "setTrustAnchors")]
    assert trusted == ([ca_pem.strip() + "\n"] if tls else [])


def time_ns() -> int:
    import time

    return time.time_ns()


def test_a_refused_esp_reconnects_with_a_doubling_backoff_without_blocking_its_loop(tmp_path: Path) -> None:
    s = make_settings(AQ1, "air_quality", Broker("h", 1883), "wrong")
    binary = compile_sketch(kit_of(tmp_path, s), ESP_SKETCH, tmp_path / "esp")
    _, calls = run(binary, loops=1600, step_ms=10, KIT_REFUSE="4")  # refused 4 times in 16 s
    attempts = [c["at_ms"] for c in calls if c["call"] == "connect"]
    assert len(attempts) == 5 and [c["ok"] for c in calls if c["call"] == "connect"][-1] is True
    gaps = [b - a for a, b in itertools.pairwise(attempts)]
    assert gaps == [1000, 2000, 4000, 8000]  # never a storm: 1 s, 2 s, 4 s, 8 s (jitter is 0 in the stand-in)


def test_the_uno_sketch_prints_lines_the_serial_bridge_reads_as_valid_readings(tmp_path: Path) -> None:
    s = make_settings(AQ1, "air_quality", Broker("h", 1883), None)
    binary = compile_sketch(kit_of(tmp_path, s), UNO_SKETCH, tmp_path / "uno")
    printed, calls = run(binary, loops=160)
    assert {"call": "Serial.begin", "baud": 115200} in calls  # the bridge's rate for the lines protocol
    framer = LineFramer()
    events = [parse_line(line) for line in framer.feed(printed.encode()) if isinstance(line, bytes)]
    assert len(events) == 4 and all(isinstance(e, Telemetry) for e in events)
    for event in events:
        assert isinstance(event, Telemetry)
        (decoded,) = decode_payload(event.payload, None, 16384)
        assert set(validate(KINDS["air_quality"], decoded, time_ns(), {}).fields) == {n for n, _ in s.sample}
