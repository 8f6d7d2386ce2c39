"""What a lab is made of before it runs: the simulated fleet, the services to launch, the state dir and its tokens,
the banner, and the restart policy of the lab's helpers. No service is started."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import os
import re
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from devices.topics import DeviceRef
from hub.access.records import token_digest
from hub.access.registry import Registry
from hub.config import (
    ARM_PROFILES,
    DeviceConfig,
    InfluxConfig,
    LabConfig,
    MqttConfig,
    SimConfig,
)
from hub.credentials import CREDENTIALS_FILE, read_secret, save_credentials, secret_path, write_secret
from hub.ops import fleet
from hub.ops.banner import banner
from hub.ops.fleet import keep_running, sim_devices, simulators
from hub.ops.influxd import influxd_config, start_influxd
from hub.ops.lab import service_starters
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service
from hub.ops.state import DEMO_APP_TOKEN, TRAINER_TOKEN, lab_tokens, private_state_dir
from hub.pace import Backoff

ANA = DeviceConfig(DeviceRef("demo", "ana", "aq1"), "air_quality", True)
ARM = DeviceConfig(DeviceRef("demo", "ana", "arm1"), "arm", True, "mearm")
BEN_ARM = DeviceConfig(DeviceRef("demo", "ben", "arm1"), "arm", True)


def test_sim_devices_adds_numbered_sensors_once() -> None:
    declared = DeviceConfig(DeviceRef("sim", "learner02", "aq1"), "generic")
    cfg = sim_devices(LabConfig(Path("/x"), devices=(ANA, declared)), 3)
    keys = [d.ref.key for d in cfg.devices]
    assert keys == ["demo/ana/aq1", "sim/learner02/aq1", "sim/learner01/aq1", "sim/learner03/aq1"]
    assert cfg.devices[1] is declared  # a declared device keeps its own settings
    assert all(d.kind == "air_quality" and d.simulate for d in cfg.devices[2:])
    assert sim_devices(cfg, 0) == cfg


def test_each_simulated_device_gets_its_firmware_and_its_password(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
    monkeypatch.setattr(fleet, "AirSensor", lambda *a, **k: made.append(("air", a, k)) or "air")
    monkeypatch.setattr(fleet, "ArmFirmware", lambda *a, **k: made.append(("arm", a, k)) or "arm")
    cfg = LabConfig(Path("/x"), mqtt=MqttConfig(host="10.0.0.1", port=2883), sim=SimConfig(period_s=0.5))
    assert simulators(cfg, [ANA, ARM, BEN_ARM], {"demo/ana/aq1": "pw-ana"}) == ["air", "arm", "arm"]
    assert made == [
        ("air", (ANA.ref, "10.0.0.1", 2883, 0.5), {"seed": 0, "password": "pw-ana"}),
        ("arm", (ARM.ref, ARM_PROFILES["mearm"], "10.0.0.1", 2883), {"seed": 1, "password": None}),
        ("arm", (BEN_ARM.ref, ARM_PROFILES["mearm"], "10.0.0.1", 2883), {"seed": 2, "password": None}),
    ]


def parts(start: Callable[[], Service]) -> tuple[object, ...]:
    assert isinstance(start, functools.partial)
    return start.func, *start.args, start.keywords


def test_the_lab_launches_the_services_its_config_asks_for(tmp_path: Path) -> None:
    mqtt = MqttConfig(port=2883, internal_port=2999, max_connections=50, launch=True)
    influx = InfluxConfig(url="http://127.0.0.2:9086", rpc_port=9089, database="lab", launch=True)
    cfg = LabConfig(tmp_path, mqtt=mqtt, influx=influx)
    broker = (
        start_mosquitto,
        tmp_path,
        "127.0.0.1",
        2883,
        {"open_mode": False, "internal_port": 2999, "max_connections": 50, "lan": cfg.lan, "abort": None},
    )
    database = (
        start_influxd,
        tmp_path,
        "127.0.0.2",
        9086,
        9089,
        {"auth": True, "database": "lab", "retention": {}, "abort": None},
    )
    assert [parts(s) for s in service_starters(cfg)] == [broker, database]
    no_broker = dataclasses.replace(cfg, mqtt=dataclasses.replace(mqtt, launch=False))
    assert [parts(s) for s in service_starters(no_broker)] == [database]
    v2 = dataclasses.replace(cfg, influx=dataclasses.replace(influx, backend="v2"))
    assert [parts(s) for s in service_starters(v2)] == [broker]  # a 2.x server is the operator's
    open_lab = dataclasses.replace(cfg, hub=dataclasses.replace(cfg.hub, open_mode=True))
    assert parts(service_starters(open_lab)[0])[-1] == {
        "open_mode": True,
        "internal_port": 2999,
        "max_connections": 50,
        "lan": cfg.lan,
        "abort": None,
    }
    lan_lab = dataclasses.replace(cfg, lan=dataclasses.replace(cfg.lan, enabled=True, host="10.0.0.5"))
    assert parts(service_starters(lan_lab)[0])[-1]["lan"] == lan_lab.lan  # the broker gets its LAN listeners


def test_the_state_dir_is_private(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    private_state_dir(state)
    state.chmod(0o755)
    private_state_dir(state)
    assert state.stat().st_mode & 0o777 == (0o711 if os.geteuid() == 0 else 0o700)


def test_the_labs_tokens_are_kept_reused_and_replaced_when_their_scope_changes(tmp_path: Path) -> None:
    cfg = LabConfig(tmp_path)
    lab_tokens(cfg, [ANA])
    trainer = read_secret(secret_path(tmp_path, TRAINER_TOKEN))
    assert trainer and read_secret(secret_path(tmp_path, DEMO_APP_TOKEN)) is None  # no arm: no demo app
    lab_tokens(cfg, [ANA, ARM])
    assert read_secret(secret_path(tmp_path, TRAINER_TOKEN)) == trainer  # still valid: kept
    first_app = read_secret(secret_path(tmp_path, DEMO_APP_TOKEN)) or ""
    lab_tokens(cfg, [BEN_ARM])  # the demo app now drives ben's arm: a new token, the old one revoked
    second_app = read_secret(secret_path(tmp_path, DEMO_APP_TOKEN)) or ""
    registry = Registry(cfg.registry_path)
    try:
        assert registry.token_for(token_digest(first_app)) is None  # revoked
        new = registry.token_for(token_digest(second_app))
        assert new is not None and (new.role, new.scope) == ("learner", "demo/ben")
        assert [(t.role, t.scope, t.revoked) for t in registry.tokens()] == [
            ("trainer", "*", False),
            ("learner", "demo/ana", True),
            ("learner", "demo/ben", False),
        ]
    finally:
        registry.close()


def lab(tmp_path: Path, *devices: DeviceConfig) -> LabConfig:
    return LabConfig(tmp_path, mqtt=MqttConfig(port=2883), devices=devices)


def test_the_banner_says_where_passwords_are_never_what_they_are(tmp_path: Path) -> None:
    cfg = lab(tmp_path, ANA, ARM)
    save_credentials(tmp_path, {"demo/ana/aq1": "pw-ana-SECRET"})
    text = banner(cfg, 8080, [ANA, ARM], 1)
    assert "pw-ana-SECRET" not in text
    assert f"1 declared devices' MQTT passwords are in {tmp_path / CREDENTIALS_FILE}" in text
    assert f"PW=$(grep '\"demo/ana/aq1\"' {tmp_path / CREDENTIALS_FILE} | cut -d'\"' -f4)" in text
    assert "mosquitto_sub -p 2883 -u labhub-hub -P \"$HUBPW\" -t 'lab/demo/ana/aq1/errors' &" in text
    assert "mosquitto_pub -p 2883 -u demo/ana/aq1 -P \"$PW\" -t 'lab/demo/ana/aq1/telemetry'" in text
    assert "1 air-quality sensors, 1 arm\n" in text and "/api/devices/demo/ana/arm1/commands?wait=5" in text
    assert f"API token for trainers in {secret_path(tmp_path, TRAINER_TOKEN)}" in text
    assert text.startswith("\nLabHub is up\n") and text.endswith("  Ctrl-C stops everything.\n")
    assert "  hub workers    1\n" in text


def test_the_banner_of_an_anonymous_lab_with_workers(tmp_path: Path) -> None:
    cfg = dataclasses.replace(lab(tmp_path, ANA), hub=dataclasses.replace(LabConfig(tmp_path).hub, open_mode=True))
    text = banner(cfg, 8100, [ANA, ANA, BEN_ARM, ARM], 3)
    assert "PW=" not in text and "HUBPW" not in text and " -u " not in text  # no password on file: none used
    assert "(open (classroom): anonymous clients allowed" in text
    assert "  hub workers    3 (APIs on ports 8100…8102)\n" in text
    assert "  hub workers    2 (APIs on ports 8100…8101)\n" in banner(cfg, 8100, [], 2)
    assert "2 air-quality sensors, 2 arms\n" in text and "/api/devices/demo/ben/arm1/commands" in text
    assert "http://127.0.0.1:8100/dashboard" in text


def test_the_banners_example_is_a_declared_sensor_or_demo_ana(tmp_path: Path) -> None:
    other = DeviceConfig(DeviceRef("c", "zoe", "pm"), "air_quality")
    assert "-t 'lab/c/zoe/pm/errors'" in banner(lab(tmp_path, ARM, other), 8080, [], 1)
    assert "-t 'lab/demo/ana/aq1/errors'" in banner(lab(tmp_path, ARM), 8080, [], 1)
    assert "0 air-quality sensors, 0 arms\n" in banner(lab(tmp_path, ARM), 8080, [], 1)


async def test_a_helper_that_fails_is_started_again(caplog: pytest.LogCaptureFixture) -> None:
    runs: list[int] = []

    async def job() -> None:
        runs.append(len(runs))
        if len(runs) == 1:
            raise OSError("network down")
        if len(runs) == 2:
            raise KeyError("a bug")

    with caplog.at_level(logging.INFO, logger="labhub"):
        async with asyncio.timeout(5):
            await keep_running(job, "demo app", Backoff(0.0, 0.0, jitter=False), expected=(OSError,))
    assert runs == [0, 1, 2]  # back after each failure; a job that returns is done
    expected, unexpected = [r for r in caplog.records if r.name == "labhub"]
    assert (expected.levelname, expected.getMessage()) == ("WARNING", "demo app: network down; starting again in 0 s")
    assert expected.exc_info is None
    assert unexpected.getMessage() == "demo app failed; starting it again in 0 s" and unexpected.exc_info


async def test_a_helper_waits_its_pause_between_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    pauses: list[float] = []

    async def sleep(delay: float) -> None:
        pauses.append(delay)

    monkeypatch.setattr(fleet.asyncio, "sleep", sleep)
    failures = iter([True, True, False])

    async def job() -> None:
        if next(failures):
            raise RuntimeError("again")

    async with asyncio.timeout(5):
        await keep_running(job, "bridge x", Backoff(2.0, 8.0, jitter=False))
    assert pauses == [2.0, 4.0]
    assert fleet.BRIDGE_RESTART.delay(5) == 2.0 and fleet.DEMO_APP_RESTART.delay(5) == 5.0  # constant pauses


# influxd --------------------------------------------------------------------------------------------------------


def test_influxd_rpc_port_is_on_loopback_whatever_the_http_address() -> None:
    text = influxd_config("192.0.2.7", 8086, 8089, Path("/data"), auth=True)
    binds = re.findall(r'^\s*bind-address = "([^"]+)"', text, re.M)
    assert binds == ["127.0.0.1:8089", "192.0.2.7:8086"]  # the top-level one is the RPC service's


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_secrets_are_private_even_over_a_loose_folder_or_a_stale_temp_file(scratch: Callable[[str], Path]) -> None:
    state = scratch("labhub-secrets-")
    secrets_dir = state / "secrets"
    secrets_dir.mkdir(mode=0o755)
    secrets_dir.chmod(0o755)
    stale = secrets_dir / "api-trainer.tmp"
    stale.write_text("old\n")
    stale.chmod(0o644)
    write_secret(secret_path(state, "api-trainer"), "lh_test-secret")
    assert mode(secrets_dir) == 0o700
    assert mode(secret_path(state, "api-trainer")) == 0o600
    path = save_credentials(state, {"c/l/d": "pw-not-shown"})
    assert mode(path) == 0o600


def test_stop_processes_terminates_all_at_once_and_kills_what_ignores_it() -> None:
    import subprocess
    import sys

    from hub.ops.services import stop_processes

    polite = subprocess.Popen(["sleep", "30"])
    stubborn = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
            "print('ready', flush=True); time.sleep(30)",
        ],
        stdout=subprocess.PIPE,
    )
    assert stubborn.stdout is not None and stubborn.stdout.readline() == b"ready\n"  # its handler is in place
    done = subprocess.Popen(["true"])
    done.wait()
    with stubborn.stdout:
        assert stop_processes([polite, stubborn, done], 0.5) == [stubborn]
    assert polite.returncode == -15 and stubborn.returncode == -9
