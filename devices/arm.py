"""Robotic arms: profiles (joints, limits, speeds, poses), commands, their validation and wire format. Pure.

A profile names each joint with its range, its top speed and its home angle; some arms also have coupled
limits (on a MeArm the elbow's safe range depends on the shoulder angle) and named poses. A command is
checked against the profile *before* anything reaches the motors: an unknown joint, an angle outside a
range (coupled ones included), a speed above a joint's maximum or a malformed command is refused with a
message that names the joint and its limits. Nothing is ever clamped silently.

On the wire the hub sends a device only two command types, so firmware stays small: `move` (target angles,
speed) and `stop`. Named poses, home and the gripper are resolved into `move` targets by the hub. The
device answers on `…/ack` with the command id and `accepted`, `rejected` (with a reason) or `done`
(with the final pose; `interrupted` when a stop cut the move short).
"""

from __future__ import annotations

import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from types import MappingProxyType
from typing import Any

from devices.text import finite_float, has_surrogates, valid_text

PROFILE_DIR = Path(str(files("labhub_config") / "arms"))  # the repo's config/arms, installed with the code
ACK_STATUSES = ("accepted", "rejected", "done")
MAX_ID = 64
MAX_JOINTS = 16  # more than any classroom arm has: bounds what an app or an ack may name


class ProfileError(ValueError):
    """An arm profile file that cannot be used as written."""


class CommandError(ValueError):
    """A command refused before it reached the arm: `code`, and the joint and limits where one is at fault."""

    def __init__(self, code: str, message: str, joint: str | None = None, limits: tuple[float, float] | None = None):
        super().__init__(message)
        self.code = code
        self.joint = joint
        self.limits = limits

    def as_json(self) -> dict[str, object]:
        out: dict[str, object] = {"code": self.code, "message": str(self)}
        if self.joint is not None:
            out["joint"] = self.joint
        if self.limits is not None:
            out["limits"] = list(self.limits)
        return out


@dataclass(frozen=True, slots=True)
class Joint:
    name: str
    minimum: float
    maximum: float
    max_speed: float  # degrees per second
    home: float


@dataclass(frozen=True, slots=True)
class CoupledLimit:
    """The range of `joint` as a piecewise-linear function of the angle of `on`."""

    joint: str
    on: str
    points: tuple[tuple[float, float, float], ...]  # (angle of `on`, minimum, maximum), sorted

    def bounds(self, on_angle: float) -> tuple[float, float]:
        points = self.points
        if on_angle <= points[0][0]:
            return points[0][1], points[0][2]
        for (a0, lo0, hi0), (a1, lo1, hi1) in itertools.pairwise(points):
            if on_angle <= a1:
                t = (on_angle - a0) / (a1 - a0)
                return lo0 + t * (lo1 - lo0), hi0 + t * (hi1 - hi0)
        return points[-1][1], points[-1][2]


@dataclass(frozen=True, slots=True)
class ArmProfile:
    name: str
    description: str
    joints: Mapping[str, Joint]
    poses: Mapping[str, Mapping[str, float]]
    coupled: tuple[CoupledLimit, ...] = ()
    gripper: str | None = None
    gripper_open: float = 0.0
    gripper_closed: float = 0.0
    # Link lengths in mm, base to tip (`[links]`): only drawings use them (a replay's arm).
    links: Mapping[str, float] = field(default_factory=lambda: MappingProxyType({}))

    def home_pose(self) -> dict[str, float]:
        return {name: joint.home for name, joint in self.joints.items()}


# Commands ------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Move:
    """Move some or all joints; `speed` in degrees per second (None: each joint's top speed)."""

    targets: Mapping[str, float]
    speed: float | None = None


@dataclass(frozen=True, slots=True)
class GoToPose:
    pose: str
    speed: float | None = None


@dataclass(frozen=True, slots=True)
class Gripper:
    action: str  # "open", "close" or "angle"
    angle: float | None = None


@dataclass(frozen=True, slots=True)
class Home:
    speed: float | None = None


@dataclass(frozen=True, slots=True)
class Stop:
    pass


Command = Move | GoToPose | Gripper | Home | Stop
COMMAND_TYPES = ("move", "pose", "gripper", "home", "stop")


def _number(value: object, what: str) -> float:
    number = finite_float(value)  # never float() on a 400-digit integer: OverflowError
    if number is None:
        raise CommandError("not_a_number", f"{what} must be a number of degrees, got {_show(value)}")
    return number


def _show(value: object) -> str:
    """A short JSON copy of a value for an error message (huge integers and odd objects included)."""
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError, RecursionError):
        return "?"


def _speed(obj: Mapping[str, Any]) -> float | None:
    if obj.get("speed") is None:
        return None
    speed = _number(obj["speed"], "speed")
    if speed <= 0:
        raise CommandError("bad_speed", f"speed must be above 0 °/s, got {speed:g}")
    return speed


def parse_command(obj: object) -> Command:
    """A command from an app's JSON (shape only; `check_command` checks it against the arm)."""
    if not isinstance(obj, Mapping):
        raise CommandError("malformed", 'a command is a JSON object such as {"type": "move", "targets": {"base": 90}}')
    kind = obj.get("type")
    if kind == "move":
        targets = obj.get("targets")
        if not isinstance(targets, Mapping) or not targets:
            raise CommandError("malformed", 'a move needs "targets": an object of joint names to angles in degrees')
        if len(targets) > MAX_JOINTS:
            raise CommandError("malformed", f"a move names at most {MAX_JOINTS} joints")
        return Move({str(k): _number(v, f"target for {_show(k)}") for k, v in targets.items()}, _speed(obj))
    if kind == "pose":
        name = obj.get("name")
        if not isinstance(name, str) or not name:
            raise CommandError("malformed", 'a pose command needs "name": the name of a pose of this arm')
        return GoToPose(name, _speed(obj))
    if kind == "gripper":
        action = obj.get("action")
        if action in ("open", "close"):
            return Gripper(str(action))
        if action == "angle":
            return Gripper("angle", _number(obj.get("angle"), "gripper angle"))
        raise CommandError("malformed", 'a gripper command needs "action": "open", "close" or "angle" (with "angle")')
    if kind == "home":
        return Home(_speed(obj))
    if kind == "stop":
        return Stop()
    raise CommandError("unknown_type", f"unknown command type {_show(kind)}: use one of {', '.join(COMMAND_TYPES)}")


def resolve(command: Command, profile: ArmProfile) -> tuple[dict[str, float], float | None]:
    """The joint targets a command means on this arm, and its speed. (Stop has none.)"""
    if isinstance(command, Move):
        return dict(command.targets), command.speed
    if isinstance(command, GoToPose):
        pose = profile.poses.get(command.pose)
        if pose is None:
            known = ", ".join(profile.poses) or "none"
            raise CommandError("unknown_pose", f"{profile.name} has no pose {command.pose!r} (poses: {known})")
        return dict(pose), command.speed
    if isinstance(command, Home):
        return profile.home_pose(), command.speed
    if isinstance(command, Gripper):
        if profile.gripper is None:
            raise CommandError("no_gripper", f"{profile.name} has no gripper")
        if command.action == "angle":
            assert command.angle is not None
            return {profile.gripper: command.angle}, None
        return {profile.gripper: profile.gripper_open if command.action == "open" else profile.gripper_closed}, None
    return {}, None


def check_command(command: Command, profile: ArmProfile, pose: Mapping[str, float]) -> dict[str, float]:
    """Check a command against the arm's limits from `pose`; return the whole pose it leads to."""
    targets, speed = resolve(command, profile)
    for name, angle in targets.items():
        joint = profile.joints.get(name)
        if joint is None:
            raise CommandError(
                "unknown_joint", f"{profile.name} has no joint {name!r} (joints: {', '.join(profile.joints)})", name
            )
        if not joint.minimum <= angle <= joint.maximum:
            raise CommandError(
                "out_of_limits",
                f"{name}: {angle:g}° is outside its limits {joint.minimum:g}–{joint.maximum:g}°",
                name,
                (joint.minimum, joint.maximum),
            )
        if speed is not None and speed > joint.max_speed:
            raise CommandError(
                "too_fast",
                f"{name}: {speed:g}°/s is above its top speed {joint.max_speed:g}°/s",
                name,
                (0.0, joint.max_speed),
            )
    final = {**profile.home_pose(), **pose, **targets}
    for limit in profile.coupled:
        lo, hi = limit.bounds(final[limit.on])
        angle = final[limit.joint]
        if not lo - 1e-9 <= angle <= hi + 1e-9:
            raise CommandError(
                "out_of_coupled_limits",
                f"{limit.joint}: {angle:g}° is outside {lo:.0f}–{hi:.0f}° when {limit.on} is at {final[limit.on]:g}°",
                limit.joint,
                (round(lo, 1), round(hi, 1)),
            )
    return final


# Wire format ---------------------------------------------------------------------------------------


def encode_device_command(
    command_id: str, command: Command, targets: Mapping[str, float], speed: float | None
) -> bytes:
    """What goes on `…/commands`: a `move` with resolved targets, or a `stop`."""
    if isinstance(command, Stop):
        return json.dumps({"id": command_id, "type": "stop"}).encode()
    body: dict[str, object] = {"id": command_id, "type": "move", "targets": dict(targets)}
    if speed is not None:
        body["speed"] = speed
    return json.dumps(body).encode()


@dataclass(frozen=True, slots=True)
class Ack:
    command_id: str
    status: str
    reason: str = ""
    pose: Mapping[str, float] | None = None
    interrupted: bool = False


def decode_ack(payload: bytes) -> Ack:
    """An acknowledgement from `…/ack`; ValueError says what is wrong with it."""
    try:
        obj = json.loads(payload)
    except (ValueError, RecursionError) as err:
        raise ValueError(f"ack is not JSON: {err}") from None
    if not isinstance(obj, dict):
        raise ValueError("ack must be a JSON object")
    command_id, status = obj.get("id"), obj.get("status")
    if not isinstance(command_id, str) or not 0 < len(command_id) <= MAX_ID:
        raise ValueError('ack needs the command\'s "id"')
    if status not in ACK_STATUSES:
        raise ValueError(f"ack status must be one of {', '.join(ACK_STATUSES)}")
    if has_surrogates(command_id):
        raise ValueError("ack id is not valid text")
    pose = obj.get("pose")
    clean_pose = None
    if isinstance(pose, dict):  # numbers only, and never more joints than an arm can have
        clean_pose = {}
        for key, value in list(pose.items())[:MAX_JOINTS]:
            number = finite_float(value)
            if number is not None:
                clean_pose[valid_text(str(key))[:MAX_ID]] = number
    reason = obj.get("reason", "")
    text = valid_text(reason[:200]) if isinstance(reason, str) else ""
    return Ack(command_id, status, text, clean_pose, obj.get("interrupted") is True)


def encode_ack(ack: Ack) -> bytes:
    body: dict[str, object] = {"id": ack.command_id, "status": ack.status}
    if ack.reason:
        body["reason"] = ack.reason
    if ack.pose is not None:
        body["pose"] = {k: round(v, 2) for k, v in ack.pose.items()}
    if ack.interrupted:
        body["interrupted"] = True
    return json.dumps(body).encode()


# Profiles ------------------------------------------------------------------------------------------


def load_profile(path: Path) -> ArmProfile:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ProfileError(f"{path}: {err}") from None
    where = str(path)

    def need(table: Mapping[str, Any], key: str, kind: type, at: str) -> Any:
        value = table.get(key)
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ProfileError(f"{where}: {at}{key}: expected {kind.__name__}, got {value!r}")
        return value

    joints = {}
    for name, table in need(data, "joints", dict, "").items():
        at = f"joints.{name}."
        joint = Joint(
            name,
            need(table, "min", float, at),
            need(table, "max", float, at),
            need(table, "max_speed", float, at),
            need(table, "home", float, at),
        )
        if not joint.minimum <= joint.home <= joint.maximum or joint.max_speed <= 0:
            raise ProfileError(f"{where}: {at}: home must lie within min–max, and max_speed be above 0")
        joints[name] = joint
    coupled = []
    for i, table in enumerate(data.get("coupled", [])):
        at = f"coupled[{i}]."
        points = tuple(sorted(tuple(float(x) for x in p) for p in need(table, "points", list, at)))
        if len(points) < 2 or any(len(p) != 3 for p in points):
            raise ProfileError(f"{where}: {at}points: at least two [angle, min, max] triples")
        limit = CoupledLimit(need(table, "joint", str, at), need(table, "on", str, at), points)  # type: ignore[arg-type]
        if limit.joint not in joints or limit.on not in joints:
            raise ProfileError(f"{where}: {at}: joint and on must name joints of this arm")
        coupled.append(limit)
    poses = {
        str(k): MappingProxyType({str(j): float(a) for j, a in v.items()}) for k, v in data.get("poses", {}).items()
    }
    gripper = data.get("gripper")
    links = {}
    for name, length in need(data, "links", dict, "").items() if "links" in data else ():
        number = finite_float(length)
        if number is None or number <= 0 or isinstance(length, bool):
            raise ProfileError(f"{where}: links.{name}: expected a length in mm above 0, got {length!r}")
        links[str(name)] = number
    profile = ArmProfile(
        need(data, "name", str, ""),
        str(data.get("description", "")),
        MappingProxyType(joints),
        MappingProxyType(poses),
        tuple(coupled),
        gripper if isinstance(gripper, str) and gripper in joints else None,
        float(data.get("gripper_open", 0.0)),
        float(data.get("gripper_closed", 0.0)),
        MappingProxyType(links),
    )
    check_command(Home(), profile, {})  # the home pose itself must be valid
    for pose in profile.poses:
        try:
            check_command(GoToPose(pose), profile, profile.home_pose())
        except CommandError as err:
            raise ProfileError(f"{where}: poses.{pose}: {err}") from None
    return profile


DEFAULT_PROFILE = "mearm"  # an arm declared without a profile


def load_profiles(directory: Path = PROFILE_DIR) -> dict[str, ArmProfile]:
    return {p.name: p for p in (load_profile(path) for path in sorted(directory.glob("*.toml")))}
