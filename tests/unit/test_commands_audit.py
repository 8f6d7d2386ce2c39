"""The commands audit trail, whole lines: what trainers grade from must not drift."""

from __future__ import annotations

import pytest

from devices.arm import CommandError, Move, Stop
from devices.topics import DeviceRef
from hub.commands import audit
from hub.commands.audit import CommandAudit, audit_line, refusal_line, text_of, type_tag
from hub.commands.relay import CommandRecord, State

REF = DeviceRef("c1", "ana", "arm1")
TAGS = "commands,cohort=c1,device=arm1,learner=ana"

DONE = CommandRecord(
    id="abc",
    device=REF,
    request={"type": "move", "targets": {"base": 90}},
    command=Move({"base": 90.0}),
    targets={"base": 90.0},
    speed=None,
    duration_s=1.5,
    source="http",
    created_ns=1_000_000_000,
    state=State.DONE,
    accepted_ns=1_020_000_000,
    finished_ns=2_500_000_000,
    pose={"base": 89.5},
)
REJECTED = CommandRecord(
    id="def",
    device=REF,
    request={"type": "stop"},
    command=Stop(),
    targets={},
    speed=None,
    duration_s=0.0,
    source="mqtt",
    created_ns=7,
    state=State.REJECTED,
    reason="busy",
    finished_ns=1_000_007,
)


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (
            DONE,
            f"{TAGS},state=done,type=move "
            'id="abc",source="http",request="{\\"type\\":\\"move\\",\\"targets\\":{\\"base\\":90}}",'
            "interrupted=false,expected_s=1.5,pose_error_deg=0.5,accepted_ms=20.0,finished_ms=1500.0 1000000000",
        ),
        (
            REJECTED,
            f"{TAGS},state=rejected,type=stop "
            'id="def",source="mqtt",request="{\\"type\\":\\"stop\\"}",interrupted=false,expected_s=0.0,'
            'reason="busy",finished_ms=1.0 7',
        ),
    ],
    ids=["done, with its pose error and latencies", "rejected, never accepted"],
)
def test_a_finished_command_is_one_point(record: CommandRecord, line: str) -> None:
    assert audit_line(record) == line


def _circular() -> dict[str, object]:
    loop: dict[str, object] = {}
    loop["self"] = loop
    return loop


@pytest.mark.parametrize(
    ("request_", "fields"),
    [
        ({"type": "move", "targets": {}}, 'request="{\\"type\\":\\"move\\",\\"targets\\":{}}",reason="malformed: m"'),
        (
            {"type": "drop tables"},
            'request="{\\"type\\":\\"drop tables\\"}",reason="malformed: m",type_sent="drop tables"',
        ),
        ([1], 'request="[1]",reason="malformed: m"'),
        (_circular(), 'request="?",reason="malformed: m"'),
    ],
    ids=["known type", "unknown type: a field, never a tag", "not an object", "not serialisable"],
)
def test_a_refused_command_is_one_point(request_: object, fields: str) -> None:
    kind = "move" if isinstance(request_, dict) and request_.get("type") == "move" else "other"
    line = refusal_line(REF, request_, CommandError("malformed", "m"), "http", 42)
    assert line == f'{TAGS},state=refused,type={kind} source="http",{fields} 42'


@pytest.mark.parametrize(
    ("kind", "tag"), [("move", "move"), ("stop", "stop"), ("MOVE", "other"), (3, "other"), (None, "other")]
)
def test_type_tags_come_from_a_closed_vocabulary(kind: object, tag: str) -> None:
    assert type_tag(kind) == tag


@pytest.mark.parametrize(
    ("value", "text"),
    [("plain", "plain"), ({"a": [1, 2]}, '{"a":[1,2]}'), ({1, 2}, "?"), ("x\ud800", "x\ufffd"), ("y" * 300, "y" * 200)],
)
def test_text_of(value: object, text: str) -> None:
    assert text_of(value) == text


def test_two_refusals_at_one_instant_get_two_timestamps(monkeypatch: pytest.MonkeyPatch) -> None:
    lines: list[tuple[str, str]] = []
    trail = CommandAudit(lambda key, line: lines.append((key, line)))
    monkeypatch.setattr(audit.time, "time_ns", lambda: 5)
    for _ in range(2):
        trail.refused(REF, {"type": "stop"}, CommandError("malformed", "m"), "http")
    trail.finished(REJECTED)
    assert [key for key, _ in lines] == [REF.key] * 3
    assert [line.rsplit(" ", 1)[1] for _, line in lines] == ["5", "6", "7"]
