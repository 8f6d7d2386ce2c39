"""The lab doctor against a real closed lab (mosquitto with device accounts, influxd, the hub): each symptom a
beginner's board shows becomes its finding within 10 s, in the API, on the device's errors topic and in InfluxDB;
a healthy board's checklist turns all-ok with no finding.

Each board connects from its own loopback address (127.0.0.N), as boards in a classroom each have their own IP:
the broker names no user in a refused login, only the address, and the doctor attributes it by address.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from devices.topics import DeviceRef
from hub.config import HubConfig, InfluxConfig, LabConfig, MqttConfig
from hub.credentials import write_private
from hub.doctor.service import events_file
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import Service, free_port
from hub.ops.state import TRAINER_TOKEN
from hub.runtime import Hub
from tests.conftest import make_state_dir, unique
from tests.integration.conftest import HubFactory, Services
from tests.support import api_token, http_json, influx_query, wait_until

WITHIN_S = 10.0  # the bound: each symptom is diagnosed within 10 s
_addresses = iter(range(20, 250))


@dataclass
class Broker:
    state: Path
    port: int
    service: Service


@pytest.fixture(scope="module")
def broker() -> Iterator[Broker]:
    state = make_state_dir("labhub-doctor-")
    port = free_port()
    service = start_mosquitto(state, port=port, open_mode=False)  # a closed lab: client id = username
    try:
        yield Broker(state, port, service)
    finally:
        service.stop()
        shutil.rmtree(state, ignore_errors=True)


@dataclass
class Lab:
    hub: Hub
    broker: Broker
    token: str
    database: str
    influx_port: int

    async def device(self) -> tuple[DeviceRef, str]:
        """A new air-quality device with its broker account: (ref, password)."""
        ref = DeviceRef("doc", unique("l"), "aq1")
        credential = await self.hub.accounts.add_device(ref.key, "air_quality")
        self.hub.apply_registry()
        return ref, credential.password

    async def diagnosis(self, ref: DeviceRef) -> dict[str, Any]:
        status, body = await http_json(
            f"http://127.0.0.1:{self.hub.http_port}/api/devices/{ref.key}/diagnosis", self.token
        )
        assert status == 200, body
        result: dict[str, Any] = body
        return result

    async def finding(self, ref: DeviceRef, code: str, since: float) -> dict[str, Any]:
        """The open finding `code` as the API shows it, waited for at most WITHIN_S after `since`."""

        async def found() -> dict[str, Any] | None:
            return next((f for f in (await self.diagnosis(ref))["findings"] if f["code"] == code), None)

        finding: dict[str, Any] = await wait_until(found, WITHIN_S - (time.monotonic() - since), f"{code} of {ref.key}")
        assert finding["resolved"] is False and finding["evidence"]["count"] >= 1
        assert finding["fix"]["arduino"] and finding["fix"]["micropython"]
        return finding


@pytest.fixture
async def lab(broker: Broker, services: Services, start_hub: HubFactory) -> AsyncIterator[Lab]:
    name = unique()
    config = LabConfig(
        state_dir=broker.state,
        mqtt=MqttConfig(port=broker.port, launch=False, client_id=f"hub-{name}"),
        influx=InfluxConfig(url=services.influx_url, database=name, launch=False),
        hub=HubConfig(
            http_port=0,
            open_mode=False,
            registry=str(broker.state / "registries" / f"{name}.sqlite3"),
            api_requests_per_second=1000.0,  # the tests poll the diagnosis
        ),
    )
    hub = await start_hub(config=config)
    yield Lab(hub, broker, api_token(hub), name, services.influx_port)


class Board:
    """A beginner's board: paho in its own thread, connecting from its own loopback address."""

    def __init__(
        self,
        port: int,
        ref: DeviceRef,
        password: str,
        address: str,
        client_id: str | None = None,
        will: bool = False,
        reconnect_s: int = 60,
    ) -> None:
        self.connected = threading.Event()
        self.refused = threading.Event()
        self.subscribed = threading.Event()
        self.got: list[dict[str, Any]] = []  # what came on its errors topic
        self.client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id or ref.key)
        self.client.username_pw_set(ref.key, password)
        if will:
            self.client.will_set(ref.topic("status"), b"offline", qos=1, retain=True)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *args: self.subscribed.set()
        self.client.on_message = lambda client, userdata, msg: self.got.append(json.loads(msg.payload))
        self.client.reconnect_delay_set(reconnect_s, reconnect_s)
        self.client.connect("127.0.0.1", port, bind_address=address)
        self.client.loop_start()

    def _on_connect(self, client: Any, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        (self.refused if reason.is_failure else self.connected).set()

    async def wait(self, event: threading.Event, what: str) -> None:
        assert await asyncio.to_thread(event.wait, 5), what

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def address() -> str:
    return f"127.0.0.{next(_addresses)}"


async def test_wrong_password_from_the_board_s_address(lab: Lab) -> None:
    ref, password = await lab.device()
    where = address()
    board = Board(lab.broker.port, ref, password, where)
    await board.wait(board.connected, "the board's first login")
    board.close()
    since = time.monotonic()
    typo = Board(lab.broker.port, ref, password + "x", where)
    try:
        await typo.wait(typo.refused, "the refusal")
        finding = await lab.finding(ref, "wrong_password", since)
    finally:
        typo.close()
    assert finding["severity"] == "error" and where in finding["message"]
    checklist = {i["item"]: i for i in (await lab.diagnosis(ref))["checklist"]}
    assert checklist["account_accepted"]["ok"] is False and where in checklist["account_accepted"]["evidence"]
    assert checklist["broker_reached"]["ok"] is True
    # The evidence is in InfluxDB, through the spool, as grading will read it.
    query = f"SELECT count(\"count\") FROM diagnoses WHERE device = '{ref.device}' AND learner = '{ref.learner}'"
    await wait_until(lambda: influx_query(lab.influx_port, lab.database, query), 5, "the diagnoses point")


async def test_unknown_account_when_the_board_s_account_is_gone(lab: Lab) -> None:
    ref, password = await lab.device()
    where = address()
    board = Board(lab.broker.port, ref, password, where)
    await board.wait(board.connected, "the board's first login")
    board.close()
    await lab.hub.accounts.remove_device(ref.key)
    lab.hub.apply_registry()
    assert ref not in lab.hub.ingest.devices
    since = time.monotonic()
    gone = Board(lab.broker.port, ref, password, where)
    try:
        await gone.wait(gone.refused, "the refusal")

        def found() -> bool:  # the device is gone from the API (404): the doctor still knows
            report = lab.hub.doctor.report(ref)
            return any(f["code"] == "unknown_account" for f in report["findings"])  # type: ignore[attr-defined]

        await wait_until(found, WITHIN_S - (time.monotonic() - since), "unknown_account")
    finally:
        gone.close()


async def test_two_boards_with_one_account_knock_each_other_off(lab: Lab) -> None:
    ref, password = await lab.device()
    since = time.monotonic()
    where = address()
    boards = [Board(lab.broker.port, ref, password, where, client_id=f"esp32-{n}", reconnect_s=1) for n in (1, 2)]
    try:
        finding = await lab.finding(ref, "client_id_collision", since)
    finally:
        for board in boards:
            board.close()
    assert finding["evidence"]["count"] >= 1
    assert any("already connected" in sample for sample in finding["evidence"]["samples"])


async def test_foreign_topic_is_named_and_told_on_the_errors_topic(lab: Lab) -> None:
    ref, password = await lab.device()
    other = DeviceRef(ref.cohort, ref.learner, "aq2")
    board = Board(lab.broker.port, ref, password, address())  # one account, one connection: it listens too
    await board.wait(board.connected, "the board's login")
    try:
        board.client.subscribe(ref.topic("errors"), qos=1)
        await board.wait(board.subscribed, "its errors subscription")
        since = time.monotonic()
        board.client.publish(other.topic("telemetry"), b'{"pm2_5": 3}', qos=1)
        finding = await lab.finding(ref, "foreign_topic", since)
        told = await wait_until(lambda: board.got and board.got[0], WITHIN_S, "the finding on its errors topic")
    finally:
        board.close()
    assert (
        finding["message"]
        == f"your account is {ref.key}, you published to {other.topic('telemetry')}: the broker refused it"
    )
    assert told["code"] == "foreign_topic" and told["device"] == ref.key
    assert told["diagnosis"]["code"] == "foreign_topic" and told["diagnosis"]["message"] == finding["message"]
    # `labhub doctor` asks the running hub with the lab's trainer token, and says so in its exit code
    write_private(lab.broker.state / "secrets" / TRAINER_TOKEN, lab.token + "\n")
    config = lab.broker.state / f"{unique('lab')}.toml"
    config.write_text(
        f'state_dir = "{lab.broker.state}"\n[mqtt]\nport = {lab.broker.port}\nlaunch = false\n'
        f"[hub]\nhttp_port = {lab.hub.http_port}\n"
    )
    argv = [sys.executable, "-m", "hub.cli", "doctor", ref.key, "--config", str(config)]
    done = await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30)
    assert done.returncode == 1, done.stderr  # an open finding
    assert f"ERROR   foreign_topic: your account is {ref.key}, you published to" in done.stdout
    assert "[ok] broker_reached" in done.stdout


async def test_retained_command(lab: Lab) -> None:
    ref, password = await lab.device()
    board = Board(lab.broker.port, ref, password, address())
    await board.wait(board.connected, "the board's login")
    since = time.monotonic()
    try:
        board.client.publish(ref.topic("commands"), b'{"type": "home"}', qos=1, retain=True)
        finding = await lab.finding(ref, "retained_command", since)
    finally:
        board.close()
    assert ref.topic("commands") in finding["message"]


async def test_a_healthy_board_s_checklist_turns_all_ok_without_findings(lab: Lab) -> None:
    ref, password = await lab.device()
    since = time.monotonic()
    board = Board(lab.broker.port, ref, password, address(), will=True)
    await board.wait(board.connected, "the board's login")
    try:
        board.client.subscribe(ref.topic("errors"), qos=1)
        board.client.publish(ref.topic("status"), b"online", qos=1, retain=True)
        for n in range(3):
            board.client.publish(ref.topic("telemetry"), json.dumps({"pm2_5": 5.0 + n, "co2": 600.0 + n}), qos=1)
            await asyncio.sleep(1.0)  # the board's period (the cadence under test), not a wait for the hub

        async def all_ok() -> dict[str, Any] | None:
            report = await lab.diagnosis(ref)
            return report if all(item["ok"] is True for item in report["checklist"]) else None

        report = await wait_until(all_ok, WITHIN_S - (time.monotonic() - since) + 3, "an all-ok checklist")
    finally:
        board.close()
    assert [item["item"] for item in report["checklist"]] == [
        "broker_reached",
        "account_accepted",
        "last_will_set",
        "status_online",
        "errors_subscribed",
        "first_valid_reading",
        "clock_plausible",
        "cadence_plausible",
    ]
    assert all(item["at_ns"] for item in report["checklist"])
    assert report["findings"] == [] and report["open"] == 0
    _, listing = await http_json(f"http://127.0.0.1:{lab.hub.http_port}/api/devices", lab.token)
    row = next(d for d in listing["devices"] if d["id"] == ref.key)
    assert (row["findings_open"], row["worst"]) == (0, None)


def test_the_broker_s_events_file_is_private(broker: Broker) -> None:
    path = events_file(broker.state)
    assert path.exists() and path.stat().st_mode & 0o077 == 0
    assert "already connected" not in broker.service.log_path.read_text(errors="replace")  # not in the lab's log
