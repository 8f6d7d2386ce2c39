"""The first-hour mistakes of a beginner's board, for the lab doctor: one fault per finding it diagnoses.

Each fault is named by the finding code it must produce (`devices/diagnoses.py`), except the two clocks that
both produce `clock_not_set`. What a fault changes is data (`behaviour`, pure); `firmware_sim.air.AirSensor`
acts it out on a real broker. `EXPLAINED` says what each one does, after what the MQTT client libraries'
issue trackers show beginners' boards doing (`labhub sim air --help` prints it).

No fault for `unknown_account`: the broker names no user in a refused login (only the address), so a username
typo looks like a wrong password; the doctor gives `unknown_account` when the account of the device that last
logged in from that address is gone (the trainer removed it while the board still runs), which is no firmware's.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from devices.topics import DeviceRef
from hub.adapters.mqtt import RECONNECT_BACKOFF
from hub.pace import Backoff

EXPLAINED = {
    "client_id_collision": "two boards with the same client id and account knock each other off (back 2 s later)",
    "reconnect_storm": "a board in a reset loop: connects, publishes, dies, connects again at once (no backoff)",
    "wrong_password": "works for 2 s, then flashed again with a typo in the password: refused, retried every 5 s",
    "foreign_topic": "the neighbour's sketch: own account, another device's topic (aq1 publishes to aq2)",
    "clock_1970": "ts from a clock never set by NTP: seconds since boot, a date in 1970",
    "millis_clock": "ts from millis(): milliseconds since boot",
    "too_fast": "a reading every 200 ms, faster than the SDS011 measures (1 s)",
    "retained_telemetry": "readings published with the retain flag",
    "retained_command": "the learner's app sends a retained command request, replayed whenever the hub subscribes",
    "no_last_will": "no last will, and the Wi-Fi drops every few seconds: the status stays 'online'",
    "stuck_sensor": "the sensor read once in setup(): the same values for ever",
    "keepalive_timeout": "loop() blocked in delay() past 1.5 x keepalive (2 s): the broker drops the board",
    "payload_cut_256": "a JSON document cut at a 256-byte buffer (PubSubClient's default size)",
}
DOCTOR_FAULTS = tuple(EXPLAINED)
CLOCK_FAULTS = ("clock_1970", "millis_clock")  # both: clock_not_set
PUBSUBCLIENT_BUFFER = 256  # PubSubClient's MQTT_MAX_PACKET_SIZE, and the char buffer a beginner sizes to match
TOO_FAST_PERIOD_S = 0.2  # loop() with delay(200): five readings a second from a sensor that makes one
BLOCKED_KEEPALIVE_S = 2  # the broker drops a silent client after 1.5 × keepalive: 3 s here


def finding_for(fault: str) -> str:
    """The doctor's finding code a fault must produce."""
    if fault not in DOCTOR_FAULTS:
        raise ValueError(f"{fault!r} is not a doctor fault (known: {', '.join(DOCTOR_FAULTS)})")
    return "clock_not_set" if fault in CLOCK_FAULTS else fault


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How a board with this fault differs from a healthy one on the broker (the defaults: a healthy board)."""

    will: bool = True
    keepalive: int = 60
    reconnect: Backoff = RECONNECT_BACKOFF
    twin: bool = False  # a second board with the same client id and account
    typo_after_s: float | None = None  # works this long, then is flashed again with a typo in its password
    drop_after_s: float | None = None  # the connection dies abruptly this long after each connect
    block_after_s: float | None = None  # loop() blocks this long after each connect…
    block_for_s: float = 0.0  # …for this long (no reading, no pings, no publishing)
    period_s: float | None = None  # replaces the sensor's period
    retain_telemetry: bool = False
    foreign_topic: bool = False
    retained_command: bool = False
    stuck: bool = False


def behaviour(fault: str | None) -> Behaviour:
    """The behaviour of a fault (payload-only faults and None: a healthy connection)."""
    if fault == "client_id_collision":
        return Behaviour(twin=True, reconnect=Backoff(first_s=2.0, cap_s=2.0, jitter=False))
    if fault == "reconnect_storm":
        return Behaviour(drop_after_s=0.3, reconnect=Backoff(first_s=0.1, cap_s=0.1, jitter=False))
    if fault == "wrong_password":
        return Behaviour(typo_after_s=2.0, reconnect=Backoff(first_s=5.0, cap_s=5.0, jitter=False))
    if fault == "no_last_will":
        return Behaviour(will=False, drop_after_s=2.0, reconnect=Backoff(first_s=5.0, cap_s=5.0, jitter=False))
    if fault == "keepalive_timeout":
        return Behaviour(keepalive=BLOCKED_KEEPALIVE_S, block_after_s=1.0, block_for_s=3 * BLOCKED_KEEPALIVE_S)
    if fault == "too_fast":
        return Behaviour(period_s=TOO_FAST_PERIOD_S)
    return Behaviour(
        retain_telemetry=fault == "retained_telemetry",
        foreign_topic=fault == "foreign_topic",
        retained_command=fault == "retained_command",
        stuck=fault == "stuck_sensor",
    )


def login(ref: DeviceRef, password: str | None, fault: str | None) -> tuple[str | None, str | None]:
    """(username, password) the board sends; None, None: anonymous (classroom open mode)."""
    if fault == "wrong_password":
        return ref.key, (password or "") + "x"  # one key too many in secrets.h
    return (ref.key, password) if password else (None, None)


def foreign_ref(ref: DeviceRef) -> DeviceRef:
    """The device whose topic a copied sketch publishes to: the same name with the next number (aq1 → aq2)."""
    stem = ref.device.rstrip("0123456789")
    number = ref.device[len(stem) :]
    return DeviceRef(ref.cohort, ref.learner, f"{stem}{int(number) + 1}" if number else f"{ref.device}2")


def clock_stamp(fault: str | None, uptime_s: float) -> int | None:
    """The `ts` a board with an unset clock sends: seconds since boot (1970), or `millis()`."""
    if fault == "clock_1970":
        return int(uptime_s)
    if fault == "millis_clock":
        return int(uptime_s * 1000)
    return None


def cut_256(values: dict[str, float]) -> bytes:
    """The payload of a sketch that grew past its 256-byte buffer: more fields, the JSON cut at the buffer's end."""
    grown: dict[str, object] = dict(values)
    grown.update(pm4=values.get("pm2_5", 0.0), voc_index=100.0, nox_index=1.0, dew_point=10.0)
    grown.update(firmware="aq-station 0.3 (debug build)", wifi="classroom-5GHz", uptime_ms=123456)
    text = json.dumps(grown).encode()
    assert len(text) > PUBSUBCLIENT_BUFFER, len(text)  # the document must not fit, or nothing is cut
    return text[:PUBSUBCLIENT_BUFFER]


def command_request() -> bytes:
    """The command request a learner's app sends with the retain flag: the arm's "home" button."""
    return json.dumps({"type": "home"}).encode()
