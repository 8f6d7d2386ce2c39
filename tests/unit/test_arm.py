"""Arm profiles, command validation and the wire format (devices.arm, pure). The simulated arm firmware through
the real broker is in tests/integration/test_arm.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.arm import (
    Ack,
    CommandError,
    GoToPose,
    Gripper,
    Home,
    Move,
    ProfileError,
    Stop,
    check_command,
    decode_ack,
    encode_ack,
    encode_device_command,
    load_profile,
    load_profiles,
    parse_command,
)
from devices.topics import DeviceRef
from firmware_sim.arm import ArmFirmware

PROFILES = load_profiles()
MEARM, BRACCIO = PROFILES["mearm"], PROFILES["braccio"]


def test_shipped_profiles_have_their_published_limits() -> None:
    assert set(PROFILES) == {"mearm", "braccio"}
    assert list(MEARM.joints) == ["base", "shoulder", "elbow", "gripper"]
    limits = {name: (j.minimum, j.maximum) for name, j in BRACCIO.joints.items()}
    assert limits["base"] == (0, 180) and limits["shoulder"] == (15, 165) and limits["gripper"] == (10, 73)


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "move", "targets": {"base": 45}}, Move({"base": 45.0})),
        (
            {"type": "move", "targets": {"base": 45, "elbow": 100.5}, "speed": 30},
            Move({"base": 45.0, "elbow": 100.5}, 30.0),
        ),
        ({"type": "pose", "name": "rest"}, GoToPose("rest")),
        ({"type": "gripper", "action": "open"}, Gripper("open")),
        ({"type": "gripper", "action": "angle", "angle": 40}, Gripper("angle", 40.0)),
        ({"type": "home"}, Home()),
        ({"type": "stop"}, Stop()),
    ],
)
def test_commands_parse(obj: dict[str, object], expected: object) -> None:
    assert parse_command(obj) == expected


@pytest.mark.parametrize(
    ("obj", "code"),
    [
        ([1, 2], "malformed"),
        ({"type": "dance"}, "unknown_type"),
        ({"type": "move"}, "malformed"),
        ({"type": "move", "targets": {}}, "malformed"),
        ({"type": "move", "targets": {"base": "90"}}, "not_a_number"),
        ({"type": "move", "targets": {"base": float("nan")}}, "not_a_number"),
        ({"type": "move", "targets": {"base": True}}, "not_a_number"),
        ({"type": "move", "targets": {"base": 90}, "speed": 0}, "bad_speed"),
        ({"type": "pose"}, "malformed"),
        ({"type": "gripper", "action": "wave"}, "malformed"),
        ({"type": "gripper", "action": "angle"}, "not_a_number"),
    ],
)
def test_malformed_commands_are_refused(obj: object, code: str) -> None:
    with pytest.raises(CommandError) as err:
        parse_command(obj)
    assert err.value.code == code


@pytest.mark.parametrize(
    ("profile", "command", "code", "message"),
    [
        (MEARM, Move({"base": 200}), "out_of_limits", "base: 200° is outside its limits 0–180°"),
        (
            MEARM,
            Move({"wrist": 10}),
            "unknown_joint",
            "mearm has no joint 'wrist' (joints: base, shoulder, elbow, gripper)",
        ),
        (MEARM, Move({"base": 10}, 500), "too_fast", "base: 500°/s is above its top speed 180°/s"),
        (
            MEARM,
            Move({"shoulder": 150, "elbow": 140}),
            "out_of_coupled_limits",
            "elbow: 140° is outside 20–110° when shoulder is at 150°",
        ),
        (MEARM, GoToPose("dance"), "unknown_pose", "mearm has no pose 'dance' (poses: rest, reach, left, right)"),
        (BRACCIO, Move({"shoulder": 10}), "out_of_limits", "shoulder: 10° is outside its limits 15–165°"),
        (BRACCIO, Gripper("angle", 80), "out_of_limits", "gripper: 80° is outside its limits 10–73°"),
    ],
)
def test_unsafe_commands_name_the_joint_and_its_limits(
    profile: object, command: object, code: str, message: str
) -> None:
    with pytest.raises(CommandError) as err:
        check_command(command, profile, {})  # type: ignore[arg-type]
    assert (err.value.code, str(err.value)) == (code, message)


def test_coupled_limits_follow_the_other_joint() -> None:
    [limit] = MEARM.coupled
    assert limit.bounds(30) == (60, 150) and limit.bounds(90) == (20, 150)
    assert limit.bounds(120) == pytest.approx((20, 130)) and limit.bounds(170) == (20, 110)
    # The elbow's current angle counts too: shoulder forward while the elbow is folded is refused.
    with pytest.raises(CommandError, match="elbow: 140° is outside"):
        check_command(Move({"shoulder": 150}), MEARM, {"elbow": 140.0})
    assert check_command(Move({"shoulder": 150}), MEARM, {"elbow": 100.0})["shoulder"] == 150


def test_poses_home_and_gripper_resolve_to_whole_poses() -> None:
    assert check_command(GoToPose("reach"), MEARM, {}) == {"base": 90, "shoulder": 130, "elbow": 60, "gripper": 90}
    assert check_command(Home(), MEARM, {"base": 10.0}) == MEARM.home_pose()
    assert check_command(Gripper("close"), BRACCIO, {})["gripper"] == 73


def test_wire_format() -> None:
    assert json.loads(encode_device_command("c1", Move({"base": 45.0}), {"base": 45.0}, 30.0)) == {
        "id": "c1",
        "type": "move",
        "targets": {"base": 45.0},
        "speed": 30.0,
    }
    assert json.loads(encode_device_command("c2", Stop(), {}, None)) == {"id": "c2", "type": "stop"}
    ack = Ack("c1", "done", pose={"base": 45.0}, interrupted=True)
    assert decode_ack(encode_ack(ack)) == ack
    for bad in (b"nope", b"[]", b'{"status": "done"}', b'{"id": "c1", "status": "maybe"}'):
        with pytest.raises(ValueError):
            decode_ack(bad)


def test_profile_errors_name_the_file_and_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\n')
    with pytest.raises(ProfileError, match=r"bad\.toml: joints\.a\.home: expected float"):
        load_profile(path)
    path.write_text('name = "x"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = 5\n[poses]\nfar = { a = 20 }\n')
    with pytest.raises(ProfileError, match=r"poses\.far: a: 20° is outside its limits 0–10°"):
        load_profile(path)


def test_servo_motion_is_bounded_by_speed() -> None:
    arm = ArmFirmware(DeviceRef("c", "l", "arm"), MEARM, "127.0.0.1", 1)
    arm.targets = {**arm.pose, "base": 0.0}
    arm.speeds = {name: 100.0 for name in arm.speeds}
    assert arm.step(0.1) and arm.pose["base"] == pytest.approx(80.0)
    assert arm.step(0.5) and arm.pose["base"] == pytest.approx(30.0)
    assert arm.step(1.0) and arm.pose["base"] == 0.0
    assert not arm.step(0.1)
