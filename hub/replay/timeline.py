"""A replay's timeline (pure): what InfluxDB holds for some devices over a window — readings, presence, commands
with their states and latencies, refusals, the lab doctor's diagnoses — merged into one list of frames ordered by
time, and the state of a device at any instant of it (its card values, its arm's pose, online or not, its command
log so far). The browser replays the same frames; these functions are what a test compares it with.

A frame is (time, device, type, data). Within one instant, frames come in a fixed order of types (presence,
reading, command, rejection, diagnosis) then of devices, so the same data always gives the same timeline. The last
presence status and the last diagnosis before the window say how the window began: they are placed at its start
(with `since_ns`, their real time).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from devices.arm import ArmProfile
from hub.adapters.influx_read import FieldValue

TYPES = ("presence", "reading", "command", "rejection", "diagnosis")
_ORDER = {t: i for i, t in enumerate(TYPES)}
MAX_FRAMES = 200_000  # a day of one 1 Hz device is 86,400 readings; past this the replay is cut (and says so)
COMMAND_FIELDS = ("id", "source", "request", "reason", "accepted_ms", "finished_ms", "pose_error_deg", "expected_s")


@dataclass(frozen=True, slots=True)
class Frame:
    t_ns: int
    device: str  # DeviceRef.key
    type: str  # one of TYPES
    data: Mapping[str, FieldValue]

    def as_json(self) -> dict[str, object]:
        return {"t_ns": self.t_ns, "device": self.device, "type": self.type, "data": dict(self.data)}


@dataclass(frozen=True, slots=True)
class DeviceData:
    """What the reader gave for one device over the window (times in ns, fields as stored)."""

    device: str
    kind: str
    readings: Sequence[tuple[int, Mapping[str, FieldValue]]] = ()
    presence: Sequence[tuple[int, bool]] = ()  # the last status before the window included
    commands: Sequence[tuple[int, Mapping[str, FieldValue]]] = ()  # `commands` points: tags type, state
    rejections: Sequence[tuple[int, str]] = ()  # (time, code)
    diagnoses: Sequence[tuple[int, Mapping[str, FieldValue]]] = ()  # changes of findings, earlier ones included
    profile: ArmProfile | None = None  # arms only


@dataclass(frozen=True, slots=True)
class Timeline:
    start_ns: int
    end_ns: int
    devices: tuple[DeviceData, ...]
    frames: tuple[Frame, ...]
    truncated: bool = False  # more than MAX_FRAMES: the frames stop early
    _times: tuple[int, ...] = field(default=(), repr=False, compare=False)

    def until(self, t_ns: int) -> tuple[Frame, ...]:
        """The frames at or before `t_ns`."""
        times = self._times or tuple(f.t_ns for f in self.frames)
        return self.frames[: bisect.bisect_right(times, t_ns)]


def _command(fields: Mapping[str, FieldValue]) -> dict[str, FieldValue]:
    data: dict[str, FieldValue] = {"command": str(fields.get("type", "")), "state": str(fields.get("state", ""))}
    data.update({k: fields[k] for k in COMMAND_FIELDS if k in fields})
    return data


def _frames(d: DeviceData, start_ns: int, end_ns: int) -> list[Frame]:
    key = d.device
    inside = [(t, on) for t, on in d.presence if start_ns <= t < end_ns]
    before = [(t, on) for t, on in d.presence if t < start_ns]
    frames = [Frame(start_ns, key, "presence", {"online": before[-1][1], "since_ns": before[-1][0]})] if before else []
    frames += [Frame(t, key, "presence", {"online": on}) for t, on in inside]
    frames += [Frame(t, key, "reading", dict(f)) for t, f in d.readings if start_ns <= t < end_ns]
    frames += [Frame(t, key, "command", _command(f)) for t, f in d.commands if start_ns <= t < end_ns]
    frames += [Frame(t, key, "rejection", {"code": code}) for t, code in d.rejections if start_ns <= t < end_ns]
    earlier = [(t, f) for t, f in d.diagnoses if t < start_ns]
    if earlier:
        frames.append(Frame(start_ns, key, "diagnosis", {**earlier[-1][1], "since_ns": earlier[-1][0]}))
    frames += [Frame(t, key, "diagnosis", dict(f)) for t, f in d.diagnoses if start_ns <= t < end_ns]
    return frames


def build(start_ns: int, end_ns: int, devices: Iterable[DeviceData], max_frames: int = MAX_FRAMES) -> Timeline:
    """One ordered timeline of the devices' frames over [start_ns, end_ns)."""
    devs = tuple(sorted(devices, key=lambda d: d.device))
    frames = sorted(
        (f for d in devs for f in _frames(d, start_ns, end_ns)),
        key=lambda f: (f.t_ns, _ORDER[f.type], f.device),
    )
    kept = tuple(frames[:max_frames])
    return Timeline(start_ns, end_ns, devs, kept, len(frames) > max_frames, tuple(f.t_ns for f in kept))


# The state at an instant ---------------------------------------------------------------------------------


def _of(timeline: Timeline, device: str, kind: str, t_ns: int) -> list[Frame]:
    return [f for f in timeline.until(t_ns) if f.device == device and f.type == kind]


def card_values(timeline: Timeline, device: str, t_ns: int) -> dict[str, FieldValue]:
    """What the device's card shows at `t_ns`: each field's last stored value at or before it."""
    values: dict[str, FieldValue] = {}
    for frame in _of(timeline, device, "reading", t_ns):
        values.update(frame.data)
    return values


def last_reading(timeline: Timeline, device: str, t_ns: int) -> Frame | None:
    found = _of(timeline, device, "reading", t_ns)
    return found[-1] if found else None


def arm_pose(timeline: Timeline, device: str, t_ns: int, profile: ArmProfile) -> dict[str, float]:
    """The arm's joint angles at `t_ns`: its home pose, then each joint's last stored angle at or before it."""
    pose = profile.home_pose()
    for name, value in card_values(timeline, device, t_ns).items():
        if name in pose and isinstance(value, int | float) and not isinstance(value, bool):
            pose[name] = float(value)
    return pose


def online(timeline: Timeline, device: str, t_ns: int) -> bool | None:
    """Online at `t_ns` (None: no status known yet)."""
    found = _of(timeline, device, "presence", t_ns)
    return bool(found[-1].data["online"]) if found else None


def command_log(timeline: Timeline, device: str, t_ns: int) -> list[Frame]:
    """The device's commands and refusals recorded at or before `t_ns`, oldest first."""
    return [f for f in timeline.until(t_ns) if f.device == device and f.type in ("command", "rejection")]


# JSON ------------------------------------------------------------------------------------------------------


def arm_json(profile: ArmProfile) -> dict[str, object]:
    """What a drawing of the arm needs: joints (range, home), link lengths in mm, the gripper's joint."""
    return {
        "name": profile.name,
        "joints": {j.name: {"min": j.minimum, "max": j.maximum, "home": j.home} for j in profile.joints.values()},
        "links": dict(profile.links),
        "gripper": profile.gripper,
    }


def numeric_fields(d: DeviceData) -> list[str]:
    """The device's numeric fields, in the order first seen (what can be plotted)."""
    seen: dict[str, None] = {}
    for _, fields in d.readings:
        for name, value in fields.items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                seen.setdefault(name, None)
    return list(seen)


def as_json(timeline: Timeline) -> dict[str, object]:
    """The replay API's answer (see the API's description in `hub.web.replay`)."""
    return {
        "start_ns": timeline.start_ns,
        "end_ns": timeline.end_ns,
        "devices": [
            {
                "device": d.device,
                "kind": d.kind,
                "fields": numeric_fields(d),
                "arm": arm_json(d.profile) if d.profile is not None else None,
            }
            for d in timeline.devices
        ],
        "frames": [f.as_json() for f in timeline.frames],
        "truncated": timeline.truncated,
    }
