"""Scripted check, run by hand (not in CI: it downloads Node-RED): the example flow imports into Node-RED 4 and
drives the demo arm through the hub with the learner's own MQTT account.

    .venv/bin/python benchmarks/check_node_red.py            # npm-installs node-red@4 into a temp dir
    .venv/bin/python benchmarks/check_node_red.py --keep     # keep the temp dir (logs, Node-RED's userDir)
    .venv/bin/python benchmarks/check_node_red.py --websockets   # the broker node on ws://<hub>/mqtt instead

Steps, each printed: npm-install node-red@4; `labhub up` (the demo lab, with the simulated MeArm demo/ana/arm1)
on free ports with a temp state dir; `labhub learner add demo/ana`; Node-RED on a free loopback port, its userDir
in the temp dir; deploy config/node-red/labhub-flow.json (`POST /flows`) with the broker's port and the learner's
password typed in, as a user does; on the editor's own channel (`/comms`) wait for the MQTT nodes to connect and
a reading to reach the Telemetry debug node; press "wave left" then "home" (`POST /inject/<id>`) and wait for each
`done` on the "Command result" debug node; ask the hub (`GET /api/devices/demo/ana/arm1/commands`) that both came
over MQTT, ended `done` and left the arm at their targets. Exits 1 on the first failed step; Node-RED and the lab
are stopped at the end whatever happened.

The demo lab's simulated phone app moves the same arm every 5 s: a command of ours it overtakes ends `done`
with `interrupted` (accepted here) or, rarely, `failed` "superseded" (the button is pressed once more).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hub.config import CONFIG_DIR, EXAMPLE_CONFIG
from hub.credentials import read_secret
from hub.ops.services import free_port

FLOW = CONFIG_DIR / "node-red" / "labhub-flow.json"
LEARNER = "demo/ana"
ARM = "demo/ana/arm1"
FINAL = ("done", "rejected", "timed_out", "failed", "refused")
# The buttons pressed, in order, and the joints each leaves at a known angle (the MeArm's home is 90° each).
TARGETS = {"wave left (base 45°)": {"base": 45.0}, "home": {"base": 90.0, "shoulder": 90.0, "elbow": 90.0}}
STARTED = time.monotonic()


class CheckFailed(Exception):
    """A step did not reach its outcome within its deadline."""


def step(text: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {text}", flush=True)


def filled_flow(flow: list[dict[str, Any]], broker: str, port: int, user: str, password: str) -> list[dict[str, Any]]:
    """The example flow with the broker's address and the learner's credentials typed in (the only edits asked
    of a user); everything else is deployed as shipped. A `ws://` broker is a whole URL: Node-RED ignores port."""
    flow = copy.deepcopy(flow)
    brokers = [n for n in flow if n["type"] == "mqtt-broker"]
    if len(brokers) != 1:
        raise CheckFailed(f"the flow has {len(brokers)} mqtt-broker nodes, expected 1")
    brokers[0]["broker"] = broker
    brokers[0]["port"] = str(port)
    brokers[0]["credentials"] = {"user": user, "password": password}
    return flow


def node_id(flow: list[dict[str, Any]], type_: str, name: str) -> str:
    for node in flow:
        if node["type"] == type_ and node.get("name") == name:
            return str(node["id"])
    raise CheckFailed(f"no {type_} node named {name!r} in the flow")


class Process:
    """A child process whose output is collected (and written to a log file) by a thread."""

    def __init__(self, name: str, argv: list[str], log: Path) -> None:
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.reader = threading.Thread(target=self._read, args=(log,), daemon=True)
        self.reader.start()

    def _read(self, log: Path) -> None:
        assert self.proc.stdout is not None
        with log.open("w") as out:
            for raw in self.proc.stdout:
                line = raw.decode(errors="replace")
                self.lines.append(line)
                out.write(line)
                out.flush()

    def text(self) -> str:
        return "".join(self.lines)

    def tail(self, n: int = 15) -> str:
        return "".join(self.lines[-n:])

    def stop(self, sig: int, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.reader.join(5)
        return self.proc.returncode


async def until(what: str, check: Callable[[], Any], timeout: float, why: Callable[[], str] = lambda: "") -> Any:
    """Poll `check` (a sync or async function) until it returns something truthy, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise CheckFailed(f"{what}: not within {timeout:g} s\n{why()}")
        await asyncio.sleep(0.2)


procs: list[tuple[Process, int]] = []  # what main() stops at the end, last started first


class Comms:
    """What the editor sees over `/comms`: each node's status, and every debug sidebar message."""

    def __init__(self) -> None:
        self.status: dict[str, str] = {}
        self.debug: list[dict[str, Any]] = []

    async def listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        await ws.send_json({"subscribe": "status/#"})
        await ws.send_json({"subscribe": "debug"})
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            events = json.loads(msg.data)
            for event in events if isinstance(events, list) else [events]:
                topic, data = event.get("topic", ""), event.get("data") or {}
                if topic.startswith("status/"):
                    self.status[topic.removeprefix("status/")] = str(data.get("text", ""))
                elif topic == "debug":
                    self.debug.append(data)

    def debug_payloads(self, node: str) -> list[Any]:
        out = []
        for data in self.debug:
            if data.get("id") == node:
                try:
                    out.append(json.loads(data.get("msg", "null")))
                except ValueError:
                    out.append(data.get("msg"))
        return out


async def press(
    session: aiohttp.ClientSession, red: str, comms: Comms, flow: list[dict[str, Any]], button: str
) -> dict[str, Any]:
    """Press an inject button; follow its command's results on the results debug node until a final state."""
    inject = node_id(flow, "inject", button)
    request_id = json.loads(next(n for n in flow if n["id"] == inject)["payload"])["request_id"]
    results = node_id(flow, "debug", "Command result")
    for attempt in (1, 2):
        seen = len(comms.debug_payloads(results))
        async with session.post(f"{red}/inject/{inject}") as resp:
            step(f'pressed "{button}" (POST /inject/{inject}): HTTP {resp.status}')
            if resp.status != 200:
                raise CheckFailed(f"Node-RED refused the inject: {await resp.text()}")

        def ours(seen: int = seen) -> list[dict[str, Any]]:
            new = comms.debug_payloads(results)[seen:]
            return [p for p in new if isinstance(p, dict) and p.get("request_id") == request_id]

        final = await until(
            f"a final result for {request_id} on the Command result debug node",
            lambda: [p for p in ours() if p.get("state") in FINAL],
            15,
            lambda: f"results so far: {ours()}",
        )
        states = " → ".join(str(p.get("state")) for p in ours())
        result: dict[str, Any] = final[0]
        step(
            f"  results in Node-RED's debug sidebar: {states}  (id {result.get('id')}, accepted "
            f"{result.get('accepted_ms')} ms, finished {result.get('finished_ms')} ms, pose {result.get('pose')})"
        )
        if result["state"] == "failed" and "superseded" in str(result.get("reason")) and attempt == 1:
            step("  superseded by the demo phone app's command: pressing once more")
            continue
        if result["state"] != "done":
            raise CheckFailed(f"{request_id} ended {result['state']}: {result.get('reason') or result.get('error')}")
        return result
    raise CheckFailed(f"{request_id} superseded twice")


async def run(argv: list[str]) -> tuple[int, str]:
    """A short command's exit code and output."""
    proc = await asyncio.create_subprocess_exec(*argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = await proc.communicate()
    return proc.returncode or 0, out.decode(errors="replace")


async def install_node_red(npm_dir: Path, version: str) -> Path:
    step(f"npm install node-red@{version} into a temp dir")
    argv = ["npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "--prefix", str(npm_dir)]
    code, out = await run([*argv, f"node-red@{version}"])
    if code != 0:
        raise CheckFailed(f"npm install failed ({code}):\n{out}")
    red_pkg = npm_dir / "node_modules" / "node-red"
    installed = json.loads((red_pkg / "package.json").read_text())["version"]
    _, node = await run(["node", "--version"])
    step(f"node-red {installed} installed (node {node.strip()})")
    return red_pkg


@dataclass(frozen=True)
class Lab:
    url: str  # the hub's HTTP API
    token: str  # the lab's trainer token
    mqtt_port: int
    http_port: int
    password: str  # the learner's MQTT password


async def start_lab(state: Path, log: Path) -> Lab:
    """`labhub up` with the demo lab on free ports, and an MQTT account for the learner who owns the arm."""
    mqtt_port, http_port = free_port(), free_port()
    opts = ["--config", str(EXAMPLE_CONFIG), "--state-dir", str(state), "--mqtt-port", str(mqtt_port)]
    argv = [sys.executable, "-m", "hub.cli", "up", *opts, "--influx-port", str(free_port())]
    argv += ["--influx-rpc-port", str(free_port()), "--http-port", str(http_port), "--sim-count", "0"]
    step(f"labhub up (the demo lab): MQTT on 127.0.0.1:{mqtt_port}, HTTP on 127.0.0.1:{http_port}")
    lab = Process("labhub up", argv, log)
    procs.append((lab, signal.SIGINT))
    await until("the banner of `labhub up`", lambda: "Ctrl-C stops everything" in lab.text(), 60, lab.tail)
    token = read_secret(state / "secrets" / "api-trainer") or ""
    code, out = await run([sys.executable, "-m", "hub.cli", "learner", "add", LEARNER, *opts])
    found = re.search(r"password: (\S+)", out)
    if code != 0 or found is None:
        raise CheckFailed(f"labhub learner add {LEARNER} failed ({code}): {out}")
    step(f"labhub learner add {LEARNER}: the learner's MQTT account (username {LEARNER}, password printed once)")
    return Lab(f"http://127.0.0.1:{http_port}", token, mqtt_port, http_port, found.group(1))


def start_node_red(red_pkg: Path, red_dir: Path, port: int, log: Path) -> Process:
    settings = red_dir / "settings.js"
    options = {
        "uiHost": "127.0.0.1",
        "uiPort": port,
        "userDir": str(red_dir),
        "flowFile": "flows.json",
        "credentialSecret": "labhub-node-red-check",
        "debugMaxLength": 10000,  # a command's result is one JSON object: never cut in the sidebar
        "telemetry": {"enabled": False, "updateNotification": False},
        "logging": {"console": {"level": "info", "metrics": False, "audit": False}},
    }
    settings.write_text(f"module.exports = {json.dumps(options, indent=2)};\n")
    step(f"starting Node-RED on 127.0.0.1:{port}, its userDir and settings file in the temp dir")
    argv = ["node", str(red_pkg / "red.js"), "--settings", str(settings), "--userDir", str(red_dir)]
    red = Process("Node-RED", argv, log)
    procs.append((red, signal.SIGTERM))
    return red


async def deploy(session: aiohttp.ClientSession, red: str, flow: list[dict[str, Any]], password: str) -> None:
    headers = {"Node-RED-API-Version": "v2", "Node-RED-Deployment-Type": "full"}
    async with session.post(f"{red}/flows", json={"flows": flow}, headers=headers) as resp:
        body = await resp.text()
        if resp.status != 200:
            raise CheckFailed(f"POST /flows: HTTP {resp.status}: {body}")
    step(f"deployed {FLOW.name} ({len(flow)} nodes) with POST /flows: HTTP 200 {body}")
    async with session.get(f"{red}/flows", headers={"Node-RED-API-Version": "v2"}) as resp:
        deployed = (await resp.json())["flows"]
    hidden = password not in json.dumps(deployed)
    step(f"GET /flows: {len(deployed)} nodes deployed; the password is not in what the editor reads back: {hidden}")


async def drive(session: aiohttp.ClientSession, red: str, flow: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Watch the editor's channel until the flow is connected and reading; press the buttons; their results."""
    comms = Comms()
    async with session.ws_connect(f"{red}/comms") as ws:
        listener = asyncio.create_task(comms.listen(ws))
        try:
            mqtt_nodes = [n["id"] for n in flow if n["type"] in ("mqtt in", "mqtt out")]
            await until(
                "the flow's MQTT nodes connected with the learner's account",
                lambda: all(comms.status.get(i, "").endswith(".connected") for i in mqtt_nodes),
                20,
                lambda: f"statuses: {comms.status}",
            )
            step(f"the {len(mqtt_nodes)} MQTT nodes show 'connected' (their statuses on /comms)")
            telemetry = node_id(flow, "debug", "Telemetry")
            readings = await until("a reading on the Telemetry debug node", lambda: comms.debug_payloads(telemetry), 15)
            step(f"the Telemetry debug node shows demo/ana's readings, e.g. {json.dumps(readings[0])[:150]}")
            return {button: await press(session, red, comms, flow, button) for button in TARGETS}
        finally:
            listener.cancel()


async def check_hub(api: aiohttp.ClientSession, hub: str, done: dict[str, dict[str, Any]]) -> None:
    """The hub's own record of each command: it came over MQTT, ended done, and the arm reached its targets."""
    async with api.get(f"{hub}/api/devices/{ARM}/commands") as resp:
        records = {r["id"]: r for r in (await resp.json())["commands"]}
    for button, result in done.items():
        record = records.get(result["id"])
        if record is None:
            raise CheckFailed(f"the hub has no command {result['id']} for {ARM}")
        pose = record.get("pose") or {}
        step(
            f'hub: GET /api/devices/{ARM}/commands, "{button}": source {record["source"]}, state {record["state"]}, '
            f"request_id {record['request_id']}, pose {pose}, interrupted {record['interrupted']}"
        )
        if record["source"] != "mqtt" or record["state"] != "done":
            raise CheckFailed(f"{button}: expected a done command that came over MQTT, got {record}")
        if not record["interrupted"] and any(pose.get(j) != v for j, v in TARGETS[button].items()):
            raise CheckFailed(f"{button}: the arm reported {pose}, not {TARGETS[button]}")


async def check(args: argparse.Namespace, work: Path) -> None:
    npm_dir, state, red_dir = work / "npm", work / "state", work / "node-red"
    for d in (npm_dir, state, red_dir):
        d.mkdir()
    red_pkg = await install_node_red(npm_dir, args.node_red)
    lab = await start_lab(state, work / "labhub.log")
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {lab.token}"}) as api:

        async def arm_online() -> bool:
            async with api.get(f"{lab.url}/api/devices/{ARM}") as resp:
                return resp.status == 200 and (await resp.json()).get("online") is True

        await until(f"{ARM} online", arm_online, 30)
        step(f"the simulated arm {ARM} is online (GET /api/devices/{ARM})")
        port = free_port()
        red_proc = start_node_red(red_pkg, red_dir, port, work / "node-red.log")
        red = f"http://127.0.0.1:{port}"
        async with aiohttp.ClientSession() as session:

            async def red_up() -> bool:
                try:
                    async with session.get(f"{red}/flows") as resp:
                        return resp.status == 200
                except aiohttp.ClientError:
                    return False

            await until("Node-RED's admin API", red_up, 60, red_proc.tail)
            step("Node-RED's admin API answers (GET /flows: 200)")
            broker = f"ws://127.0.0.1:{lab.http_port}/mqtt" if args.websockets else "127.0.0.1"
            flow = filled_flow(json.loads(FLOW.read_text()), broker, lab.mqtt_port, LEARNER, lab.password)
            step(f"the flow's broker: {broker if args.websockets else f'{broker}:{lab.mqtt_port}'}")
            await deploy(session, red, flow, lab.password)
            done = await drive(session, red, flow)
        await check_hub(api, lab.url, done)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--node-red", default="4", help="the node-red npm version to install (default 4)")
    parser.add_argument("--websockets", action="store_true", help="connect Node-RED through the hub's /mqtt")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (logs, Node-RED's userDir)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="labhub-node-red-"))
    os.chmod(work, 0o755)  # as root, the broker's unprivileged user must reach the state dir inside
    ok = False
    try:
        asyncio.run(check(args, work))
        ok = True
    except CheckFailed as err:
        step(f"FAILED: {err}")
    except KeyboardInterrupt:
        step("interrupted")
    finally:
        for proc, sig in reversed(procs):
            code = proc.stop(sig)
            step(f"stopped {proc.name} (exit code {code})")
        if args.keep:
            step(f"kept {work} (labhub.log, node-red.log, Node-RED's userDir)")
        else:
            shutil.rmtree(work, ignore_errors=True)
    step("PASS: the flow imported into Node-RED and moved the demo arm" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
