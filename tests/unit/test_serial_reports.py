"""What the serial bridge publishes on a device's errors topic: the same keys and codes as ever, the texts in the
cohort's language (from the device contract's catalogue), the log in English. No broker: nothing is sent, the
reports wait in the bridge's buffer.
"""

import json
import logging

import pytest

from devices.topics import DeviceRef
from hub.bridges.serial_bridge import Bridge

KEYS = {"code", "severity", "message", "hint", "received", "source", "device", "time_ns"}


def reports(bridge: Bridge) -> list[dict[str, object]]:
    return [json.loads(payload) for topic, payload, _, _ in bridge._buffer if topic.endswith("/errors")]


@pytest.mark.parametrize(
    ("language", "message"),
    [
        ("en", "a line that is neither JSON nor key=value pairs"),
        ("fr", "une ligne qui n'est ni du JSON ni des paires clé=valeur"),
    ],
)
async def test_a_report_in_the_cohorts_language_with_the_same_keys(
    language: str, message: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    bridge = Bridge(DeviceRef("c", "l", "d"), "loop://", mqtt_port=1, language=language)
    bridge.handle(b"Booting sensor...\n")
    [report] = reports(bridge)
    assert set(report) == KEYS
    assert (report["code"], report["message"], report["source"]) == ("not_a_reading", message, "serial-bridge")
    assert (report["received"], report["device"], report["severity"]) == ("Booting sensor...", "c/l/d", "error")
    [line] = [r.getMessage() for r in caplog.records if r.name == "hub.bridges.serial_bridge"]
    assert line == "c/l/d: not_a_reading: a line that is neither JSON nor key=value pairs"


async def test_reports_past_the_burst_are_counted_and_said_in_the_next_one() -> None:
    bridge = Bridge(DeviceRef("c", "l", "d"), "loop://", mqtt_port=1)
    bridge.handle(b"noise\n" * 12)  # a burst of 10, then the bucket (2 a second) is empty
    sent = reports(bridge)
    assert len(sent) == 10 and bridge.stats.problem_codes == {"not_a_reading": 12}
    assert bridge._suppressed == 2
