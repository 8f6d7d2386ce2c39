"""The lab doctor's simulated faults without a broker: names, behaviours, logins, topics, clocks and the cut payload.

Bounds come from the doctor's contract: a storm is >= 6 connects within 60 s less than 1 s apart; a collision is two
takeovers within 60 s; every fault must show within 10 s; the broker drops a silent client after 1.5 x keepalive.
"""

from __future__ import annotations

import json
import time

import pytest

from devices.decode import decode_payload
from devices.kinds import KINDS
from devices.problems import PayloadRejected
from devices.topics import DeviceRef
from devices.validate import timestamp_to_ns, validate
from firmware_sim.air import FAULTS, PAYLOAD_FAULTS, AirModel, encode
from firmware_sim.faults import (
    CLOCK_FAULTS,
    DOCTOR_FAULTS,
    PUBSUBCLIENT_BUFFER,
    Behaviour,
    behaviour,
    clock_stamp,
    command_request,
    cut_256,
    finding_for,
    foreign_ref,
    login,
)
from hub.cli.main import parser
from hub.cli.sim import _fault_help

REF = DeviceRef("c1", "ana", "aq1")
YEAR_2000_NS = 946_684_800 * 10**9
CODES = {  # the contract's finding codes but unknown_account (no firmware's fault: see firmware_sim/faults.py)
    "client_id_collision",
    "reconnect_storm",
    "wrong_password",
    "foreign_topic",
    "clock_not_set",
    "too_fast",
    "retained_telemetry",
    "retained_command",
    "no_last_will",
    "stuck_sensor",
    "keepalive_timeout",
    "payload_cut_256",
}


def test_every_finding_has_a_fault_named_after_it_and_the_two_clocks_share_one() -> None:
    assert {finding_for(f) for f in DOCTOR_FAULTS} == CODES
    assert [f for f in DOCTOR_FAULTS if finding_for(f) != f] == list(CLOCK_FAULTS)
    assert not set(DOCTOR_FAULTS) & set(PAYLOAD_FAULTS)
    assert FAULTS == (*PAYLOAD_FAULTS, *DOCTOR_FAULTS)
    with pytest.raises(ValueError, match="not a doctor fault"):
        finding_for("flood")


def test_the_cli_accepts_every_fault_and_its_help_explains_each() -> None:
    for fault in FAULTS:
        assert parser().parse_args(["sim", "air", "--fault", fault]).fault == fault
    help_text = _fault_help()
    for fault in DOCTOR_FAULTS:
        assert f"\n  {fault} " in help_text, fault
    with pytest.raises(SystemExit):
        parser().parse_args(["sim", "air", "--fault", "no_such_fault"])


@pytest.mark.parametrize("fault", [None, *PAYLOAD_FAULTS, *CLOCK_FAULTS, "payload_cut_256"])
def test_payload_faults_and_no_fault_keep_a_healthy_connection(fault: str | None) -> None:
    assert behaviour(fault) == Behaviour()
    assert behaviour(None).will and behaviour(None).keepalive >= 15


def test_a_collision_reconnects_slower_than_a_storm_but_often_enough_to_show_within_10_s() -> None:
    how = behaviour("client_id_collision")
    assert how.twin and how.drop_after_s is None
    delays = [how.reconnect.delay(attempt) for attempt in range(5)]
    assert all(1.0 <= d <= 4.0 for d in delays)  # not a storm (< 1 s apart), two takeovers within 10 s


def test_a_storm_connects_six_times_in_well_under_10_s_less_than_1_s_apart() -> None:
    how = behaviour("reconnect_storm")
    assert how.drop_after_s is not None and how.will
    cycle = how.drop_after_s + max(how.reconnect.delay(a) for a in range(10))
    assert cycle < 1.0 and 6 * cycle < 5.0


def test_a_blocked_loop_outlasts_the_brokers_keepalive_and_is_dropped_within_10_s() -> None:
    how = behaviour("keepalive_timeout")
    assert how.block_after_s is not None
    assert how.block_for_s > 1.5 * how.keepalive + 1  # the broker checks about once a second
    assert how.block_after_s + 1.5 * how.keepalive + 1 < 10
    assert how.will  # the broker sends it: the timeout is the only symptom


def test_a_board_reflashed_with_a_typo_worked_first_then_retries_like_pubsubclients_example() -> None:
    how = behaviour("wrong_password")
    assert how.typo_after_s is not None and how.typo_after_s < 5  # the broker saw its address log in
    assert {how.reconnect.delay(a) for a in range(5)} == {5.0}  # delay(5000) between tries: not a storm


def test_no_last_will_drops_the_connection_within_10_s() -> None:
    how = behaviour("no_last_will")
    assert not how.will and how.drop_after_s is not None and how.drop_after_s < 5


@pytest.mark.parametrize(
    ("fault", "password", "expected"),
    [
        (None, "s3cret", ("c1/ana/aq1", "s3cret")),
        (None, None, (None, None)),  # classroom open mode: anonymous
        ("wrong_password", "s3cret", ("c1/ana/aq1", "s3cretx")),
        ("wrong_password", None, ("c1/ana/aq1", "x")),
        ("too_fast", "s3cret", ("c1/ana/aq1", "s3cret")),
    ],
)
def test_login(fault: str | None, password: str | None, expected: tuple[str | None, str | None]) -> None:
    assert login(REF, password, fault) == expected


@pytest.mark.parametrize(("device", "foreign"), [("aq1", "aq2"), ("aq9", "aq10"), ("sensor", "sensor2"), ("b07", "b8")])
def test_foreign_topic_is_the_neighbouring_device(device: str, foreign: str) -> None:
    assert foreign_ref(DeviceRef("c1", "ana", device)) == DeviceRef("c1", "ana", foreign)


@pytest.mark.parametrize("fault", CLOCK_FAULTS)
def test_unset_clocks_stamp_before_2000_and_the_hub_names_them_since_boot(fault: str) -> None:
    for uptime in (0.0, 3.5, 600.0, 86400.0):
        stamp = clock_stamp(fault, uptime)
        assert stamp is not None
        assert timestamp_to_ns(stamp)[0] < YEAR_2000_NS
    payload = encode({"pm2_5": 3.0, "ts": clock_stamp(fault, 42.0) or 0}, fault, 0)
    (decoded,) = decode_payload(payload, None, 65536)
    with pytest.raises(PayloadRejected) as err:
        validate(KINDS["air_quality"], decoded, time.time_ns(), {})
    assert [p.code for p in err.value.problems] == ["timestamp_since_boot"]
    assert clock_stamp(fault, 42.0) == {"clock_1970": 42, "millis_clock": 42000}[fault]
    assert clock_stamp(None, 42.0) is None


def test_a_cut_payload_is_exactly_the_buffer_and_no_longer_json() -> None:
    values = AirModel(1, 0.0).sample(0.0)
    payload = cut_256(values)
    assert len(payload) == PUBSUBCLIENT_BUFFER == 256
    assert payload.startswith(json.dumps(values)[:-1].encode())  # the real reading, then the grown fields
    with pytest.raises(PayloadRejected) as err:
        decode_payload(payload, None, 65536)
    assert [p.code for p in err.value.problems] == ["invalid_json"]


def test_doctor_faults_publish_well_formed_readings_and_the_retained_request_is_a_command() -> None:
    values = AirModel(2, 0.0).sample(0.0)
    for fault in DOCTOR_FAULTS:
        assert json.loads(encode(values, fault, 3)) == values
    assert json.loads(command_request()) == {"type": "home"}
    with pytest.raises(ValueError, match="unknown fault mode"):
        encode(values, "no_such_fault", 0)
