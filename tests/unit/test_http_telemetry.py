"""HTTP telemetry without services: the broker's accounts file read as the broker reads it, and the route against
the hub's real ingest, durability and spool (a temp dir), with every answer the route promises."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from devices.topics import DeviceRef
from hub.access.broker_auth import AccountsUnavailable, BrokerAccounts, parse_accounts, verify
from hub.access.dynsec import password_record
from hub.config import DeviceConfig, HubConfig
from hub.ingest.durability import Durability
from hub.ingest.pipeline import Ingest
from hub.web.app import create_app
from hub.web.telemetry import HttpIntake, credentials_of
from tests.unit.test_web_routes import fake_deps

AQ = DeviceRef("demo", "ana", "aq1")
OTHER = DeviceRef("demo", "ben", "aq1")
PASSWORDS = {AQ.key: "pw-ana", OTHER.key: "pw-ben", "demo/ana": "pw-learner"}


def accounts_json(passwords: dict[str, str], disabled: frozenset[str] = frozenset()) -> str:
    clients = [
        {"username": user, "roles": []} | password_record(pw) | ({"disabled": True} if user in disabled else {})
        for user, pw in passwords.items()
    ]
    return json.dumps({"clients": clients, "roles": [], "groups": []})


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


# The broker's store ----------------------------------------------------------------------------------------


def test_accounts_are_checked_as_the_broker_checks_them() -> None:
    accounts = parse_accounts(accounts_json(PASSWORDS, disabled=frozenset({OTHER.key})))
    assert set(accounts) == set(PASSWORDS)
    assert verify(accounts[AQ.key], "pw-ana")
    assert not verify(accounts[AQ.key], "pw-ana ")
    assert not verify(accounts[AQ.key], "pw-ben")
    assert not verify(accounts[OTHER.key], "pw-ben")  # disabled: the broker refuses it too
    assert not verify(None, "pw-ana")


def test_accounts_without_a_usable_password_are_left_out() -> None:
    good = {"username": "a/b/c"} | password_record("x")
    text = json.dumps(
        {
            "clients": [
                good,
                {"username": "no/pass/word"},
                {"username": "bad/salt/x", **password_record("x"), "salt": "%%%"},
                {"username": "huge/iter/x", **password_record("x"), "iterations": 10**9},
                "not a client",
                {"username": 7},
            ]
        }
    )
    assert set(parse_accounts(text)) == {"a/b/c"}
    for bad in ("", "[]", '{"clients": 3}', "{"):
        with pytest.raises(ValueError):
            parse_accounts(bad)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("Bearer lh_x", None),
        ("Basic !!!", None),
        ("Basic " + base64.b64encode(b"no-colon").decode(), None),
        ("Basic " + base64.b64encode(b"\xff:x").decode(), None),
        ("Basic " + "QQ" * 4000, None),
        ("Basic " + base64.b64encode(b"demo/ana/aq1:p:w").decode(), ("demo/ana/aq1", "p:w")),
        ("basic  " + base64.b64encode("a:é".encode()).decode(), ("a", "é")),
    ],
)
def test_basic_credentials(header: str | None, expected: tuple[str, str] | None) -> None:
    assert credentials_of(header) == expected


async def test_the_file_is_read_again_when_the_broker_changes_it(tmp_path: Path) -> None:
    path = tmp_path / "dynamic-security.json"
    accounts = BrokerAccounts(path)
    with pytest.raises(AccountsUnavailable):
        await accounts.check(AQ.key, "pw-ana")
    path.write_text(accounts_json(PASSWORDS))
    assert await accounts.check(AQ.key, "pw-ana")
    assert await accounts.check(AQ.key, "pw-ana") and accounts.reloads == 1  # unchanged: not parsed again
    path.write_text(accounts_json(PASSWORDS | {AQ.key: "rotated"}))  # `device rotate`
    assert not await accounts.check(AQ.key, "pw-ana") and await accounts.check(AQ.key, "rotated")
    path.write_text('{"clients": [')  # torn while the broker writes it: the last good copy holds
    assert await accounts.check(AQ.key, "rotated")
    path.write_text(accounts_json({OTHER.key: "pw-ben"}))  # `device remove`
    assert not await accounts.check(AQ.key, "rotated")


# The route, on the hub's real intake -----------------------------------------------------------------------


class Broker:
    """What durability drives of the MQTT client, and what the hub publishes (the errors topics)."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    def ack(self, mid: int, qos: int) -> None: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...


@dataclass
class Post:
    client: TestClient  # type: ignore[type-arg]
    ingest: Ingest
    durability: Durability
    broker: Broker
    accounts: Path

    async def send(
        self, body: bytes | str, headers: dict[str, str] | None = None, ref: DeviceRef = AQ, field: str = ""
    ) -> tuple[int, dict[str, str], object]:
        path = f"/api/devices/{ref.key}/telemetry" + (f"/{field}" if field else "")
        headers = basic(ref.key, PASSWORDS[ref.key]) if headers is None else headers
        async with self.client.post(path, data=body, headers=headers) as resp:
            text = await resp.text()
            return resp.status, dict(resp.headers), json.loads(text) if text else None


Factory = Callable[..., Awaitable[Post]]


@pytest.fixture
async def labs(tmp_path: Path) -> AsyncIterator[Factory]:
    """Hubs' intakes behind the web app, each with its group-commit loop running; all closed after the test."""
    made: list[tuple[TestClient, Durability, asyncio.Task[None], Callable[[], None]]] = []  # type: ignore[type-arg]

    async def make(config: HubConfig | None = None) -> Post:
        config = config or HubConfig(telemetry_posts_per_second=1000.0)
        here = tmp_path / str(len(made))
        here.mkdir()
        accounts = here / "dynamic-security.json"
        accounts.write_text(accounts_json(PASSWORDS))
        broker = Broker()
        durability = Durability(here / "spool", 1 << 20, 1000, broker)
        ingest = Ingest(
            [DeviceConfig(AQ, "air_quality", True, None), DeviceConfig(OTHER, "air_quality", True, None)],
            enqueue=durability.append,
            publish=lambda topic, payload: broker.published.append((topic, payload)),
            language=lambda cohort: "en",
            open_mode=config.open_mode,
            max_payload_bytes=config.max_payload_bytes,
            errors_per_second=5.0,
        )
        durability.spool.open()
        deps, registry, _, relay = fake_deps(here, config)
        intake = HttpIntake(ingest, durability, BrokerAccounts(accounts))
        client = TestClient(TestServer(create_app(dataclasses.replace(deps, telemetry=intake))))
        await client.start_server()

        def close() -> None:
            durability.spool.close()
            relay.shutdown()
            registry.close()

        made.append((client, durability, asyncio.create_task(durability.run()), close))
        return Post(client, ingest, durability, broker, accounts)

    yield make
    for client, _, task, close in made:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await client.close()
        close()


@pytest.fixture
async def post(labs: Factory) -> Post:
    return await labs()


async def test_a_reading_is_answered_204_once_on_disk(post: Post) -> None:
    status, _, _ = await post.send('{"pm2_5": 12}')
    assert status == 204
    entry = post.ingest.devices[AQ].inspector[-1]
    assert entry.verdict == "spooled" and entry.topic == AQ.topic("telemetry")  # the MQTT topic's path
    assert post.durability.spool.unstored_bytes > 0  # in the spool, for the writer
    assert post.ingest.totals.received == 1 and not post.broker.published


async def test_a_bare_value_and_line_protocol_take_the_mqtt_decoders(post: Post) -> None:
    assert (await post.send("12.5", field="pm2_5"))[0] == 204
    assert post.ingest.devices[AQ].inspector[-1].topic == AQ.topic("telemetry") + "/pm2_5"
    assert (await post.send("air pm2_5=3,temperature=21.5\nair pm2_5=4"))[0] == 204
    assert post.ingest.devices[AQ].inspector[-1].pending == 2
    status, _, answer = await post.send("12.5")  # a bare value needs its field in the path, as on MQTT
    assert status == 422 and isinstance(answer, dict) and answer["code"] == "bare_value_needs_field"
    status, _, answer = await post.send("1", field="pm 2")  # a topic MQTT allows: refused the same way
    assert status == 422 and isinstance(answer, dict) and answer["code"] == "unknown_field_suggest"
    assert (await post.send("1", field="a%2Fb"))[0] == 404  # no topic of one level: no field name


async def test_a_refused_reading_gets_the_errors_topics_message(post: Post) -> None:
    status, _, answer = await post.send('{"pm25": 12}')
    assert status == 422 and isinstance(answer, dict)
    assert answer["code"] == "unknown_field_suggest" and answer["field"] == "pm25" and "pm2_5" in answer["hint"]
    assert answer["device"] == AQ.key and answer["problems"][0]["code"] == "unknown_field_suggest"
    [(topic, payload)] = post.broker.published  # the same message, on the errors topic too
    published = json.loads(payload)
    assert topic == AQ.topic("errors") and {k: v for k, v in published.items() if k != "time_ns"} == answer
    assert post.ingest.devices[AQ].rejected["unknown_field_suggest"] == 1


async def test_only_this_devices_own_account_may_post(post: Post) -> None:
    status, headers, answer = await post.send('{"pm2_5": 1}', headers={})
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic ") and AQ.key in str(answer)
    assert (await post.send('{"pm2_5": 1}', headers=basic(AQ.key, "wrong")))[0] == 401
    assert (await post.send('{"pm2_5": 1}', headers=basic("nobody", "pw-ana")))[0] == 401
    assert (await post.send('{"pm2_5": 1}', headers={"Authorization": "Bearer lh_token"}))[0] == 401
    assert (await post.send('{"pm2_5": 1}', headers=basic(OTHER.key, "pw-ben")))[0] == 403
    assert (await post.send('{"pm2_5": 1}', headers=basic("demo/ana", "pw-learner")))[0] == 403
    assert post.ingest.totals.received == 0  # nothing refused at the door reached the intake
    post.accounts.write_text(accounts_json(PASSWORDS, disabled=frozenset({AQ.key})))  # `device disable`
    assert (await post.send('{"pm2_5": 1}'))[0] == 401


async def test_guessing_passwords_is_slowed_down(post: Post) -> None:
    statuses = [(await post.send("{}", headers=basic(AQ.key, f"guess{i}")))[0] for i in range(12)]
    assert statuses[:10] == [401] * 10 and statuses[10:] == [429, 429]
    assert (await post.send('{"pm2_5": 1}'))[0] == 204  # the board itself is not locked out


async def test_bounds_answer_413_429_and_503(labs: Factory) -> None:
    post = await labs(HubConfig(telemetry_posts_per_second=1.0, max_payload_bytes=64))
    status, _, _ = await post.send(b'{"pm2_5": 1, "x": "' + b"a" * 100 + b'"}')
    assert status == 413 and post.ingest.totals.received == 0

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the body is counted as it comes
        for _ in range(10):
            yield b"1" * 10

    headers = basic(AQ.key, PASSWORDS[AQ.key])
    async with post.client.post(f"/api/devices/{AQ.key}/telemetry/pm2_5", data=chunks(), headers=headers) as resp:
        assert resp.status == 413 and post.ingest.totals.received == 0
    post = await labs(HubConfig(telemetry_posts_per_second=1.0, max_payload_bytes=64))
    assert (await post.send('{"pm2_5": 1}'))[0] == 204
    assert (await post.send('{"pm2_5": 1}'))[0] == 204  # the burst is 2
    status, headers, _ = await post.send('{"pm2_5": 1}')
    assert status == 429 and int(headers["Retry-After"]) >= 1
    paused = await labs(HubConfig())
    paused.durability.commit_paused = True  # backpressure: too much waits for the disk
    status, headers, _ = await paused.send('{"pm2_5": 1}')
    assert status == 503 and headers["Retry-After"] == "5" and paused.ingest.totals.received == 0


async def test_open_mode_takes_anonymous_posts_as_the_broker_takes_anonymous_publishes(labs: Factory) -> None:
    post = await labs(HubConfig(open_mode=True))
    assert (await post.send('{"pm2_5": 1}', headers={}))[0] == 204
    assert (await post.send('{"pm2_5": 1}', headers=basic(AQ.key, "wrong")))[0] == 401  # credentials: checked


async def test_unreadable_broker_accounts_are_503_not_401(post: Post) -> None:
    os.unlink(post.accounts)  # a broker on another machine: the hub cannot tell
    status, headers, _ = await post.send('{"pm2_5": 1}')
    assert status == 503 and "Retry-After" in headers and post.ingest.totals.received == 0
