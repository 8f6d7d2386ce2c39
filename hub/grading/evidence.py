"""The evidence a grade rests on: what InfluxDB holds for one device over a demo window, read through the
one `Reader` (readings, rejections, presence, commands). Scores come only from stored data, never from a running
hub's memory: a restart does not change a grade.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from devices.kinds import GENERIC, KINDS
from devices.topics import DeviceRef
from hub.adapters.influx_read import FieldValue, Reader


@dataclass(frozen=True, slots=True)
class Command:
    time_ns: int
    type: str
    state: str
    accepted_ms: float | None = None
    finished_ms: float | None = None
    pose_error_deg: float | None = None


@dataclass(frozen=True, slots=True)
class Window:
    """What InfluxDB holds for one device over [start_ns, end_ns)."""

    ref: DeviceRef
    kind: str
    start_ns: int
    end_ns: int
    readings: Sequence[tuple[int, Mapping[str, FieldValue]]] = ()
    rejections: Sequence[tuple[int, str]] = ()  # (time, code)
    presence: Sequence[tuple[int, bool]] = ()  # (time, online), the last one before the window included
    commands: Sequence[Command] = ()
    diagnoses: Sequence[tuple[int, Mapping[str, FieldValue]]] = ()  # the lab doctor's changes, course start → end_ns

    @property
    def seconds(self) -> float:
        return max(1e-9, (self.end_ns - self.start_ns) / 1e9)


async def fetch_window(reader: Reader, ref: DeviceRef, kind: str, start_ns: int, end_ns: int) -> Window:
    """Everything grading needs about one device over [start_ns, end_ns), from InfluxDB."""
    measurement = KINDS.get(kind, GENERIC).measurement_for(ref.cohort, ref.learner)
    readings = await reader.readings(measurement, ref, start_ns, end_ns)
    rejections = await reader.rejections(ref, start_ns, end_ns)
    presence = await reader.presence(ref, start_ns, end_ns)
    commands = [
        Command(
            t,
            str(f.get("type")),
            str(f.get("state")),
            _float(f.get("accepted_ms")),
            _float(f.get("finished_ms")),
            _float(f.get("pose_error_deg")),
        )
        for t, f in await reader.commands(ref, start_ns, end_ns)
    ]
    diagnoses = await reader.readings("diagnoses", ref, 0, end_ns)  # few points: only changes of findings
    return Window(ref, kind, start_ns, end_ns, readings, rejections, presence, commands, diagnoses)


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
