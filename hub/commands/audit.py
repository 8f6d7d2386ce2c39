"""The audit trail of commands: each finished or refused command becomes a `commands` point in InfluxDB.

Trainers grade from these points (never from the hub's memory: a restart must not change a grade). Tags come
from closed vocabularies (device, a known command type or `other`, the final state); a learner's own text is
only ever a field. Points go through the spool like readings, as evidence records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping

from devices.arm import COMMAND_TYPES, CommandError
from devices.text import valid_text
from devices.topics import DeviceRef
from hub.commands.relay import CommandRecord, State
from hub.ingest.lineproto import encode_line, series_prefix
from hub.pace import Stamper


class CommandAudit:
    """Writes the relay's finished and refused commands as evidence, through `append(device key, line)`."""

    def __init__(self, append: Callable[[str, str], None]) -> None:
        self._append = append
        self._refusals = Stamper()  # two refusals never share a point

    def finished(self, record: CommandRecord) -> None:
        self._append(record.device.key, audit_line(record))

    def refused(self, ref: DeviceRef, request: object, err: CommandError, source: str) -> None:
        self._append(ref.key, refusal_line(ref, request, err, source, self._refusals.stamp(time.time_ns())))


OTHER_TYPE = "other"


def type_tag(kind: object) -> str:
    """The `type` tag of a `commands` point: a known command type or `other` (tags come from closed
    vocabularies: a learner's text never becomes a series or a measurement)."""
    return kind if isinstance(kind, str) and kind in COMMAND_TYPES else OTHER_TYPE


def text_of(value: object) -> str:
    try:
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
    except (TypeError, ValueError, RecursionError):
        text = "?"
    return valid_text(text[:200])


def audit_line(record: CommandRecord) -> str:
    """The `commands` point for a finished command (tags: device, type, state; latencies as fields)."""
    tags = record.device.tags | {
        "type": type_tag(record.request.get("type")),
        "state": record.state.value,
    }
    fields: dict[str, float | int | bool | str] = {
        "id": record.id,
        "source": record.source,
        "request": text_of(dict(record.request)),
        "interrupted": record.interrupted,
        "expected_s": float(record.duration_s),
    }
    if record.reason:
        fields["reason"] = valid_text(record.reason[:200])
    pose = record.pose or {}
    if record.targets and record.state is State.DONE and all(j in pose for j in record.targets):
        # How far the final pose is from the targets: "target pose reached" is graded from this.
        fields["pose_error_deg"] = float(max(abs(pose[j] - t) for j, t in record.targets.items()))
    for name, value in (
        ("accepted_ms", record.latency_ms(record.accepted_ns)),
        ("finished_ms", record.latency_ms(record.finished_ns)),
    ):
        if value is not None:
            fields[name] = float(value)
    return encode_line(series_prefix("commands", tags), fields, record.created_ns)


def refusal_line(ref: DeviceRef, request: object, err: CommandError, source: str, time_ns: int) -> str:
    """The `commands` point for a command refused before anything was sent (state `refused`)."""
    kind = request.get("type") if isinstance(request, Mapping) else None
    tags = ref.tags | {
        "type": type_tag(kind),
        "state": "refused",
    }
    try:
        text = json.dumps(request, separators=(",", ":"), default=str)[:200]
    except (TypeError, ValueError, RecursionError):
        text = "?"
    fields: dict[str, float | int | bool | str] = {
        "source": source,
        "request": text,
        "reason": valid_text(f"{err.code}: {err}"[:200]),
    }
    if tags["type"] == OTHER_TYPE and kind is not None:
        fields["type_sent"] = text_of(kind)  # the raw text is kept, as a field: never a tag or a name
    return encode_line(series_prefix("commands", tags), fields, time_ns)
