"""The `labhub` command as a user runs it: `labhub up` brings a whole lab up and down, and says which port
is taken. Config errors are unit-tested (tests/unit/test_config_parse.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import urllib.error
from asyncio.subprocess import STDOUT
from pathlib import Path

import pytest

from hub.credentials import load_credentials, read_secret
from hub.ops.services import free_port, port_in_use
from tests.conftest import make_state_dir
from tests.support import MqttListener, MqttPublisher, http_json, influx_count, influx_query, stop_lab, wait_until


async def read_until(stream: asyncio.StreamReader, marker: str, timeout: float) -> str:
    seen = []
    async with asyncio.timeout(timeout):
        while True:
            line = (await stream.readline()).decode()
            if not line:
                raise AssertionError("labhub up ended early:\n" + "".join(seen))
            seen.append(line)
            if marker in line:
                return "".join(seen)


async def test_labhub_up_runs_the_whole_lab_and_stops_cleanly() -> None:
    state = make_state_dir("labhub-up-")
    mqtt, influx, http = free_port(), free_port(), free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "hub.cli",
        "up",
        "--state-dir",
        str(state),
        "--mqtt-port",
        str(mqtt),
        "--influx-port",
        str(influx),
        "--influx-rpc-port",  # not the default 8089: another lab (or test run) on this machine may have it
        str(free_port()),
        "--http-port",
        str(http),
        "--sim-count",
        "2",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    try:
        banner = await read_until(proc.stdout, "Ctrl-C stops everything", 60)
        assert f"127.0.0.1:{mqtt}" in banner and "6 air-quality sensors" in banner
        drain = asyncio.create_task(proc.stdout.read())  # keep the pipe flowing

        hub_user = ("labhub_hub", read_secret(state / "secrets" / "influx-hub") or "")

        async def stored() -> int:
            return await asyncio.to_thread(influx_count, influx, "labhub", "air_quality", "pm2_5", "", hub_user)

        first = await wait_until(stored, timeout=30, what="readings from the simulated fleet")

        async def grew() -> bool:
            return await stored() > first

        await wait_until(grew, timeout=10, what="the count to keep growing")

        credentials = load_credentials(state)
        auth = ("demo/ana/aq1", credentials["demo/ana/aq1"])
        # A lab screen is often projected: the banner says where the passwords are, never what they are.
        assert credentials["demo/ana/aq1"] not in banner and str(state / "lab-credentials.toml") in banner
        # One account is one connection (client id = username): watch with the hub's account, as the banner says.
        hub_mqtt = ("labhub-hub", read_secret(state / "secrets" / "mqtt-hub") or "")
        assert "HUBPW=$(cat" in banner and "-u labhub-hub" in banner
        listener = await MqttListener(mqtt, "lab/demo/ana/aq1/errors", auth=hub_mqtt).ready()
        pub = MqttPublisher(mqtt, auth=auth)
        try:
            await pub.publish("lab/demo/ana/aq1/telemetry", b'{"pm25": "twelve"}')
            error = await listener.next_json(timeout=1.0)
        finally:
            listener.close()
            pub.close()
        assert error["code"] == "unknown_field_suggest" and "'pm2_5'" in error["message"]
        token = read_secret(state / "secrets" / "api-trainer")

        async def online_has(wanted: set[str]) -> bool:
            return wanted <= await online()

        async def online() -> set[str]:
            status, devices = await http_json(f"http://127.0.0.1:{http}/api/devices", token)
            assert status == 200
            return {d["id"] for d in devices["devices"] if d["online"]}

        # The simulated demo/ana/aq1 was replaced for a moment by the publisher above: it comes back.
        expected = {"demo/ana/aq1", "sim/learner01/aq1", "sim/learner02/aq1"}
        await wait_until(lambda: online_has(expected), timeout=15, what="the fleet online")
        # influxd runs with auth: nobody gets in anonymously, and the hub's user is no admin.
        with pytest.raises(urllib.error.HTTPError) as anonymous:
            influx_query(influx, "labhub", "SELECT count(pm2_5) FROM air_quality")
        with anonymous.value:
            assert anonymous.value.code == 401
        for statement in ('DROP DATABASE "labhub"', "CREATE USER eve WITH PASSWORD 'x'", "SHOW USERS"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                influx_query(influx, "labhub", statement, hub_user)
            with refused.value:
                assert refused.value.code == 403 and b"admin privilege" in refused.value.read()
        hub_config = (state / "lab-credentials.toml").read_text() + banner
        assert (read_secret(state / "secrets" / "influx-admin") or "?") not in hub_config

        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
        output = (await drain).decode()
        assert code == 0, output
        assert "lab stopped" in output
        assert not port_in_use("127.0.0.1", mqtt) and not port_in_use("127.0.0.1", influx)
    finally:
        await stop_lab(proc)
        shutil.rmtree(state, ignore_errors=True)


def test_labhub_up_says_which_port_is_taken() -> None:
    state = make_state_dir("labhub-busy-")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hub.cli", "up", "--state-dir", str(state), "--mqtt-port", str(port), "--no-sim"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    shutil.rmtree(state, ignore_errors=True)
    assert result.returncode == 2
    assert f"port 127.0.0.1:{port} is already in use" in result.stderr


def processes_of(state: Path, *besides: asyncio.subprocess.Process | None) -> set[int]:
    """The pids of what runs for this state dir (its mosquitto, influxd and hub workers), `besides` the labs."""
    words = {str(state).encode(), str(state / "mosquitto.conf").encode(), str(state / "influxdb.conf").encode()}
    labs = {proc.pid for proc in besides if proc is not None}
    pids = set()
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and words & set((entry / "cmdline").read_bytes().split(b"\0")):
                pids.add(int(entry.name))
    return pids - labs


async def said_once(lab: asyncio.subprocess.Process, log: Path, marker: str, timeout: float) -> str:
    """What `lab` printed (to `log`) once `marker` is in it. A file, not a pipe: a killed lab's orphaned worker
    keeps the pipe open, and asyncio's wait() for the lab waits for the pipe's end too."""

    async def printed() -> str | None:
        text = log.read_text()
        assert marker in text or lab.returncode is None, f"labhub up ended early:\n{text}"
        return text if marker in text else None

    text: str = await wait_until(printed, timeout, f"{marker!r} in {log.name}")
    return text


async def test_a_killed_lab_s_processes_are_stopped_by_the_next_and_a_hangup_stops_a_lab_cleanly() -> None:
    """SIGKILL (or the OOM killer) leaves a lab's broker, database and extra workers running with its ports: the
    next `labhub up` on that state dir stops them and starts. A closed terminal (SIGHUP) stops a lab as Ctrl-C does."""
    state = make_state_dir("labhub-killed-")
    ports = [str(free_port()) for _ in range(4)]
    argv = [sys.executable, "-m", "hub.cli", "up", "--state-dir", str(state), "--no-sim", "--workers", "2"]
    argv += ["--mqtt-port", ports[0], "--influx-port", ports[1], "--influx-rpc-port", ports[2], "--http-port", ports[3]]
    first = second = None
    try:
        with open(state / "first.out", "wb") as out:
            first = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=STDOUT)
        await said_once(first, state / "first.out", "Ctrl-C stops everything", 60)
        assert (state / "lab.pids").exists()
        first.kill()
        await first.wait()
        left = processes_of(state, first)
        assert len(left) == 3, left  # mosquitto, influxd and the second worker outlived their lab

        with open(state / "second.out", "wb") as out:
            second = await asyncio.create_subprocess_exec(*argv, stdout=out, stderr=STDOUT)
        said = await said_once(second, state / "second.out", "Ctrl-C stops everything", 60)
        for pid in left:
            assert f"(pid {pid}) was left running by a lab that was killed; stopping it" in said
        assert left.isdisjoint(processes_of(state, second)), "the leftovers still run"

        second.send_signal(signal.SIGHUP)
        async with asyncio.timeout(30):
            code = await second.wait()
        said = (state / "second.out").read_text()
        assert code == 0 and "lab stopped" in said, said
        assert processes_of(state, second) == set() and not (state / "lab.pids").exists()
        assert not port_in_use("127.0.0.1", int(ports[0]))
    finally:
        for proc in (first, second):
            if proc is not None:
                await stop_lab(proc)
        for pid in processes_of(state, first, second):
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)
