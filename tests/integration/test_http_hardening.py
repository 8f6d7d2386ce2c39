"""Issue 11, the hub's own surfaces: HTTP API, live WebSockets, registry lifecycle, files on disk and the CLI.

Each test runs against a real hub (the session's mosquitto and influxd) or the real `labhub` command, and
holds the hub to what the README promises: live views capped per token, a removed learner's tokens dead and
nothing inherited by a namesake, private files, a banner without passwords, pages that cannot be framed,
a public /healthz without error texts, and one boundary per request that answers 500 without internals.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devices.topics import DeviceRef
from hub.credentials import save_credentials
from hub.ops.banner import banner
from hub.ops.services import free_port
from hub.runtime import Hub
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services, lab_config
from tests.support import MqttPublisher, api_token, cli_config, influx_count, wait_until

# Bounds from the README (Security): live views per token; the open-files limit the CLI raises to.
LIVE_VIEWS_PER_TOKEN = 8
CLOSED = (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)


@dataclass
class Api:
    hub: Hub
    base: str
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, raw: bytes | None = None
    ) -> tuple[int, Any, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = raw if raw is not None else (json.dumps(body) if body is not None else None)
        async with self.session.request(method, self.base + path, data=data, headers=headers) as resp:
            text = await resp.text()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = text
            return resp.status, answer, resp.headers

    def live(self, query: str, token: str) -> Any:
        return self.session.ws_connect(f"{self.base}/api/live?{query}", protocols=("labhub", f"bearer.{token}"))


@pytest.fixture
async def api(start_hub: HubFactory) -> AsyncIterator[Api]:
    hub = await start_hub()
    async with aiohttp.ClientSession() as session:
        yield Api(hub, f"http://127.0.0.1:{hub.http_port}", session)


def labhub(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hub.cli", *args], capture_output=True, text=True, timeout=60, **kwargs
    )


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# Live views: one token cannot exhaust the hub's file descriptors -------------------------------------------


async def test_one_token_gets_a_bounded_number_of_live_views_and_others_still_get_theirs(api: Api) -> None:
    cohort = unique("c")
    greedy, other = api_token(api.hub, "viewer", cohort), api_token(api.hub, "viewer", cohort)
    opened = []
    try:
        for _ in range(LIVE_VIEWS_PER_TOKEN):
            ws = await api.live(f"cohort={cohort}", greedy)
            opened.append(ws)
        for _ in range(3):  # and again: the refusal is clear, and nothing is opened behind it
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                opened.append(await api.live(f"cohort={cohort}", greedy))
            assert refused.value.status == 429
            assert int(refused.value.headers["Retry-After"]) >= 1  # type: ignore[index]
        ws = await api.live(f"cohort={cohort}", other)  # another token is not starved
        opened.append(ws)
        # A view that closes gives its place back.
        await opened.pop(0).close()
        opened.append(await _connect_eventually(api, f"cohort={cohort}", greedy))
    finally:
        for ws in opened:
            await ws.close()


async def _connect_eventually(api: Api, query: str, token: str) -> Any:
    deadline = time.monotonic() + 3
    while True:
        try:
            return await api.live(query, token)
        except aiohttp.WSServerHandshakeError as err:
            if err.status != 429 or time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.02)


def test_the_labhub_command_raises_its_open_files_limit_to_the_hard_limit(tmp_path: Path) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = 64

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    port_path = tmp_path / "ttyLAB0"
    log = tmp_path / "sim.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub.cli", "sim", "serial", "--path", str(port_path), "--period", "10"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            preexec_fn=lower,
        )
    try:
        deadline = time.monotonic() + 20
        while not port_path.exists():  # the command is running
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "labhub sim serial did not start"
            time.sleep(0.02)
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        row = next(line for line in limits.splitlines() if line.startswith("Max open files"))
        running_soft = row.split()[3]
        if hard == resource.RLIM_INFINITY:
            assert running_soft == "unlimited" or int(running_soft) >= 1 << 20, row
        else:
            assert running_soft == str(hard), row
    finally:
        proc.terminate()
        proc.wait(10)


# Lifecycle: a removed learner (or device) leaves nothing behind ---------------------------------------------


async def test_removing_a_learner_kills_their_tokens_and_views_and_a_namesake_inherits_nothing(
    services: Services, api: Api, tmp_path: Path
) -> None:
    hub = api.hub
    cohort = unique("c")
    ref = DeviceRef(cohort, "ana", "aq1")
    trainer = api_token(hub, "trainer", cohort)
    status, made, _ = await api.call("POST", "/api/registry/devices", trainer, {"id": ref.key, "kind": "air_quality"})
    assert status == 201, made
    phone = api_token(hub, "learner", f"{cohort}/ana")
    status, session, _ = await api.call("POST", "/api/sessions", trainer, {"learner": f"{cohort}/ana"})
    assert status == 201, session
    assert (await api.call("POST", f"/api/sessions/{session['id']}/stop", trainer))[0] == 200
    # The old ana's device sends a reading, which InfluxDB keeps after she is gone.
    await wait_until(lambda: ref in hub.ingest.devices, what="the hub to learn the device")
    publisher = MqttPublisher(services.mqtt_port, auth=(ref.key, made["password"]))
    try:
        await publisher.publish(ref.topic("telemetry"), b'{"pm2_5": 66.6}')
    finally:
        publisher.close()
    await wait_until(
        lambda: influx_count(
            services.influx_port,
            hub.cfg.influx.database,
            "air_quality",
            "pm2_5",
            f"learner = 'ana' AND cohort = '{cohort}'",
        ),
        what="the old reading stored",
    )
    status, latest, _ = await api.call("GET", f"/api/devices/{ref.key}/latest", phone)
    assert status == 200 and latest["fields"]["pm2_5"] == 66.6

    async with api.live(f"device={ref.key}", phone) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "presence"
        config = cli_config(services, hub, tmp_path / "lab.toml")
        done = labhub("learner", "remove", f"{cohort}/ana", "--config", str(config))
        assert done.returncode == 0, done.stderr
        message = await ws.receive(timeout=3)  # the hub follows the registry within half a second
        assert message.type in CLOSED
    assert (await api.call("GET", "/api/devices", phone))[0] == 401

    # A new learner of the same name, with a device of the same name: the old token stays dead, and the new
    # ana's token sees neither the old ana's demo sessions nor her readings.
    status, made, _ = await api.call("POST", "/api/registry/devices", trainer, {"id": ref.key, "kind": "air_quality"})
    assert status == 201, made
    await asyncio.sleep(0)  # (the hub applies the change before answering)
    assert (await api.call("GET", "/api/devices", phone))[0] == 401
    new_phone = api_token(hub, "learner", f"{cohort}/ana")
    status, sessions, _ = await api.call("GET", "/api/sessions", new_phone)
    assert status == 200 and sessions["sessions"] == []
    status, latest, _ = await api.call("GET", f"/api/devices/{ref.key}/latest", new_phone)
    assert status == 200 and latest["fields"] == {}, latest
    status, history, _ = await api.call("GET", f"/api/devices/{ref.key}/history?field=pm2_5", new_phone)
    assert status == 200 and history["points"] == [], history


async def test_removing_a_device_closes_the_live_views_that_named_it(api: Api) -> None:
    cohort = unique("c")
    ref = DeviceRef(cohort, "ben", "aq1")
    trainer = api_token(api.hub, "trainer", cohort)
    assert (await api.call("POST", "/api/registry/devices", trainer, {"id": ref.key}))[0] == 201
    await wait_until(lambda: ref in api.hub.ingest.devices, what="the hub to learn the device")
    async with api.live(f"device={ref.key}", trainer) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "presence"
        assert (await api.call("DELETE", f"/api/registry/devices/{ref.key}", trainer))[0] == 200
        message = await ws.receive(timeout=3)
        assert message.type in CLOSED


# Files: private from the first byte -------------------------------------------------------------------------


async def test_the_registry_and_its_wal_files_are_private(
    start_hub: HubFactory, scratch: Callable[[str], Path]
) -> None:
    state = scratch("labhub-modes-") / "fresh"
    hub = await start_hub(registry=str(state / "registry.sqlite3"))
    api_token(hub, "viewer", "*")  # a write: the WAL is in use
    files = [state / "registry.sqlite3", state / "registry.sqlite3-wal", state / "registry.sqlite3-shm"]
    assert all(p.exists() for p in files), sorted(p.name for p in state.iterdir())
    assert {p.name: oct(mode(p)) for p in files} == {p.name: "0o600" for p in files}
    assert mode(state) == 0o700


async def test_reports_are_private_and_a_learner_named_cohort_keeps_their_own_page(
    services: Services, start_hub: HubFactory, tmp_path: Path, scratch: Callable[[str], Path]
) -> None:
    hub = await start_hub()
    cohort = unique("c")
    now = time.time_ns()
    for learner in ("cohort", "grades", "ana"):
        hub.registry.ensure_learner(cohort, learner)
        session = hub.registry.start_session(cohort, learner, "test", now_ns=now - 20_000_000_000)
        hub.registry.stop_session(session.id, now_ns=now - 10_000_000_000)
    out = scratch("labhub-reports-") / "reports"
    done = labhub(
        "grade", "--cohort", cohort, "--out", str(out), "--config", str(cli_config(services, hub, tmp_path / "l.toml"))
    )
    assert done.returncode == 0, done.stderr + done.stdout
    pages = {p.name: p.read_text() for p in out.iterdir()}
    assert {"cohort.html", "grades.csv", "grades.json"} <= set(pages)
    learner_pages = [text for name, text in pages.items() if name.endswith(".html") and name != "cohort.html"]
    assert len(learner_pages) == 3, sorted(pages)
    for learner in ("cohort", "grades", "ana"):  # each learner's own page, whatever the name
        assert sum(f"{cohort}/{learner}" in text for text in learner_pages) >= 1, learner
    assert all(f"{cohort}/ana" not in t or f"{cohort}/cohort" not in t for t in learner_pages)
    assert mode(out) == 0o700 and all(mode(out / name) == 0o600 for name in pages)


# The banner: where passwords are, never what they are --------------------------------------------------------


def test_the_start_banner_says_where_passwords_are_not_what_they_are(
    services: Services, scratch: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    state = scratch("labhub-banner-")
    cfg = lab_config(services, devices=(("demo/ana/aq1", "air_quality"), ("demo/ben/aq1", "air_quality")))
    cfg = dataclasses.replace(cfg, state_dir=state)
    passwords = {"demo/ana/aq1": "pw-ana-ABCDEFGHIJ", "demo/ben/aq1": "pw-ben-KLMNOPQRST"}
    path = save_credentials(state, passwords)
    print(banner(cfg, 8080, [], 1))
    out = capsys.readouterr().out
    assert str(path) in out
    assert not [pw for pw in passwords.values() if pw in out], out


# Pages and answers: never framed, never sniffed -----------------------------------------------------------------


async def test_every_answer_carries_a_csp_that_forbids_framing_and_the_other_security_headers(api: Api) -> None:
    token = api_token(api.hub, "viewer", "*")
    checks = [
        ("GET", "/", None),
        ("GET", "/phone", None),
        ("GET", "/dashboard", None),
        ("GET", "/dashboard/device", None),
        ("GET", "/static/labhub.js", None),
        ("GET", "/healthz", None),
        ("GET", "/api/devices", token),
        ("GET", "/api/devices", None),  # 401
        ("GET", "/api/devices/a/b/c", token),  # 404
        ("GET", "/no/such/route", token),
    ]
    for method, path, who in checks:
        status, _, headers = await api.call(method, path, who)
        csp = headers.get("Content-Security-Policy", "")
        assert "frame-ancestors 'none'" in csp, (path, status, csp)
        assert "default-src 'none'" in csp, (path, csp)
        assert headers.get("X-Frame-Options") == "DENY", path
        assert headers.get("X-Content-Type-Options") == "nosniff", path
        assert headers.get("Referrer-Policy") == "no-referrer", path
    _, _, headers = await api.call("GET", "/dashboard", None)
    assert "'unsafe-inline'" not in headers["Content-Security-Policy"]
    assert "'unsafe-eval'" not in headers["Content-Security-Policy"]


# /healthz: public status only; reasons for trainers and viewers ---------------------------------------------------


async def test_public_healthz_says_only_ok_or_degraded_and_the_reasons_need_a_token(
    services: Services, start_hub: HubFactory
) -> None:
    ref = DeviceRef(unique("c"), "ana", "aq1")
    cfg = lab_config(services, devices=((ref.key, "air_quality"),))
    dead = f"http://127.0.0.1:{free_port()}"  # InfluxDB is not there
    cfg = dataclasses.replace(cfg, influx=dataclasses.replace(cfg.influx, url=dead, timeout_s=1.0))
    hub = await start_hub(config=cfg)
    publisher = MqttPublisher(services.mqtt_port)
    try:
        await publisher.publish(ref.topic("telemetry"), b'{"pm2_5": 12}')
    finally:
        publisher.close()
    base = f"http://127.0.0.1:{hub.http_port}/healthz"
    async with aiohttp.ClientSession() as session:

        async def get(token: str | None = None) -> tuple[int, Any]:
            headers = {"Authorization": f"Bearer {token}"} if token else {}
            async with session.get(base, headers=headers) as resp:
                return resp.status, await resp.json()

        async def degraded() -> bool:
            return (await get())[0] == 503

        await wait_until(degraded, timeout=15, what="the hub to report InfluxDB failing")
        assert await get() == (503, {"status": "degraded"})
        assert await get("lh_not-a-token") == (503, {"status": "degraded"})
        assert await get(api_token(hub, "learner", f"{ref.cohort}/ana")) == (503, {"status": "degraded"})
        for role in ("viewer", "trainer"):
            status, body = await get(api_token(hub, role, ref.cohort))
            assert status == 503 and body["status"] == "degraded" and any("InfluxDB" in r for r in body["reasons"])


# One boundary per request; hostile bodies are 400, never 500 ---------------------------------------------------


async def test_hostile_json_bodies_are_refused_with_400(api: Api) -> None:
    cohort = unique("c")
    arm = DeviceRef(cohort, "ana", "arm1")
    trainer = api_token(api.hub, "trainer", cohort)
    assert (await api.call("POST", "/api/registry/devices", trainer, {"id": arm.key, "kind": "arm"}))[0] == 201
    await wait_until(lambda: arm in api.hub.relay.arms, what="the hub to learn the arm")
    commands = f"/api/devices/{arm.key}/commands"
    cases: list[tuple[str, str, bytes]] = [
        ("POST", "/api/tokens", b'{"role": "viewer", "scope": "%s", "label": "\\ud800"}' % cohort.encode()),
        ("POST", "/api/tokens", b'{"role": "viewer", "scope": "%s", "\\udfff": 1}' % cohort.encode()),
        (
            "POST",
            "/api/sessions",
            b'{"learner": "' + cohort.encode() + b'/ana", "x": ' + b"[" * 20000 + b"]" * 20000 + b"}",
        ),
        ("POST", "/api/tokens", b'{"role": "viewer", "scope": "x", "label": ' + b"9" * 5000 + b"}"),
        ("POST", "/api/tokens", b'{"role": "viewer", "scope": "x", "label": "\xff\xfe"}'),
        ("POST", commands, b'{"type": "\\ud800"}'),
        ("POST", commands, b'{"type": "move", "targets": ' + b"[" * 20000 + b"]" * 20000 + b"}"),
        ("POST", commands, b'{"type": "move", "targets": {"base": ' + b"1" * 400 + b"}}"),
    ]
    for method, path, raw in cases:
        status, body, _ = await api.call(method, path, trainer, raw=raw)
        assert status == 400, (path, raw[:60], status, body)
        assert isinstance(body, dict) and "error" in body, body
    assert not api.hub.boundaries.failures, api.hub.boundaries.failures
    # Still served, and a good command still goes through validation as before.
    status, _, _ = await api.call("POST", commands, trainer, {"type": "move", "targets": {"base": 400}})
    assert status == 422


async def test_a_hostile_cohort_csv_is_refused_with_a_clear_400(api: Api) -> None:
    cohort = unique("c")
    trainer = api_token(api.hub, "trainer", cohort)
    head = b"cohort,learner,device,kind,profile,description\n"
    cases = [
        (head + cohort.encode() + b",ana,aq1,air_quality,,caf\xe9 \xff\n", "UTF-8"),
        (head + cohort.encode() + b",ana,aq1,air_quality,,nul\x00here\n", ""),
        (head + cohort.encode() + b",ana,aq1,air_quality,,\x1b[31mred\x1b[0m\n", "control"),
        (head + cohort.encode() + b",ana,aq1,air_quality,," + b"x" * 60_000 + b"\n", ""),
        (head + (cohort.encode() + b",ana" + b",x" * 20_000 + b"\n"), ""),
    ]
    for raw, words in cases:
        status, body, _ = await api.call("POST", "/api/registry/import", trainer, raw=raw)
        assert status == 400, (raw[-40:], status, body)
        assert isinstance(body, dict) and words in body["error"], body
    assert api.hub.registry.learners(cohort) == []  # nothing half-imported


def test_labhub_cohort_import_refuses_hostile_csv_with_exit_2(scratch: Callable[[str], Path]) -> None:
    state = scratch("labhub-csv-")
    config = state / "lab.toml"
    config.write_text(f'state_dir = "{state}"\n[mqtt]\nport = {free_port()}\nlaunch = false\n')
    cases = {
        "latin1.csv": b"cohort,learner\ndemo,jos\xe9\n",
        "nul.csv": b"cohort,learner\ndemo,a\x00b\n",
        "escape.csv": b"cohort,learner,device,kind,profile,description\ndemo,ana,aq1,generic,,\x1b]0;owned\x07\n",
        "huge.csv": b"cohort,learner\n" + b"demo,ana\n" * 300_000,
    }
    for name, data in cases.items():
        (state / name).write_bytes(data)
        done = labhub("cohort", "import", str(state / name), "--config", str(config))
        assert done.returncode == 2, (name, done.returncode, done.stderr[-500:])
        assert "Traceback" not in done.stderr and name in done.stderr, done.stderr[-500:]


async def test_live_view_messages_from_the_app_never_take_the_hub_down(api: Api) -> None:
    cohort = unique("c")
    token = api_token(api.hub, "viewer", cohort)
    async with api.live(f"cohort={cohort}", token) as ws:
        await ws.send_str("hello")
        await ws.send_bytes(b"\xff\x00")
        await ws.send_str('{"type": "\\ud800"}')
        async with api.live(f"cohort={cohort}", token) as other:
            await other.send_str("x" * 10_000)  # over the 4 KiB message limit: that view is closed
            message = await other.receive(timeout=3)
            assert message.type in CLOSED
        assert not ws.closed
    assert (await api.call("GET", "/api/devices", token))[0] == 200
    assert not api.hub.boundaries.failures


async def test_the_pages_run_under_their_csp_and_refuse_to_be_framed(start_hub: HubFactory) -> None:
    """In the real Chromium: no page breaks its own policy (no inline script or style left unhashed, the live
    WebSocket allowed), and a foreign page that frames the arm page gets nothing."""
    from aiohttp import web
    from playwright.async_api import async_playwright

    from tests.integration.test_phone import CHROMIUM, CHROMIUM_ARGS

    cohort = unique("c")
    ref = DeviceRef(cohort, "ana", "arm1")
    hub = await start_hub(devices=((ref.key, "arm"),))
    token = api_token(hub, "trainer", cohort)
    base = f"http://127.0.0.1:{hub.http_port}"
    framed: list[bool] = []

    async def attacker(request: web.Request) -> web.Response:  # another origin (another port)
        return web.Response(text=f'<iframe id="f" src="{base}/phone#token={token}"></iframe>', content_type="text/html")

    evil = web.Application()
    evil.router.add_get("/", attacker)
    runner = web.AppRunner(evil)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    evil_port = runner.addresses[0][1]
    try:
        async with async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = await browser.new_page()
            violations: list[str] = []
            page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
            for path in (
                f"/phone?device={ref.key}#token={token}",
                f"/dashboard?cohort={cohort}#token={token}",
                f"/dashboard/device?device={ref.key}#token={token}",
                "/",
            ):
                await page.goto(base + path)
                await page.wait_for_load_state("networkidle")
            live = await page.evaluate(
                """async ([url, token]) => await new Promise(done => {
                    const ws = new WebSocket(url, ["labhub", "bearer." + token]);
                    ws.onmessage = () => { ws.close(); done(true); };
                    ws.onerror = () => done(false);
                })""",
                [f"ws://127.0.0.1:{hub.http_port}/api/live?device={ref.key}", token],
            )
            assert live, "the live WebSocket is refused on the hub's own page"
            assert violations == [], violations
            await page.goto(f"http://127.0.0.1:{evil_port}/")
            await page.wait_for_load_state("networkidle")
            frame = page.frame_locator("#f")
            framed.append(await frame.locator("#stop").count() > 0)
            await browser.close()
    finally:
        await runner.cleanup()
    assert framed == [False], "the arm page was rendered inside a foreign page"
