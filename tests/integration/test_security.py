"""Security against the real broker: accounts and ACLs enforced by Mosquitto, the registry CLI, API tokens.

These tests use the session's *closed* mosquitto (anonymous clients refused, conftest's `closed`), as `labhub up`
runs by default; the rest of the suite shares a broker in classroom open mode. Every password and token made here
is remembered, and the last test greps every log of the run for them.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devices.topics import DeviceRef
from hub.access.registry import Registry
from hub.credentials import load_credentials
from hub.runtime import Hub
from tests.conftest import SESSION_LOG, unique
from tests.integration.conftest import ClosedLab, HubFactory, Services
from tests.support import MqttV5, influx_count, wait_until

NOT_AUTHORIZED = 0x87
SECRETS: list[str] = []  # every password and token this module made: none may appear in any log


def password_of(output: str) -> str:
    line = next(line for line in output.splitlines() if line.strip().startswith("password:"))
    secret = line.split(":", 1)[1].strip()
    SECRETS.append(secret)
    return secret


def device(closed: ClosedLab, key: str, kind: str = "air_quality") -> str:
    """Register a device through the CLI, as a trainer would; its password."""
    return password_of(closed.cli("device", "add", key, "--kind", kind).stdout)


@pytest.fixture
async def lab(closed: ClosedLab, services: Services, start_hub: HubFactory) -> AsyncIterator[tuple[Hub, str]]:
    """A hub on the closed broker, and a cohort name for this test."""
    hub = await start_hub(config=closed.config(services))
    yield hub, unique("k")


# The broker's rules ---------------------------------------------------------------------------------------


async def test_a_learner_cannot_publish_into_another_learners_topics(
    closed: ClosedLab, services: Services, lab: tuple[Hub, str]
) -> None:
    hub, cohort = lab
    a, b = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    pw_a, _ = device(closed, a.key), device(closed, b.key)
    await wait_until(lambda: b in hub.ingest.devices and hub.ingest.devices[b].declared, what="the hub to learn B")
    client = MqttV5(closed.port, a.key, pw_a)
    try:
        assert client.wait_connect()
        assert client.publish(b.topic("telemetry"), b'{"pm2_5": 666}') == NOT_AUTHORIZED
        assert client.publish(b.topic("status"), b"offline") == NOT_AUTHORIZED
        assert client.publish(b.topic("commands"), b'{"type": "stop"}') == NOT_AUTHORIZED  # only the hub commands
        assert client.publish(a.topic("errors"), b"{}") == NOT_AUTHORIZED  # only the hub answers
        assert client.publish(a.topic("telemetry"), b'{"pm2_5": 12}') == 0  # its own: fine
    finally:
        client.close()
    db = hub.cfg.influx.database
    await wait_until(lambda: influx_count(services.influx_port, db, "air_quality", "pm2_5") == 1, what="A's point")
    assert influx_count(services.influx_port, db, "air_quality", "pm2_5", "learner = 'ben'") == 0
    assert hub.ingest.devices[b].received == 0


async def test_another_learners_client_id_does_not_open_their_topics(closed: ClosedLab, lab: tuple[Hub, str]) -> None:
    hub, cohort = lab
    a, b = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    pw_a, _ = device(closed, a.key), device(closed, b.key)
    spoof = MqttV5(closed.port, a.key, pw_a, client_id=f"sim-{b.cohort}-{b.learner}-{b.device}")  # B's usual id
    try:
        assert spoof.wait_connect()
        assert spoof.publish(b.topic("telemetry"), b'{"pm2_5": 1}') == NOT_AUTHORIZED
        assert spoof.subscribe(b.topic("commands")) == NOT_AUTHORIZED
    finally:
        spoof.close()
    assert b not in hub.ingest.devices or hub.ingest.devices[b].received == 0


async def test_wildcard_subscriptions_see_only_the_devices_own_topics(
    closed: ClosedLab, services: Services, lab: tuple[Hub, str]
) -> None:
    """A learner's device tries wildcard subscriptions over the whole lab, then the other learner's traffic flows
    (seen by an observer with the hub's account, so the check has something to miss): the device is refused
    the wildcards and hears nothing but its own commands."""
    hub, cohort = lab
    a, b = DeviceRef(cohort, "ana", "arm1"), DeviceRef(cohort, "ben", "arm1")
    pw_a, pw_b = device(closed, a.key, "arm"), device(closed, b.key, "arm")
    observer = MqttV5(closed.internal_port, *closed.hub_auth)
    nosy = MqttV5(closed.port, a.key, pw_a)
    other = MqttV5(closed.port, b.key, pw_b)
    try:
        assert observer.wait_connect() and nosy.wait_connect() and other.wait_connect()
        assert observer.subscribe(f"lab/{cohort}/#") == 1
        wildcards = ("#", "lab/#", f"lab/{cohort}/+/+/commands", f"lab/{cohort}/ben/#", b.topic("errors"))
        refused = {topic: nosy.subscribe(topic) for topic in wildcards}
        assert nosy.subscribe(a.topic("commands")) == 1  # granted QoS 1
        assert nosy.subscribe(a.topic("errors")) == 1
        assert other.subscribe(b.topic("commands")) == 1
        # Traffic on B's topics: its telemetry, the hub's error answer and a command.
        assert other.publish(b.topic("telemetry"), b'{"base": 10}') == 0
        assert other.publish(b.topic("telemetry"), b"not json") == 0  # the hub answers on B's errors
        hub.mqtt.publish(b.topic("commands"), b'{"id": "b1", "type": "stop"}', qos=1)
        b_topics = {b.topic("telemetry"), b.topic("errors"), b.topic("commands")}
        await wait_until(lambda: b_topics <= {t for t, _ in observer.got}, what="B's traffic through the broker")
        # Only now A's own command: the broker has routed all of B's traffic already, and the hub's messages
        # keep their order, so anything of B's that A could hear would be in A's queue before this.
        hub.mqtt.publish(a.topic("commands"), b'{"id": "a1", "type": "stop"}', qos=1)
        await wait_until(lambda: (a.topic("commands"), b'{"id": "a1", "type": "stop"}') in nosy.got, what="A's command")
        await asyncio.sleep(0.5)  # and a moment for stragglers
        # Its own errors topic carries the lab doctor's word about its refused subscriptions (foreign_topic).
        told = [json.loads(p) for t, p in nosy.got if t == a.topic("errors")]
        assert all(m["device"] == a.key and m["code"] == "foreign_topic" for m in told), told
        heard = [t for t, _ in nosy.got if t != a.topic("errors")]
        assert (refused, heard) == (dict.fromkeys(wildcards, NOT_AUTHORIZED), [a.topic("commands")])
    finally:
        observer.close()
        nosy.close()
        other.close()


async def test_anonymous_and_wrong_passwords_are_refused(closed: ClosedLab, lab: tuple[Hub, str]) -> None:
    _, cohort = lab
    a = DeviceRef(cohort, "ana", "aq1")
    pw_a = device(closed, a.key)
    for username, password in ((None, None), (a.key, pw_a + "x"), (a.key, ""), ("nobody/at/all", pw_a)):
        client = MqttV5(closed.port, username, password)
        try:
            assert client.wait_connect() is False, (username, password)
            assert client.reason in (0x86, 0x87)  # bad user name or password / not authorized
        finally:
            client.close()


async def test_a_device_publishes_within_2s_of_its_cli_add_and_is_cut_off_within_2s_of_its_cli_disable(
    closed: ClosedLab, services: Services, lab: tuple[Hub, str]
) -> None:
    """Timed from the moment the CLI command returns (its own Python start-up, ~1 s, is not the hub's)."""
    hub, cohort = lab
    ref = DeviceRef(cohort, "ana", "aq1")
    password = device(closed, ref.key)
    added = time.monotonic()
    client = MqttV5(closed.port, ref.key, password)
    try:
        assert client.wait_connect()
        assert client.publish(ref.topic("telemetry"), b'{"pm2_5": 7.5}') == 0
        await wait_until(lambda: ref in hub.ingest.devices and hub.ingest.devices[ref].stored == 1, what="stored")
        added_s = time.monotonic() - added
        assert hub.ingest.devices[ref].kind is not None and hub.ingest.devices[ref].kind.name == "air_quality"
        closed.cli("device", "disable", ref.key)
        disabled = time.monotonic()
        assert await asyncio.to_thread(client.lost.wait, 2.0), "still connected 2 s after disable"
        cut_s = time.monotonic() - disabled
    finally:
        client.close()
    again = MqttV5(closed.port, ref.key, password)
    try:
        assert again.wait_connect() is False
    finally:
        again.close()
    closed.cli("device", "enable", ref.key)
    back = MqttV5(closed.port, ref.key, password)
    try:
        assert back.wait_connect()
    finally:
        back.close()
    print(f"CLI add → first reading stored: {added_s:.2f} s; CLI disable → disconnected: {cut_s:.2f} s")
    assert added_s < 2.0
    assert cut_s < 2.0


async def test_rotating_a_password_invalidates_the_old_one(closed: ClosedLab, lab: tuple[Hub, str]) -> None:
    _, cohort = lab
    ref = DeviceRef(cohort, "ana", "aq1")
    old = device(closed, ref.key)
    connected = MqttV5(closed.port, ref.key, old)
    try:
        assert connected.wait_connect()
        new = password_of(closed.cli("device", "rotate", ref.key).stdout)
        assert new != old
        assert await asyncio.to_thread(connected.lost.wait, 5.0), "the old session survived the rotation"
    finally:
        connected.close()
    for password, accepted in ((old, False), (new, True)):
        client = MqttV5(closed.port, ref.key, password)
        try:
            assert client.wait_connect() is accepted
        finally:
            client.close()


async def test_a_learners_own_account_drives_only_their_devices(closed: ClosedLab, lab: tuple[Hub, str]) -> None:
    _, cohort = lab
    a, b = DeviceRef(cohort, "ana", "aq1"), DeviceRef(cohort, "ben", "aq1")
    pw_a, _ = device(closed, a.key), device(closed, b.key)
    learner_pw = password_of(closed.cli("learner", "add", f"{cohort}/ana").stdout)
    app = MqttV5(closed.port, f"{cohort}/ana", learner_pw)
    sensor = MqttV5(closed.port, a.key, pw_a)
    try:
        assert app.wait_connect() and sensor.wait_connect()
        assert app.subscribe(a.topic("telemetry")) == 1
        assert app.subscribe(b.topic("telemetry")) == NOT_AUTHORIZED
        assert app.subscribe("#") == NOT_AUTHORIZED
        assert app.subscribe(a.topic("commands/result")) == 1
        assert app.publish(a.topic("commands/request"), b'{"type": "stop"}') == 0
        # The request reached the hub, which answers on A's result topic (a sensor is not an arm).
        await wait_until(lambda: any(t == a.topic("commands/result") for t, _ in app.got), what="the hub's answer")
        assert b"not_an_arm" in next(p for t, p in app.got if t == a.topic("commands/result"))
        assert app.publish(b.topic("commands/request"), b'{"type": "stop"}') == NOT_AUTHORIZED
        assert app.publish(a.topic("commands"), b'{"type": "stop"}') == NOT_AUTHORIZED
        assert app.publish(a.topic("telemetry"), b'{"pm2_5": 1}') == NOT_AUTHORIZED  # apps are not devices
        assert sensor.publish(a.topic("telemetry"), b'{"pm2_5": 3}') == 0
        await wait_until(lambda: any(t == a.topic("telemetry") for t, _ in app.got), what="A's reading in A's app")
    finally:
        app.close()
        sensor.close()


# The API ----------------------------------------------------------------------------------------------------


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession

    async def call(
        self, method: str, path: str, token: str | None, body: Any = None, headers: dict[str, str] | None = None
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        if token:
            all_headers["Authorization"] = f"Bearer {token}"
        data = json.dumps(body) if body is not None and not isinstance(body, (bytes, str, io.BytesIO)) else body
        async with self.session.request(method, self.base + path, data=data, headers=all_headers) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


def token(hub: Hub, role: str, scope: str) -> str:
    _, secret = hub.registry.add_token(role, scope, "test")
    SECRETS.append(secret)
    hub.apply_registry()
    return secret


@pytest.fixture
async def api(lab: tuple[Hub, str]) -> AsyncIterator[Api]:
    hub, _ = lab
    async with aiohttp.ClientSession() as session:
        yield Api(f"http://127.0.0.1:{hub.http_port}", session)


async def test_foreign_origins_oversize_bodies_and_floods_are_refused(
    closed: ClosedLab, lab: tuple[Hub, str], api: Api
) -> None:
    hub, cohort = lab
    arm = DeviceRef(cohort, "ana", "arm1")
    device(closed, arm.key, "arm")
    await wait_until(lambda: arm in hub.relay.arms, what="the hub to learn the arm")
    mine, other = token(hub, "learner", f"{cohort}/ana"), token(hub, "viewer", cohort)
    live = f"{api.base}/api/live?device={arm.key}"
    # The WebSocket handshake: a foreign page is refused; the hub's own page and non-browser clients get in.
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await api.session.ws_connect(live, headers={"Authorization": f"Bearer {mine}", "Origin": "http://evil.test"})
    assert refused.value.status == 403
    async with api.session.ws_connect(live, headers={"Origin": api.base}, protocols=("labhub", f"bearer.{mine}")) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "presence"
    with pytest.raises(aiohttp.WSServerHandshakeError) as unauthenticated:
        await api.session.ws_connect(live)
    assert unauthenticated.value.status == 401
    # CORS: only allow-listed origins are answered with Access-Control-Allow-Origin.
    status, _ = await api.call("GET", "/api/devices", mine, headers={"Origin": "http://evil.test"})
    assert status == 403
    # Bodies are limited to 64 KiB (the README): one byte over is refused (413); one at the limit is read and
    # answered on its merits (aiohttp's own default limit, 1 MiB, would take both).
    limit = 64 * 1024
    for size, expected in ((limit + 1, 413), (limit, 422)):
        body = io.BytesIO(b'{"type": "move", "pad": "' + b" " * (size - 27) + b'"}')
        assert len(body.getvalue()) == size
        status, answer = await api.call("POST", f"/api/devices/{arm.key}/commands", mine, body)
        assert status == expected, (size, status, answer)

    # A flood from one token: 429 with Retry-After, while another token is still served at once.
    async def one() -> tuple[int, str | None]:
        headers = {"Authorization": f"Bearer {mine}"}
        async with api.session.get(f"{api.base}/api/openapi.json", headers=headers) as resp:
            await resp.read()
            return resp.status, resp.headers.get("Retry-After")

    results = await asyncio.gather(*(one() for _ in range(120)))
    statuses = [s for s, _ in results]
    assert statuses.count(429) > 0 and statuses.count(200) >= 20  # the burst (40) less what this test used
    assert all(int(after or 0) >= 1 for status, after in results if status == 429)
    started = time.monotonic()
    status, _ = await api.call("GET", "/api/devices", other)
    assert status == 200 and time.monotonic() - started < 1.0  # served, not told to retry after 1 s or more


async def test_revoking_a_token_or_disabling_a_learner_ends_their_access_and_live_views(
    closed: ClosedLab, lab: tuple[Hub, str], api: Api
) -> None:
    hub, cohort = lab
    arm = DeviceRef(cohort, "ana", "arm1")
    device(closed, arm.key, "arm")
    await wait_until(lambda: arm in hub.relay.arms, what="the hub to learn the arm")
    phone = token(hub, "learner", f"{cohort}/ana")
    live = f"{api.base}/api/live?device={arm.key}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as bare:  # the token alone, without the subprotocol
        await api.session.ws_connect(live, protocols=(f"bearer.{phone}",))
    assert bare.value.status == 400
    async with api.session.ws_connect(live, protocols=("labhub", f"bearer.{phone}")) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "presence"
        closed.cli("learner", "disable", f"{cohort}/ana")  # by a trainer, from another process
        message = await ws.receive(timeout=5)  # the hub polls the registry every half second
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert (await api.call("GET", "/api/devices", phone))[0] == 401
    closed.cli("learner", "enable", f"{cohort}/ana")

    async def works() -> bool:
        return (await api.call("GET", "/api/devices", phone))[0] == 200

    await wait_until(works, what="the token to work again")
    token_id = next(t.id for t in hub.registry.tokens() if t.scope == f"{cohort}/ana")
    async with api.session.ws_connect(live, protocols=("labhub", f"bearer.{phone}")) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "presence"
        closed.cli("token", "revoke", token_id)
        message = await ws.receive(timeout=5)
        assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert (await api.call("GET", "/api/devices", phone))[0] == 401


def test_the_registry_imports_a_cohort_csv_and_never_stores_a_token(closed: ClosedLab, tmp_path: Path) -> None:
    cohort = unique("k")
    csv = tmp_path / "cohort.csv"
    csv.write_text(
        "cohort,learner,device,kind,profile,description\n"
        f"{cohort},ana,aq1,air_quality,,window sensor\n"
        f"{cohort},ana,arm1,arm,braccio,\n"
        f"{cohort},ben,,,,\n"
    )
    out = closed.cli("cohort", "import", str(csv)).stdout
    rows = dict(line.split(",", 1) for line in out.splitlines() if line.startswith(cohort))
    SECRETS.extend(rows.values())
    assert set(rows) == {f"{cohort}/ana", f"{cohort}/ana/aq1", f"{cohort}/ana/arm1", f"{cohort}/ben"}
    listing = closed.cli("device", "list", "--cohort", cohort).stdout
    assert "braccio" in listing and "window sensor" in listing
    for key in (f"{cohort}/ana/aq1", f"{cohort}/ben"):
        client = MqttV5(closed.port, key, rows[key])
        try:
            assert client.wait_connect()
        finally:
            client.close()
    again = closed.cli("cohort", "import", str(csv)).stdout  # idempotent: nothing new
    assert "0 new accounts" in again
    secret = closed.cli("token", "add", "--role", "viewer", "--scope", cohort).stdout.splitlines()[-1]
    SECRETS.append(secret)
    registry = Registry(closed.state / "registry.sqlite3")
    try:
        dump = "\n".join(registry._db.iterdump())
    finally:
        registry.close()
    assert secret not in dump and not any(pw in dump for pw in rows.values())


def test_no_secret_appears_in_any_log(services: Services, closed: ClosedLab) -> None:
    """Runs last (see conftest): every password and token this run made — here, and the accounts and secrets
    of every other test's hub — searched in every log of the run."""
    secrets = list(SECRETS)
    secrets += load_credentials(services.state_dir).values()  # accounts made for other tests' declared devices
    secrets += [p.read_text().strip() for p in (services.state_dir / "secrets").iterdir()]
    assert len(SECRETS) > 20 and len(secrets) > len(SECRETS), "the tests above made fewer secrets than expected"
    logs = {
        "every log record of the run": SESSION_LOG.read_text(errors="replace"),
        "mosquitto (closed) and the CLI's logs": closed.logs(),
        "mosquitto (session)": services.mosquitto.log_path.read_text(errors="replace"),
        "influxd": services.influxd.log_path.read_text(errors="replace"),
    }
    assert "hub API on http" in logs["every log record of the run"], "the run's log records were not captured"
    for name, text in logs.items():
        leaked = [s for s in secrets if s in text]
        assert not leaked, f"{name} contains {len(leaked)} secrets"
