"""The lab doctor's engine: events in, findings and checklist out (tables of cases; time is given)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from devices import diagnoses as dx
from devices.topics import DeviceRef
from hub.doctor import events as ev
from hub.doctor.engine import Doctor
from hub.doctor.events import BrokerEvent
from hub.ingest.traffic import READING, REJECTED, STATUS, Traffic

REF = DeviceRef("demo", "ana", "aq1")
S = 10**9
NOW = 1_800_000_000 * S
TOPIC = REF.topic("telemetry")


def connected(address: str = "10.0.0.5", client: str = "demo/ana/aq1") -> BrokerEvent:
    return BrokerEvent(ev.CONNECTED, client, "demo/ana/aq1", address)


def reading(ts: int | None = None, kind: str = "air_quality", topic: str = TOPIC, **fields: float) -> Traffic:
    return Traffic(REF, READING, topic, kind, 20, ts, fields or {"pm2_5": 1.0})


def rejected(code: str, size: int = 20, **params: object) -> Traffic:
    return Traffic(REF, REJECTED, TOPIC, "air_quality", size, codes=(code,), params=params)


Feed = Sequence[tuple[float, BrokerEvent | Traffic]]


def run(feed: Feed, known: bool = True, until: float | None = None) -> tuple[Doctor, list[str]]:
    doctor = Doctor(known=lambda ref: known)
    opened: list[str] = []
    for at, item in feed:
        now = NOW + int(at * S)
        changes = doctor.broker(item, now) if isinstance(item, BrokerEvent) else doctor.traffic(item, now)
        changes += doctor.tick(now)
        opened += [c.finding.code for c in changes if c.opened]
    if until is not None:
        doctor.tick(NOW + int(until * S))
    return doctor, opened


def open_codes(doctor: Doctor) -> set[str]:
    return {f.code for f in doctor.device(REF).open_findings()}


CASES: list[tuple[str, Feed, list[str]]] = [
    ("healthy", [(0, connected())] + [(i, reading(pm2_5=float(i))) for i in range(1, 30)], []),
    ("one takeover is a board reconnecting", [(0, connected()), (1, BrokerEvent(ev.COLLISION, "demo/ana/aq1"))], []),
    (
        "two takeovers in a minute",
        [
            (0, connected()),
            (1, BrokerEvent(ev.COLLISION, "demo/ana/aq1")),
            (30, BrokerEvent(ev.COLLISION, "demo/ana/aq1")),
        ],
        [dx.CLIENT_ID_COLLISION],
    ),
    ("storm", [(i * 0.3, connected()) for i in range(6)], [dx.RECONNECT_STORM]),
    ("backoff is no storm", [(2**i, connected()) for i in range(8)], []),
    (
        "refused from a known address",
        [(0, connected()), (5, BrokerEvent(ev.REFUSED, address="10.0.0.5"))],
        [dx.WRONG_PASSWORD],
    ),
    ("refused from an unknown address", [(5, BrokerEvent(ev.REFUSED, address="10.9.9.9"))], []),
    (
        "denied publish",
        [(0, connected()), (1, BrokerEvent(ev.DENIED_PUBLISH, "demo/ana/aq1", topic="lab/demo/ana/aq2/telemetry"))],
        [dx.FOREIGN_TOPIC],
    ),
    (
        "denied subscribe",
        [(0, connected()), (1, BrokerEvent(ev.DENIED_SUBSCRIBE, "demo/ana/aq1", topic="lab/#"))],
        [dx.FOREIGN_TOPIC],
    ),
    (
        "retained command (denied)",
        [
            (0, connected()),
            (1, BrokerEvent(ev.DENIED_PUBLISH, "demo/ana/aq1", topic=REF.topic("commands"), retain=True)),
        ],
        [dx.RETAINED_COMMAND],
    ),
    (
        "retained telemetry",
        [(0, connected()), (1, BrokerEvent(ev.PUBLISHED, "demo/ana/aq1", topic=TOPIC, retain=True, size=12))],
        [dx.RETAINED_TELEMETRY],
    ),
    (
        "clearing a retained copy is no misuse",
        [(1, BrokerEvent(ev.PUBLISHED, "demo/ana/aq1", topic=TOPIC, retain=True))],
        [],
    ),
    (
        "keepalive",
        [(0, connected()), (9, BrokerEvent(ev.TIMEOUT, "demo/ana/aq1")), (15, reading())],
        [dx.KEEPALIVE_TIMEOUT, dx.NO_LAST_WILL],
    ),
    (
        "unclean end, no will",
        [(0, connected()), (1, BrokerEvent(ev.UNCLEAN_END, "demo/ana/aq1")), (5, reading())],
        [dx.NO_LAST_WILL],
    ),
    (
        "unclean end, the will came",
        [
            (0, connected()),
            (1, BrokerEvent(ev.UNCLEAN_END, "demo/ana/aq1")),
            (1.1, Traffic(REF, STATUS, REF.topic("status"), online=False)),
            (5, reading()),
        ],
        [],
    ),
    ("clean end", [(0, connected()), (1, BrokerEvent(ev.CLEAN_END, "demo/ana/aq1")), (5, reading())], []),
    (
        "1970 clock",
        [(1, rejected("timestamp_out_of_range", value=5, as_date="1970-01-01T00:00:05Z"))],
        [dx.CLOCK_NOT_SET],
    ),
    (
        "millis()",
        [(1, rejected("timestamp_since_boot", value=123456, as_date="1970-01-01T00:02:03Z"))],
        [dx.CLOCK_NOT_SET],
    ),
    (
        "a clock in the future is not unset",
        [(1, rejected("timestamp_out_of_range", value=1, as_date="2090-01-01"))],
        [],
    ),
    ("too fast", [(i * 0.1, reading(pm2_5=float(i))) for i in range(12)], [dx.TOO_FAST]),
    (
        "one field per topic is not too fast",
        [(i + j * 0.01, reading(topic=f"{TOPIC}/f{j}", pm2_5=float(i))) for i in range(12) for j in range(5)],
        [],
    ),
    ("arms have no sensor period", [(i * 0.1, reading(kind="arm", j1=1.0)) for i in range(30)], []),
    ("stuck", [(i * 15, reading(pm2_5=3.0, co2=float(i))) for i in range(10)], [dx.STUCK_SENSOR]),
    ("stuck but not long enough", [(i * 1, reading(pm2_5=3.0)) for i in range(20)], []),
    ("cut at 256", [(1, rejected("bad_json", size=256))], [dx.PAYLOAD_CUT_256]),
    ("cut with the topic's overhead", [(1, rejected("bad_json", size=256 - 7 - len(TOPIC)))], [dx.PAYLOAD_CUT_256]),
    ("another size", [(1, rejected("bad_json", size=180))], []),
]


@pytest.mark.parametrize(("name", "feed", "expected"), CASES, ids=[c[0] for c in CASES])
def test_findings(name: str, feed: Feed, expected: list[str]) -> None:
    doctor, opened = run(feed)
    assert opened == expected
    assert open_codes(doctor) == set(expected)


def test_unknown_account_when_the_address_s_account_is_gone() -> None:
    _, opened = run([(0, connected()), (5, BrokerEvent(ev.REFUSED, address="10.0.0.5"))], known=False)
    assert opened == [dx.UNKNOWN_ACCOUNT]


def test_resolved_after_quiet_period_and_reopened() -> None:
    feed: Feed = [(i * 0.3, connected()) for i in range(6)]
    doctor, _ = run(feed, until=30)
    assert open_codes(doctor) == {dx.RECONNECT_STORM}
    doctor.tick(NOW + 62 * S)
    found = doctor.device(REF).findings[dx.RECONNECT_STORM]
    assert not found.open and found.resolved_ns == NOW + 62 * S
    changes = []
    for i in range(6):
        changes += doctor.broker(connected(), NOW + 100 * S + i * S // 10)
    assert [c.finding.code for c in changes if c.opened] == [dx.RECONNECT_STORM]
    assert found.open and found.count == 2 and found.first_ns == NOW + 15 * S // 10


def test_stuck_resolves_when_the_value_changes() -> None:
    doctor, _ = run([(i * 15, reading(pm2_5=3.0)) for i in range(10)] + [(151, reading(pm2_5=4.0))])
    assert open_codes(doctor) == set()
    assert doctor.device(REF).findings[dx.STUCK_SENSOR].resolved_ns == NOW + 151 * S


def test_accepted_login_resolves_a_wrong_password() -> None:
    doctor, _ = run([(0, connected()), (5, BrokerEvent(ev.REFUSED, address="10.0.0.5")), (6, connected())])
    assert open_codes(doctor) == set()


def test_checklist_of_a_healthy_board() -> None:
    feed: list[tuple[float, BrokerEvent | Traffic]] = [
        (0, connected()),
        (0, BrokerEvent(ev.WILL, "demo/ana/aq1", topic=REF.topic("status"), will=True)),
        (0.1, BrokerEvent(ev.SUBSCRIBED, "demo/ana/aq1", topic=REF.topic("errors"))),
        (0.2, Traffic(REF, STATUS, REF.topic("status"), online=True)),
    ]
    feed += [(1 + i, reading(NOW + (1 + i) * S, pm2_5=float(i))) for i in range(3)]
    doctor, opened = run(feed)
    report = doctor.report(REF, "fr")
    assert opened == [] and report["open"] == 0 and report["device"] == REF.key
    items = report["checklist"]
    assert isinstance(items, list)
    assert [i["item"] for i in items] == list(dx.CHECKLIST)
    assert all(i["ok"] is True for i in items), items
    assert items[0]["at_ns"] == NOW


def test_checklist_before_anything_and_after_a_refusal() -> None:
    doctor = Doctor()
    items = doctor.report(REF)["checklist"]
    assert isinstance(items, list) and all(i["ok"] is None and i["at_ns"] is None for i in items)
    doctor, _ = run([(0, connected()), (5, BrokerEvent(ev.REFUSED, address="10.0.0.5", line="Sending CONNACK"))])
    items = doctor.report(REF)["checklist"]
    assert isinstance(items, list)
    assert items[1]["ok"] is False and "10.0.0.5" in items[1]["evidence"]


def test_finding_json_in_french_with_fixes() -> None:
    doctor, _ = run(
        [
            (0, connected()),
            (
                1,
                BrokerEvent(
                    ev.DENIED_PUBLISH, "demo/ana/aq1", topic="lab/demo/ana/aq2/telemetry", line="Denied PUBLISH …"
                ),
            ),
        ]
    )
    finding = doctor.report(REF, "fr")["findings"][0]  # type: ignore[index]
    assert finding == {
        "code": "foreign_topic",
        "severity": "error",
        "message": "votre compte est demo/ana/aq1 ; vous avez publié sur lab/demo/ana/aq2/telemetry : le broker l'a refusé",
        "hint": finding["hint"],
        "fix": dx.fix_for("foreign_topic"),
        "evidence": {"count": 1, "samples": ["Denied PUBLISH …"]},
        "first_seen_ns": NOW + S,
        "last_seen_ns": NOW + S,
        "resolved": False,
        "resolved_ns": None,
    }
    assert doctor.summary(REF) == (1, "error")


def test_catalogue_is_complete() -> None:
    for code in dx.CODES:
        assert set(dx.TEXTS[code]) == {"en", "fr"}
        assert all(dx.fix_for(code).values()), code
        message, hint = dx.render_finding(code, {}, "fr")
        assert message and hint


def test_open_mode_learns_a_client_s_device_from_its_first_publish_or_its_will() -> None:
    doctor = Doctor()
    doctor.broker(BrokerEvent(ev.CONNECTED, "esp32-a1b2", "", "10.0.0.9"), NOW)
    assert doctor.devices == {}
    doctor.broker(BrokerEvent(ev.PUBLISHED, "esp32-a1b2", topic=TOPIC, size=20), NOW + S)
    assert doctor.clients["esp32-a1b2"] == REF and doctor.addresses == {}
    changes = doctor.broker(BrokerEvent(ev.COLLISION, "esp32-a1b2"), NOW + 2 * S)
    changes += doctor.broker(BrokerEvent(ev.COLLISION, "esp32-a1b2"), NOW + 3 * S)
    assert [c.finding.code for c in changes] == [dx.CLIENT_ID_COLLISION]
    other = DeviceRef("demo", "ben", "aq1")
    doctor.broker(BrokerEvent(ev.CONNECTED, "sim-x", "", "10.0.0.8"), NOW)
    doctor.broker(BrokerEvent(ev.WILL, "sim-x", topic=other.topic("status"), will=True), NOW)
    assert doctor.device(other).checks["last_will_set"].ok is True
    assert doctor.device(other).checks["broker_reached"].ok is True
    doctor.broker(BrokerEvent(ev.PUBLISHED, "app-1", topic=other.topic("commands/request"), size=20), NOW)
    assert "app-1" not in doctor.clients  # a learner's app speaks for no device


def test_the_hub_s_own_client_is_never_a_device_s() -> None:
    doctor = Doctor(private_prefix="labhub-hub")
    for client in ("labhub-hub-3fa9", "x"):  # the hub clears a retained copy: a retained, empty publish
        doctor.broker(BrokerEvent(ev.CONNECTED, client, "", "127.0.0.1"), NOW)
        doctor.broker(BrokerEvent(ev.PUBLISHED, client, topic=TOPIC, retain=True, size=0), NOW)
    assert doctor.clients == {} and doctor.devices == {}
    doctor.broker(BrokerEvent(ev.PUBLISHED, "labhub-hub-3fa9", topic=TOPIC, size=10), NOW)
    doctor.broker(BrokerEvent(ev.TIMEOUT, "labhub-hub-3fa9", line="Client labhub-hub-3fa9 has exceeded timeout"), NOW)
    assert doctor.clients == {} and doctor.devices == {}


def test_a_retained_command_request_from_a_learner_s_app_is_put_on_the_device() -> None:
    doctor = Doctor()
    request = REF.topic("commands/request")
    changes = doctor.broker(BrokerEvent(ev.PUBLISHED, "demo/ana", "demo/ana", topic=request, retain=True, size=9), NOW)
    assert [(c.ref, c.finding.code) for c in changes] == [(REF, dx.RETAINED_COMMAND)]
    assert doctor.broker(BrokerEvent(ev.PUBLISHED, "app", topic=request, retain=True, size=0), NOW) == []  # cleared
