"""The HTTP API against fake dependencies (no broker, no database): every route × every kind of token, the
OpenAPI description against the routes, CORS. aiohttp's own test client; milliseconds a request.

The fakes stand for what `WebDeps` hands the handlers: a real registry (SQLite in a temp dir), a real command
relay (as the `Commands` protocol) and live fan-out, accounts that change the registry without a broker, a database
that answers nothing (as the `Reader` protocol) and a snapshot of counters.
"""

from __future__ import annotations

import dataclasses
import json
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any
from zipfile import ZipFile

import pytest
from aiohttp import ClientResponse, WSServerHandshakeError
from aiohttp.test_utils import TestClient, TestServer

from devices.kinds import ARM
from devices.topics import DeviceRef
from hub.access.accounts import Credential
from hub.access.cohort_csv import ImportLine
from hub.access.records import Token, check_device, check_learner
from hub.access.registry import Registry
from hub.adapters.influx_read import InfluxQLReader
from hub.boundary import HTTP, Boundaries
from hub.commands.relay import CommandRelay
from hub.config import ARM_PROFILES, DEFAULT_ARM_PROFILE, HubConfig
from hub.doctor.service import LabDoctor
from hub.ingest.device_table import DeviceState
from hub.kits.settings import Broker, KitSource
from hub.pace import Stamper, TokenBucket
from hub.showcase.publish import Request as ShowcaseRequest
from hub.showcase.publish import publish as publish_showcase
from hub.showcase.store import ShowcaseStore
from hub.web.app import create_app
from hub.web.deps import WebDeps
from hub.web.figures import HubCounters, PartCounters
from hub.web.live import Live, LiveClient
from hub.web.openapi import DEVICE_AUTH, spec

COHORT, OTHER = "demo", "night"
ARM_ANA, ARM_BEN = DeviceRef(COHORT, "ana", "arm1"), DeviceRef(COHORT, "ben", "arm1")


class FakeAccounts:
    """Registry changes without a broker: the registry changes as `Accounts` would change it."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.calls: list[tuple[str, str]] = []

    def _made(self, method: str, key: str) -> Credential:
        self.calls.append((method, key))
        return Credential(key, f"pw-{key}")

    async def add_device(self, key: str, kind: str, profile: str | None = None, description: str = "") -> Credential:
        ref, profile = check_device(key, kind, profile, frozenset(ARM_PROFILES))
        self.registry.add_device(ref, kind, profile, description)
        return self._made("add_device", key)

    async def remove_device(self, key: str) -> None:
        self.registry.remove_device(DeviceRef.parse(key))
        self.calls.append(("remove_device", key))

    async def rotate_device(self, key: str) -> Credential:
        return self._made("rotate_device", key)

    async def set_device_enabled(self, key: str, enabled: bool) -> None:
        self.calls.append(("enable_device" if enabled else "disable_device", key))

    async def add_learner(self, key: str) -> Credential:
        self.registry.set_learner_account(*check_learner(key))
        return self._made("add_learner", key)

    async def rotate_learner(self, key: str) -> Credential:
        return self._made("rotate_learner", key)

    async def set_learner_enabled(self, key: str, enabled: bool) -> None:
        self.calls.append(("enable_learner" if enabled else "disable_learner", key))

    async def import_lines(self, lines: Iterable[ImportLine], learner_accounts: bool = True) -> list[Credential]:
        made = []
        for line in lines:
            self.registry.set_learner_account(line.cohort, line.learner)
            made.append(self._made("import", f"{line.cohort}/{line.learner}"))
        return made


class SilentInflux(InfluxQLReader):
    """A 1.x database that holds nothing: every InfluxQL query is answered with no series."""

    async def query(self, q: str, method: str = "GET") -> list[dict[str, Any]]:
        return []


def device_state(ref: DeviceRef) -> DeviceState:
    return DeviceState(
        ref=ref,
        kind=ARM,
        language="en",
        declared=True,
        prefix="",
        inspector=deque(maxlen=10),
        error_replies=TokenBucket(5.0, 20.0),
        stamps=Stamper(),
        events=Stamper(),
        online=True,
        measurement=ARM.measurement_for(ref.cohort, ref.learner),
    )


@dataclass
class Lab:
    """A web app on fake dependencies, with a token (its secret) per name."""

    client: TestClient[Any, Any]
    deps: WebDeps
    registry: Registry
    accounts: FakeAccounts
    relay: CommandRelay
    secrets: dict[str, str] = field(default_factory=dict)

    def add_token(self, name: str, role: str, scope: str) -> str:
        _, secret = self.registry.add_token(role, scope, name)
        self.deps.apply_registry()
        self.secrets[name] = secret
        return secret

    async def call(
        self, method: str, path: str, name: str | None, body: Any = None, headers: Mapping[str, str] | None = None
    ) -> tuple[int, Any]:
        all_headers = dict(headers or {})
        secret = self.secrets.get(name or "", "lh_not-a-real-token" if name == "bad" else None)
        if secret:
            all_headers["Authorization"] = f"Bearer {secret}"
        data = json.dumps(body) if body is not None and not isinstance(body, str | bytes) else body
        async with self.client.request(method, path, data=data, headers=all_headers) as resp:
            return resp.status, await answer_of(resp)


async def answer_of(resp: ClientResponse) -> Any:
    body = await resp.read()
    if resp.content_type == "application/zip":
        return body
    text = body.decode()
    try:
        return json.loads(text)
    except ValueError:
        return text


class NoAccounts:
    """Telemetry intake of a broker that knows no account: API tokens meet it on the device routes (401)."""

    max_payload_bytes = 16384
    paused = False

    async def check_account(self, username: str, password: str) -> bool:
        return False

    def post(self, ref: DeviceRef, field_name: str | None, payload: bytes) -> None:
        raise AssertionError("nothing gets past the door here")

    async def spooled(self, entry: object) -> None: ...


def fake_deps(tmp_path: Path, config: HubConfig) -> tuple[WebDeps, Registry, FakeAccounts, CommandRelay]:
    registry = Registry(tmp_path / "registry.sqlite3")
    accounts = FakeAccounts(registry)
    live = Live()
    devices: dict[DeviceRef, DeviceState] = {}
    tokens: dict[str, Token] = {}
    listeners: list[Callable[[], None]] = []
    relay = CommandRelay(
        {},
        publish=lambda topic, payload, qos: None,
        audit=lambda record: None,
        refused=lambda ref, request, err, source: None,
        online=lambda ref: True,
    )

    def apply_registry() -> None:
        for record in registry.devices():
            devices.setdefault(record.ref, device_state(record.ref))
        for ref in [r for r in devices if registry.device(r) is None]:
            del devices[ref]
        relay.set_arms({r.ref: ARM_PROFILES[r.profile or DEFAULT_ARM_PROFILE] for r in registry.devices()})
        tokens.clear()
        tokens.update(registry.active_tokens())
        for listener in listeners:
            listener()

    def watch(refs: frozenset[DeviceRef], cohorts: frozenset[str]) -> LiveClient:
        client = live.add(refs, cohorts)
        for ref in devices:
            if ref in refs or ref.cohort in cohorts:
                client.push({"type": "presence", "device": ref.key})
        return client

    async def flush_evidence(timeout: float) -> bool:
        return True

    deps = WebDeps(
        config=config,
        registry=registry,
        accounts=accounts,
        commands=relay,
        devices=devices,
        reader=SilentInflux(),
        boundaries=Boundaries(),
        tokens=lambda: tokens,
        on_tokens_changed=listeners.append,
        apply_registry=apply_registry,
        flush_evidence=flush_evidence,
        watch=watch,
        unwatch=live.remove,
        health=lambda: {"status": "ok", "reasons": []},
        stats=lambda: {"received": 0},
        counters=lambda: HubCounters(
            mqtt_connected=True,
            mqtt_connects=1,
            parts=PartCounters(devices_known=len(devices), devices_online=len(devices), commands_active=relay.active()),
        ),
        kits=KitSource(Broker("127.0.0.1", 1883), tmp_path / "lab-credentials.toml", {}),
        doctor=LabDoctor(None, publish=lambda topic, payload: None, audit=None, language=lambda cohort: "en"),
        telemetry=NoAccounts(),
    )
    return deps, registry, accounts, relay


@pytest.fixture
async def lab(tmp_path: Path) -> AsyncIterator[Lab]:
    deps, registry, accounts, relay = fake_deps(tmp_path, HubConfig(api_requests_per_second=1000.0))
    for ref in (ARM_ANA, ARM_BEN):
        registry.add_device(ref, "arm", "mearm")
    registry.set_learner_account(COHORT, "lx")
    deps.apply_registry()
    async with TestClient(TestServer(create_app(deps))) as client:
        yield Lab(client, deps, registry, accounts, relay)
    relay.shutdown()
    registry.close()


OK, FORBIDDEN, HIDDEN = "2xx", 403, 404  # HIDDEN: another learner's session is answered as if it did not exist
TOKENS = ("ana", "ben", "trainer", "other_trainer", "viewer", "admin")
SCOPES = {"ana": f"{COHORT}/ana", "ben": f"{COHORT}/ben", "trainer": COHORT, "other_trainer": OTHER}
SCOPES |= {"viewer": COHORT, "admin": "*"}
ROLES = {"ana": "learner", "ben": "learner", "trainer": "trainer", "other_trainer": "trainer"}
ROLES |= {"viewer": "viewer", "admin": "trainer"}
ALL, READ, COMMAND = set(TOKENS), {"ana", "trainer", "viewer", "admin"}, {"ana", "trainer", "admin"}
MANAGE, TRAINERS, LAB_WIDE = {"trainer", "admin"}, {"trainer", "other_trainer", "admin"}, {"admin"}
PUBLIC_ROUTES = {  # no token needed: health, and page shells and scripts that hold no data
    "/": 200,
    "/healthz": 200,
    "/ca.crt": 404,  # the fake lab runs without LAN mode: no CA
    "/phone": 200,
    "/board": 200,
    "/board/showcases": 200,
    "/dashboard": 200,
    "/dashboard/device": 200,
    "/dashboard/replay": 200,
    "/static/vendor/uplot/{name}": 200,
    "/static/labhub.js": 200,
    "/static/diagnosis.js": 200,
    "/static/replay.js": 200,
    "/showcase/{slug}": 404,  # a showcase opens with its key only (tests/unit/test_showcase_web.py)
    "/showcase/{slug}/play": 404,
    "/showcase/{slug}/replay": 404,
    "/showcase/{slug}/pack.zip": 404,
    "/demo-day/{cohort}": 404,  # braces match no name: the page itself is in tests/unit/test_showcase_web.py
    "/mqtt": 404,  # the fake lab has no broker to bridge to
}


@dataclass
class Row:
    """One route of the matrix: what each token (by name) must be answered. Tokens not named: 403.
    `path` and `body` may depend on the token (a change each allowed token makes on its own object)."""

    method: str
    route: str  # as create_app declares it
    path: str | Callable[[str], str]
    ok: set[str]
    hidden: set[str] = field(default_factory=set)
    body: Any = None
    sees: Callable[[str, Any], bool] | None = None  # what an allowed token's answer may show

    def expected(self, name: str) -> str | int:
        return OK if name in self.ok else HIDDEN if name in self.hidden else FORBIDDEN

    def order(self) -> list[str]:
        """Refused tokens first (they must change nothing), then the allowed ones."""
        return sorted(TOKENS, key=lambda name: (name in self.ok, TOKENS.index(name)))


def learners_seen(name: str) -> set[str]:
    """The learners of the cohort a token may see."""
    return {"ana": {"ana"}, "ben": {"ben"}, "other_trainer": set()}.get(name, {"ana", "ben"})


def own(name: str) -> str:
    """The object an allowed token changes: its own, so each change can be made once."""
    return {"trainer": "ana", "admin": "ben"}.get(name, "ana")


def zipped(name: str, answer: Any) -> bool:
    """A data pack: a zip holding the notebook."""
    return isinstance(answer, bytes) and any(n.endswith("/analysis.ipynb") for n in ZipFile(BytesIO(answer)).namelist())


def matrix(lab: Lab, record_id: str, graded_id: str, victims: dict[str, str]) -> list[Row]:
    def running(learner: str) -> str:
        return next(s.id for s in lab.registry.sessions(COHORT, learner) if s.running)

    d, dr = f"/api/devices/{ARM_ANA.key}", "/api/devices/{cohort}/{learner}/{device}"
    reg = "/api/registry/devices/{cohort}/{learner}/{device}"
    made = {"trainer": "cy", "admin": "cz"}  # devices the trainers add over HTTP, then remove
    store = ShowcaseStore(lab.registry.path)
    shows = {  # ana's showcases: one each allowed token revokes (ana's also approved), one to approve
        n: publish_showcase(lab.registry, store, ShowcaseRequest(f"{COHORT}/ana", f"p {n}"), False)[0].slug
        for n in ("ana", "trainer", "admin", "approve", "rekey")
    }
    store.close()
    return [
        Row(
            "GET",
            "/api/showcases",
            "/api/showcases",
            ALL,
            sees=lambda n, a: (
                {x["learner"] for x in a["showcases"]}
                == {f"{COHORT}/{x}" for x in learners_seen(n)} & {f"{COHORT}/ana"}
            ),
        ),
        Row("POST", "/api/showcases", "/api/showcases", COMMAND, body={"learner": f"{COHORT}/ana", "title": "t"}),
        Row(
            "POST",
            "/api/showcases/{slug}/approve",
            f"/api/showcases/{shows['approve']}/approve",
            MANAGE,
            {"ben", "other_trainer"},
        ),
        Row(
            "POST",
            "/api/showcases/{slug}/key",
            f"/api/showcases/{shows['rekey']}/key",
            COMMAND,
            {"ben", "other_trainer"},
            sees=lambda n, a: a["link"] == f"/showcase/{shows['rekey']}?k={a['key']}",
        ),
        Row(
            "DELETE",
            "/api/showcases/{slug}",
            lambda n: f"/api/showcases/{shows.get(n, shows['ana'])}",
            COMMAND,
            {"ben", "other_trainer"},
        ),
        Row("GET", "/api/openapi.json", "/api/openapi.json", ALL),
        Row("GET", "/api/kinds", "/api/kinds", ALL, sees=lambda n, a: "air_quality" in a),
        Row(
            "GET", "/api/whoami", "/api/whoami", ALL, sees=lambda n, a: (a["role"], a["scope"]) == (ROLES[n], SCOPES[n])
        ),
        Row(
            "GET",
            "/api/devices",
            "/api/devices",
            ALL,
            sees=lambda n, a: (
                {x["learner"] for x in a["devices"] if x["cohort"] == COHORT} == learners_seen(n)
                and all((x["findings_open"], x["worst"]) == (0, None) for x in a["devices"])
            ),  # the dashboard's badge
        ),
        Row(
            "GET",
            "/api/cohorts/{cohort}/overview",
            f"/api/cohorts/{COHORT}/overview",
            ALL,
            sees=lambda n, a: {x["learner"] for x in a["devices"]} == learners_seen(n),
        ),
        Row("GET", "/api/stats", "/api/stats", LAB_WIDE),
        Row("GET", "/metrics", "/metrics", LAB_WIDE),
        Row("GET", dr, d, READ, sees=lambda n, a: a["id"] == ARM_ANA.key),
        Row("GET", dr + "/inspector", d + "/inspector", READ),
        Row("GET", dr + "/kit", d + "/kit?file=config.json", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/diagnosis", d + "/diagnosis", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/arm", d + "/arm", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/commands", d + "/commands", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/latest", d + "/latest", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/history", d + "/history?field=base", READ, sees=lambda n, a: a["device"] == ARM_ANA.key),
        Row("GET", dr + "/readings.{fmt}", d + "/readings.csv", READ, sees=lambda n, a: a.startswith("time_utc,")),
        Row(
            "GET", "/api/learners/{cohort}/{learner}/readings.{fmt}", f"/api/learners/{COHORT}/ana/readings.jsonl", READ
        ),
        Row("GET", "/api/cohorts/{cohort}/readings.{fmt}", f"/api/cohorts/{COHORT}/readings.csv", READ - {"ana"}),
        Row(
            "GET",
            "/api/sessions/{id}/readings.{fmt}",
            f"/api/sessions/{graded_id}/readings.csv",
            READ,
            {"ben", "other_trainer"},
        ),
        Row(
            "GET",
            "/api/learners/{cohort}/{learner}/pack.zip",
            f"/api/learners/{COHORT}/ana/pack.zip",
            READ,
            sees=zipped,
        ),
        Row(
            "GET", "/api/sessions/{id}/pack.zip", f"/api/sessions/{graded_id}/pack.zip", READ, {"ben", "other_trainer"}
        ),
        Row("GET", "/api/commands/{id}", f"/api/commands/{record_id}", READ, sees=lambda n, a: a["id"] == record_id),
        Row("GET", "/api/live", f"/api/live?device={ARM_ANA.key}", READ, sees=lambda n, a: a["type"] == "presence"),
        Row("GET", "/api/live", f"/api/live?cohort={COHORT}", {"trainer", "viewer", "admin"}),
        Row("POST", dr + "/commands", d + "/commands", COMMAND, body={"type": "move", "targets": {"base": 20}}),
        Row(
            "GET",
            "/api/sessions",
            "/api/sessions",
            ALL,
            sees=lambda n, a: (
                {x["learner"] for x in a["sessions"]} == {f"{COHORT}/{x}" for x in learners_seen(n) & {"ana"}}
            ),
        ),
        Row("GET", "/api/sessions/{id}/grade", f"/api/sessions/{graded_id}/grade", READ, {"ben", "other_trainer"}),
        Row(
            "GET",
            "/api/sessions/{id}/replay",
            f"/api/sessions/{graded_id}/replay",
            READ,
            {"ben", "other_trainer"},
            sees=lambda n, a: a["session"]["id"] == graded_id and "frames" in a,
        ),
        Row(
            "GET",
            dr + "/replay",
            d + "/replay",
            READ,
            sees=lambda n, a: (
                [x["device"] for x in a["devices"]] == [ARM_ANA.key] and a["devices"][0]["arm"] is not None
            ),
        ),
        Row("POST", "/api/sessions", "/api/sessions", MANAGE, body=lambda n: {"learner": f"{COHORT}/{own(n)}"}),
        Row(
            "POST",
            "/api/sessions/{id}/stop",
            lambda n: f"/api/sessions/{running(own(n))}/stop",
            MANAGE,
            {"ben", "other_trainer"},
        ),
        Row(
            "GET",
            "/api/registry/devices",
            "/api/registry/devices",
            TRAINERS,
            sees=lambda n, a: (
                {x["id"] for x in a["devices"] if x["id"].startswith(COHORT + "/")}
                == (set() if n == "other_trainer" else {ARM_ANA.key, ARM_BEN.key})
            ),
        ),
        Row(
            "GET",
            "/api/registry/learners",
            "/api/registry/learners",
            TRAINERS,
            sees=lambda n, a: (
                {x["id"] for x in a["learners"]}
                == (set() if n == "other_trainer" else {f"{COHORT}/{x}" for x in ("ana", "ben", "lx")})
            ),
        ),
        Row(
            "POST",
            "/api/registry/devices",
            "/api/registry/devices",
            MANAGE,
            body=lambda n: {"id": f"{COHORT}/{made.get(n, 'dd')}/aq1"},
        ),
        Row(
            "DELETE",
            reg,
            lambda n: (
                f"/api/registry/devices/{COHORT}/{made[n]}/aq1" if n in made else f"/api/registry/devices/{ARM_ANA.key}"
            ),
            MANAGE,
        ),
        *(
            Row("POST", reg + "/{action}", f"/api/registry/devices/{ARM_BEN.key}/{action}", MANAGE)
            for action in ("disable", "enable", "rotate")
        ),
        Row(
            "POST",
            "/api/registry/learners",
            "/api/registry/learners",
            MANAGE,
            body=lambda n: {"id": f"{COHORT}/{own(n)}"},
        ),
        *(
            Row(
                "POST",
                "/api/registry/learners/{cohort}/{learner}/{action}",
                f"/api/registry/learners/{COHORT}/lx/{action}",
                MANAGE,
            )
            for action in ("disable", "enable", "rotate")
        ),
        Row(
            "POST",
            "/api/registry/import",
            "/api/registry/import",
            MANAGE,
            body=lambda n: f"cohort,learner\n{COHORT},{ {'trainer': 'im1', 'admin': 'im2'}.get(n, 'im3') }\n",
        ),
        Row(
            "GET",
            "/api/tokens",
            "/api/tokens",
            TRAINERS,
            sees=lambda n, a: any(t["scope"] == COHORT for t in a["tokens"]) is (n != "other_trainer"),
        ),
        Row("POST", "/api/tokens", "/api/tokens", MANAGE, body={"role": "viewer", "scope": COHORT}),
        Row("DELETE", "/api/tokens/{id}", lambda n: f"/api/tokens/{victims.get(n, victims['trainer'])}", MANAGE),
    ]


async def live_status(lab: Lab, path: str, name: str | None) -> tuple[int, Any]:
    """The live WebSocket's handshake: 101 (and the first event) or the refusal's status."""
    secret = lab.secrets.get(name or "", "lh_not-a-real-token" if name == "bad" else None)
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    try:
        async with lab.client.ws_connect(path, headers=headers) as ws:
            return 101, await ws.receive_json(timeout=5)
    except WSServerHandshakeError as err:
        return err.status, None


async def test_every_route_needs_a_token_and_stays_in_its_scope(lab: Lab) -> None:
    """Public routes answer anyone; the others answer no token and a bad token 401, another learner's or cohort's
    token 403 (404 for a session not theirs), in scope 2xx showing only what the token may see — and a refused
    change changes nothing."""
    for name in TOKENS:
        lab.add_token(name, ROLES[name], SCOPES[name])
    victims = {name: lab.registry.add_token("viewer", COHORT, "victim")[0].id for name in ("trainer", "admin")}
    record = lab.relay.submit(ARM_ANA, {"type": "home"}, "test")
    graded = lab.registry.start_session(COHORT, "ana", "test")
    lab.registry.stop_session(graded.id)
    rows = matrix(lab, record.id, graded.id, victims)
    declared = {(r.method, r.resource.canonical) for r in lab.client.app.router.routes() if r.method != "HEAD"}  # type: ignore[union-attr]
    covered = {(row.method, row.route) for row in rows} | {("GET", route) for route in PUBLIC_ROUTES}
    covered |= {("POST", route) for route in DEVICE_AUTH}  # a board's broker account, never a token: below
    assert declared == covered, (declared - covered, covered - declared)

    failures = []
    for route, expected in PUBLIC_ROUTES.items():
        path = route.replace("{name}", "uPlot.min.css")
        status, answer = await lab.call("GET", path, None)
        if status != expected:
            failures.append(f"GET {path} without a token: {status}")
        if route == "/healthz" and set(answer) != {"status"}:
            failures.append(f"GET /healthz without a token tells more than its status: {answer}")
    for route, learner in zip(DEVICE_AUTH, ("ana", "ben"), strict=True):  # 8 tries each: under the failed-login burst
        path = route.format(cohort=COHORT, learner=learner, device="aq1", field="pm2_5")
        for name in (None, "bad", *TOKENS):
            status, answer = await lab.call("POST", path, name, "12")
            if status != 401:
                failures.append(f"POST {path} as {name or 'no token'}: {status}, want 401 (device accounts only)")
    for row in rows:
        for name in (None, "bad", *row.order()):
            path = row.path(name or "none") if callable(row.path) else row.path
            body = row.body(name or "none") if callable(row.body) else row.body
            if row.route == "/api/live":
                status, answer = await live_status(lab, path, name)
            else:
                status, answer = await lab.call(row.method, path, name, body)
            want = 401 if name in (None, "bad") else row.expected(name)
            ok = (200 <= status < 300 or status == 101) if want == OK else status == want
            if ok and want == OK and row.sees is not None and name is not None and not row.sees(name, answer):
                ok, want = False, "2xx with only what it may see"
            if not ok:
                failures.append(
                    f"{row.method} {path} as {name or 'no token'}: {status}, want {want}: {str(answer)[:160]}"
                )
    assert not failures, "\n".join(failures)
    # What refused tokens asked for did not happen.
    assert lab.registry.device(ARM_ANA) is not None and lab.registry.device(DeviceRef(COHORT, "dd", "aq1")) is None
    assert lab.registry.learner(COHORT, "im3") is None and lab.registry.learner(COHORT, "im1") is not None
    revoked = lab.registry.token(victims["trainer"])
    assert revoked is None or revoked.revoked
    assert {key for _, key in lab.accounts.calls} <= {
        f"{COHORT}/{x}" for x in ("cy/aq1", "cz/aq1", "ben/arm1", "ana", "ben", "lx", "im1", "im2")
    }


async def test_health_details_only_for_trainers_and_viewers(lab: Lab) -> None:
    lab.add_token("viewer", "viewer", COHORT)
    lab.add_token("ana", "learner", f"{COHORT}/ana")
    assert await lab.call("GET", "/healthz", "viewer") == (200, {"status": "ok", "reasons": []})
    assert await lab.call("GET", "/healthz", "ana") == (200, {"status": "ok"})


async def test_metrics_render_one_snapshot_of_the_counters(tmp_path: Path) -> None:
    """/metrics shows what `WebDeps.counters` says at the scrape (what it reads from the parts: test_web_figures)."""
    parts = PartCounters(
        received=7,
        rejected={"out_of_range": 2},
        devices_known=3,
        devices_online=2,
        write_ms=(10.0, 30.0),
        commands_active={"queued": 0, "sent": 1, "accepted": 0},
        input_failures={(HTTP, "ValueError"): 1},
    )
    deps, registry, _, relay = fake_deps(tmp_path, HubConfig())
    deps = dataclasses.replace(deps, counters=lambda: HubCounters(mqtt_connected=True, mqtt_connects=1, parts=parts))
    _, secret = registry.add_token("trainer", "*", "head")
    deps.apply_registry()
    try:
        async with TestClient(TestServer(create_app(deps))) as client:
            async with client.get("/metrics", headers={"Authorization": f"Bearer {secret}"}) as resp:
                assert resp.status == 200
                lines = set((await resp.text()).splitlines())
    finally:
        relay.shutdown()
        registry.close()
    assert {
        "labhub_readings_received_total 7.0",
        'labhub_readings_rejected_total{reason="out_of_range"} 2.0',
        'labhub_devices{state="online"} 2.0',
        'labhub_devices{state="not_online"} 1.0',
        'labhub_write_latency_seconds{quantile="0.5"} 0.03',
        "labhub_mqtt_connected 1.0",
        "labhub_mqtt_connects_total 1.0",
        'labhub_commands_active{state="sent"} 1.0',
        f'labhub_input_failures_total{{error="ValueError",surface="{HTTP}"}} 1.0',
        "labhub_healthy 1.0",
    } <= lines
    assert not any(line.startswith("labhub_broker_dropped_messages") for line in lines)  # the broker has not said


def test_the_openapi_description_matches_the_routes(tmp_path: Path) -> None:
    deps, registry, _, _ = fake_deps(tmp_path, HubConfig())
    try:
        app = create_app(deps)
    finally:
        registry.close()
    served = {(r.resource.canonical, r.method.lower()) for r in app.router.routes() if r.method != "HEAD"}  # type: ignore[union-attr]
    described = {(path, method) for path, item in spec()["paths"].items() for method in item}
    assert served == described


async def test_cors_answers_allow_listed_origins_only(tmp_path: Path) -> None:
    deps, registry, _, relay = fake_deps(tmp_path, HubConfig(allowed_origins=("https://dash.example",)))
    _, secret = registry.add_token("viewer", "*", "screen")
    deps.apply_registry()
    try:
        async with TestClient(TestServer(create_app(deps))) as client:
            preflight = {"Origin": "https://dash.example", "Access-Control-Request-Method": "GET"}
            async with client.options("/api/devices", headers=preflight) as resp:
                assert resp.status == 204
                assert resp.headers["Access-Control-Allow-Origin"] == "https://dash.example"
                assert "Authorization" in resp.headers["Access-Control-Allow-Headers"]
            headers = {"Origin": "https://dash.example", "Authorization": f"Bearer {secret}"}
            async with client.get("/api/devices", headers=headers) as resp:
                assert resp.status == 200 and resp.headers["Access-Control-Allow-Origin"] == "https://dash.example"
            async with client.get("/api/devices", headers={"Authorization": f"Bearer {secret}"}) as resp:
                assert resp.status == 200 and "Access-Control-Allow-Origin" not in resp.headers
            async with client.get("/api/devices", headers={**headers, "Origin": "http://evil.test"}) as resp:
                assert resp.status == 403
    finally:
        relay.shutdown()
        registry.close()


async def test_a_failing_handler_is_answered_500_in_json_without_internals_and_counted(tmp_path: Path) -> None:
    failing = True

    def stats() -> dict[str, object]:
        if failing:
            raise ZeroDivisionError("secret internal detail: registry row 42")
        return {"received": 0}

    deps, registry, _, relay = fake_deps(tmp_path, HubConfig())
    deps = dataclasses.replace(deps, stats=stats)
    _, secret = registry.add_token("trainer", "*", "head")
    deps.apply_registry()
    headers = {"Authorization": f"Bearer {secret}"}
    try:
        async with TestClient(TestServer(create_app(deps))) as client:
            for _ in range(2):
                async with client.get("/api/stats", headers=headers) as resp:
                    body = await answer_of(resp)
                    assert resp.status == 500 and isinstance(body, dict) and set(body) == {"error"}, body
                    assert not any(x in body["error"] for x in ("ZeroDivision", "secret", "row 42"))
                    assert resp.headers.get("X-Content-Type-Options") == "nosniff"
            assert deps.boundaries.failures[(HTTP, "ZeroDivisionError")] == 2
            failing = False
            async with client.get("/api/stats", headers=headers) as resp:
                assert resp.status == 200  # the rest goes on
    finally:
        relay.shutdown()
        registry.close()
