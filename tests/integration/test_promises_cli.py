"""Issue 12, the `labhub` command's README promises: `labhub demo start|stop|list`, `labhub grade` (its table and
files, the same grade as `GET /api/sessions/<id>/grade`), `labhub device remove` (its account goes, its readings
stay), and extra workers supervised by `labhub up` and restarted if they die. Each runs the real command in its
own process against the session's broker and InfluxDB."""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import psutil

from devices.topics import DeviceRef
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.support import (
    MqttPublisher,
    api_token,
    cli_config,
    connack,
    count_when_stable,
    http_json,
    influx_count,
    labhub,
    stop_lab,
    wait_until,
)

REGISTRY_FOLLOW_S = 0.5  # README: the hub knows a registry change within half a second


async def test_a_demo_started_stopped_and_listed_from_the_cli_is_graded_by_labhub_grade_as_by_the_api(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    cohort = unique("c")
    ref = DeviceRef(cohort, "ana", "aq1")
    hub = await start_hub(devices=((ref.key, "air_quality"),))
    config = str(cli_config(services, hub, tmp_path / "lab.toml"))
    out = await labhub("demo", "start", f"{cohort}/ana", "--trainer", "Mme Martin", "--config", config)
    assert out.startswith("demo ") and f"started for {cohort}/ana by Mme Martin" in out, out
    session_id = out.split()[1]
    pub = MqttPublisher(services.mqtt_port)
    try:
        for value in (10.0, 11.0, 12.0, 13.0):
            await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": value}))
            await asyncio.sleep(0.05)  # the scenario: a sensor reading now and then
    finally:
        pub.close()
    db = hub.cfg.influx.database
    await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{cohort}'", 4)
    out = await labhub("demo", "stop", f"{cohort}/ana", "--config", config)
    assert out.startswith(f"demo {session_id} of {cohort}/ana stopped after ") and "labhub grade --cohort" in out
    listed = await labhub("demo", "list", "--cohort", cohort, "--config", config)
    [line] = [line for line in listed.splitlines() if line.strip()]
    assert line.startswith(session_id) and f"{cohort}/ana" in line and "Mme Martin" in line and "running" not in line

    reports = tmp_path / "reports"
    table = await labhub("grade", "--cohort", cohort, "--out", str(reports), "--config", config)
    token = api_token(hub, "trainer", cohort)
    status, api_grade = await http_json(f"http://127.0.0.1:{hub.http_port}/api/sessions/{session_id}/grade", token)
    assert status == 200, api_grade
    written = json.loads((reports / "grades.json").read_text())
    [learner] = written["learners"]
    assert learner == api_grade  # the dashboard's grade button and `labhub grade` say the same
    assert {"cohort.html", "grades.csv", "grades.json", "ana.html"} <= {p.name for p in reports.iterdir()}
    [device] = learner["devices"]
    device_lines = [line for line in table.splitlines() if ref.key in line]
    learner_lines = [line for line in table.splitlines() if "= learner" in line]
    assert len(device_lines) == 1 and len(learner_lines) == 1, table
    device_line, learner_line = device_lines[0], learner_lines[0]
    assert "air_quality" in device_line and f" {device['score_percent']:g}% " in device_line
    assert f"{cohort}/ana" in learner_line and f"{learner['score_20']}" in learner_line
    assert f"reports: {reports}/" in table


async def test_labhub_device_remove_takes_its_account_and_keeps_its_readings(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = await start_hub(open_mode=False)  # a closed lab: a removed device is no device at all
    cohort = unique("c")
    ref = DeviceRef(cohort, "dan", "aq1")
    made = await hub.accounts.add_device(ref.key, "air_quality")
    hub.apply_registry()
    assert await asyncio.to_thread(connack, services.mqtt_port, ref.key, made.password, unique("remove-")) == 0
    pub = MqttPublisher(services.mqtt_port, client_id=ref.key, auth=(ref.key, made.password))
    try:
        await pub.publish(ref.topic("telemetry"), '{"pm2_5": 3.5}')
    finally:
        pub.close()
    db = hub.cfg.influx.database
    await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{cohort}'", 1)
    out = await labhub("device", "remove", ref.key, "--config", str(cli_config(services, hub, tmp_path / "l.toml")))
    assert out.strip() == f"device {ref.key} removed"
    removed = time.monotonic()
    token = api_token(hub, "trainer", cohort)
    url = f"http://127.0.0.1:{hub.http_port}/api/devices/{ref.key}"

    async def forgotten() -> bool:
        return (await http_json(url, token))[0] == 404

    await wait_until(forgotten, timeout=3, what="the hub to forget the device")
    assert time.monotonic() - removed <= REGISTRY_FOLLOW_S + 0.5
    assert hub.registry.device(ref) is None
    # its account went
    assert await asyncio.to_thread(connack, services.mqtt_port, ref.key, made.password, unique("remove-")) != 0
    assert influx_count(services.influx_port, db, "air_quality", "pm2_5", f"cohort = '{cohort}'") == 1  # stays


# Extra workers: supervised by `labhub up`, restarted if they die ---------------------------------------------


def two_free_ports() -> int:
    """A port P with P + 1 free too (worker I serves its API on http_port + I)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
    raise AssertionError("no two free ports in a row")


def gone(process: psutil.Process) -> bool:
    """Exited (a zombie not yet reaped counts); it may be reaped between two questions, which also says gone."""
    try:
        return not process.is_running() or process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def worker_processes(up: psutil.Process, index: int) -> list[psutil.Process]:
    found = []
    for child in up.children(recursive=True):
        try:
            argv = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if "--worker" in argv and argv[argv.index("--worker") + 1] == str(index):
            found.append(child)
    return found


async def test_labhub_up_restarts_an_extra_worker_that_dies(services: Services, scratch: Callable[[str], Path]) -> None:
    state = scratch("labhub-workers-")
    http_port = two_free_ports()
    secrets = services.state_dir / "secrets"
    config = state / "lab.toml"
    config.write_text(
        f'state_dir = "{state}"\n'
        f'[mqtt]\nport = {services.mqtt_port}\nlaunch = false\nclient_id = "{unique("hub-w")}"\n'
        f'password_file = "{secrets / "mqtt-hub"}"\nadmin_password_file = "{secrets / "mqtt-admin"}"\n'
        f'[influx]\nurl = "{services.influx_url}"\ndatabase = "{unique()}"\nlaunch = false\n'
        f"[hub]\nopen_mode = true\n"
    )
    log = open(state / "up.log", "wb")  # closed below, after the process
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hub.cli", "up", "--workers", "2", "--no-sim", "--config", str(config)),
        *("--http-port", str(http_port)),
        stdout=log,
        stderr=log,
    )
    up = psutil.Process(proc.pid)
    try:
        async with aiohttp.ClientSession() as http:

            async def healthy(port: int) -> Any:
                try:
                    async with http.get(f"http://127.0.0.1:{port}/healthz") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await wait_until(lambda: healthy(http_port + 1), timeout=30, what="worker 1's API")
            [first] = worker_processes(up, 1)
            first.send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await wait_until(lambda: gone(first), what="death")
            await wait_until(
                lambda: [p for p in worker_processes(up, 1) if p.pid != first.pid], timeout=10, what="a new worker 1"
            )
            await wait_until(lambda: healthy(http_port + 1), timeout=20, what="worker 1's API again")
            print(f"worker 1 back {time.monotonic() - killed:.1f} s after SIGKILL")
            assert await healthy(http_port)  # worker 0 never went away
            [second] = worker_processes(up, 1)
    finally:
        await stop_lab(proc)
        log.close()
    assert gone(second)  # stopped with the lab
