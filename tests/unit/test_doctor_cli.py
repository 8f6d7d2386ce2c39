"""`labhub doctor`'s text: the checklist with marks, times and evidence, then open and resolved findings."""

from __future__ import annotations

from devices.topics import DeviceRef
from hub.cli.doctor import render
from hub.doctor import events as ev
from hub.doctor.engine import Doctor
from hub.doctor.events import BrokerEvent

REF = DeviceRef("demo", "ana", "aq1")
S = 10**9
NOW = 1_800_000_000 * S


def test_render_a_report_with_an_open_and_a_resolved_finding() -> None:
    doctor = Doctor()
    doctor.broker(BrokerEvent(ev.CONNECTED, REF.key, REF.key, "10.0.0.5"), NOW)
    doctor.broker(BrokerEvent(ev.TIMEOUT, REF.key, line="Client demo/ana/aq1 has exceeded timeout"), NOW + S)
    doctor.tick(NOW + 5 * S)  # no offline status followed: no last will
    doctor.tick(NOW + 66 * S)  # both quiet for 60 s: resolved
    doctor.broker(
        BrokerEvent(ev.DENIED_PUBLISH, REF.key, topic="lab/demo/ana/aq2/telemetry", line="Denied"), NOW + 70 * S
    )
    text = render(doctor.report(REF), fixes=True)
    lines = text.splitlines()
    assert lines[0] == "demo/ana/aq1: 1 open finding(s)"
    assert lines[3].startswith("  [ok] broker_reached") and "2027-01-15 08:00:00 UTC" in lines[3]
    assert lines[5].startswith("  [NO] last_will_set")
    assert lines[6].startswith("  [--] status_online")
    opened, resolved = text.index("Open findings"), text.index("Resolved")
    assert opened < text.index("ERROR   foreign_topic: your account is demo/ana/aq1, you published to") < resolved
    assert "WARNING keepalive_timeout" in text[resolved:] and "resolved 2027-01-15 08:01:06 UTC" in text
    assert "fix (arduino):" in text and "fix (micropython):" in text


def test_render_no_findings() -> None:
    text = render(Doctor().report(REF))
    assert text.endswith("No findings.") and text.count("[--]") == 8
