"""Arm profiles, command checks and the wire format (devices.arm, pure), as whole values.

Limits come from the shipped profiles and the kits' published figures (MeArm v1 with SG90 servos; the Tinkerkit
Braccio: base 0–180°, shoulder 15–165°, elbow and wrists 0–180°, gripper 10–73°). Errors are compared whole
(code, message, joint, limits), as an app receives them. Written for issue 12's mutation testing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from devices.arm import (
    Ack,
    CommandError,
    CoupledLimit,
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
    resolve,
)

SHIPPED = Path(__file__).resolve().parents[2] / "config" / "arms"


def test_shipped_profiles_load_whole() -> None:
    loaded = load_profiles(SHIPPED)
    assert sorted(loaded) == ["braccio", "mearm"]
    mearm, braccio = loaded["mearm"], loaded["braccio"]
    assert mearm.name == "mearm"
    assert mearm.description == "MeArm v1: base, shoulder, elbow, gripper (4 × SG90)"
    assert {n: (j.name, j.minimum, j.maximum, j.max_speed, j.home) for n, j in mearm.joints.items()} == {
        "base": ("base", 0.0, 180.0, 180.0, 90.0),
        "shoulder": ("shoulder", 30.0, 150.0, 120.0, 90.0),
        "elbow": ("elbow", 20.0, 150.0, 120.0, 90.0),
        "gripper": ("gripper", 10.0, 90.0, 180.0, 90.0),
    }
    assert mearm.coupled == (
        CoupledLimit("elbow", "shoulder", ((30.0, 60.0, 150.0), (90.0, 20.0, 150.0), (150.0, 20.0, 110.0))),
    )
    assert (mearm.gripper, mearm.gripper_open, mearm.gripper_closed) == ("gripper", 90.0, 10.0)
    assert {k: dict(v) for k, v in mearm.poses.items()} == {
        "rest": {"base": 90.0, "shoulder": 90.0, "elbow": 90.0, "gripper": 90.0},
        "reach": {"base": 90.0, "shoulder": 130.0, "elbow": 60.0},
        "left": {"base": 160.0},
        "right": {"base": 20.0},
    }
    assert {n: (j.minimum, j.maximum) for n, j in braccio.joints.items()} == {
        "base": (0.0, 180.0),
        "shoulder": (15.0, 165.0),
        "elbow": (0.0, 180.0),
        "wrist_ver": (0.0, 180.0),
        "wrist_rot": (0.0, 180.0),
        "gripper": (10.0, 73.0),
    }
    assert (braccio.gripper, braccio.gripper_open, braccio.gripper_closed, braccio.coupled) == (
        "gripper",
        10.0,
        73.0,
        (),
    )
    assert load_profiles() == loaded  # the default directory is the shipped one


def test_a_directory_without_profiles_has_none(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a profile")
    assert load_profiles(tmp_path) == {}


MINIMAL = 'name = "tiny"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = 5\n'


def test_a_minimal_profile_gets_defaults(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(MINIMAL)
    profile = load_profile(path)
    assert (profile.name, profile.description, profile.gripper, profile.gripper_open, profile.gripper_closed) == (
        "tiny",
        "",
        None,
        0.0,
        0.0,
    )
    assert (dict(profile.poses), profile.coupled, profile.home_pose()) == ({}, (), {"a": 5.0})
    joint = profile.joints["a"]
    assert (joint.name, joint.minimum, joint.maximum, joint.max_speed, joint.home) == ("a", 0.0, 10.0, 5.0, 5.0)
    assert type(joint.minimum) is float


def test_a_profile_with_a_coupled_limit_and_a_gripper(tmp_path: Path) -> None:
    path = tmp_path / "two.toml"
    path.write_text(
        'name = "two"\ndescription = "two joints"\ngripper = "g"\ngripper_open = 8\ngripper_closed = 2\n'
        "[joints.a]\nmin = 0\nmax = 100\nmax_speed = 50\nhome = 50\n"
        "[joints.g]\nmin = 0\nmax = 10\nmax_speed = 50\nhome = 2\n"
        '[[coupled]]\njoint = "g"\non = "a"\npoints = [[100, 0, 5], [0, 0, 10]]\n'
        "[poses]\nopen = { g = 7 }\n"
    )
    profile = load_profile(path)
    assert profile.description == "two joints"
    assert (profile.gripper, profile.gripper_open, profile.gripper_closed) == ("g", 8.0, 2.0)
    assert profile.coupled == (CoupledLimit("g", "a", ((0.0, 0.0, 10.0), (100.0, 0.0, 5.0))),)  # sorted by angle
    assert {k: dict(v) for k, v in profile.poses.items()} == {"open": {"g": 7.0}}
    assert resolve(Gripper("open"), profile) == ({"g": 8.0}, None)
    assert resolve(Gripper("close"), profile) == ({"g": 2.0}, None)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name = ", "{path}: Invalid value (at end of document)"),
        ('name = "x"\n', "{path}: joints: expected dict, got None"),
        ("name = 3\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = 5\n", "{path}: name: expected str, got 3"),
        ("[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = 5\n", "{path}: name: expected str, got None"),
        (
            'name = "x"\n[joints.a]\nmax = 10\nmax_speed = 5\nhome = 5\n',
            "{path}: joints.a.min: expected float, got None",
        ),
        (
            'name = "x"\n[joints.a]\nmin = 0\nmax_speed = 5\nhome = 5\n',
            "{path}: joints.a.max: expected float, got None",
        ),
        (
            'name = "x"\n[joints.a]\nmin = 0\nmax = 10\nhome = 5\n',
            "{path}: joints.a.max_speed: expected float, got None",
        ),
        (
            'name = "x"\n[joints.a]\nmin = true\nmax = 10\nmax_speed = 5\nhome = 5\n',
            "{path}: joints.a.min: expected float, got True",
        ),
        (
            'name = "x"\n[joints.a]\nmin = "0"\nmax = 10\nmax_speed = 5\nhome = 5\n',
            "{path}: joints.a.min: expected float, got '0'",
        ),
        (
            'name = "x"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = 11\n',
            "{path}: joints.a.: home must lie within min–max, and max_speed be above 0",
        ),
        (
            'name = "x"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 5\nhome = -1\n',
            "{path}: joints.a.: home must lie within min–max, and max_speed be above 0",
        ),
        (
            'name = "x"\n[joints.a]\nmin = 0\nmax = 10\nmax_speed = 0\nhome = 5\n',
            "{path}: joints.a.: home must lie within min–max, and max_speed be above 0",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\non = "a"\npoints = [[0, 0, 10]]\n',
            "{path}: coupled[0].points: at least two [angle, min, max] triples",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\non = "a"\npoints = [[0, 0, 10], [5, 0]]\n',
            "{path}: coupled[0].points: at least two [angle, min, max] triples",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\non = "a"\npoints = [[0, 0, 10, 1], [5, 0, 10, 1]]\n',
            "{path}: coupled[0].points: at least two [angle, min, max] triples",
        ),
        (MINIMAL + '[[coupled]]\njoint = "a"\non = "a"\n', "{path}: coupled[0].points: expected list, got None"),
        (
            MINIMAL + '[[coupled]]\non = "a"\npoints = [[0, 0, 10], [5, 0, 10]]\n',
            "{path}: coupled[0].joint: expected str, got None",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\npoints = [[0, 0, 10], [5, 0, 10]]\n',
            "{path}: coupled[0].on: expected str, got None",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "b"\non = "a"\npoints = [[0, 0, 10], [5, 0, 10]]\n',
            "{path}: coupled[0].: joint and on must name joints of this arm",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\non = "b"\npoints = [[0, 0, 10], [5, 0, 10]]\n',
            "{path}: coupled[0].: joint and on must name joints of this arm",
        ),
        (
            MINIMAL + '[[coupled]]\njoint = "a"\non = "a"\npoints = [[0, 0, 10], [10, 0, 10]]\n'
            '[[coupled]]\njoint = "a"\non = "a"\npoints = [[0, 0, 3], [10, 0, 3]]\n',
            "elbow",  # the home pose (a = 5) breaks the second limit: a CommandError, not a ProfileError
        ),
        (MINIMAL + "[poses]\nfar = { a = 20 }\n", "{path}: poses.far: a: 20° is outside its limits 0–10°"),
        (MINIMAL + "[poses]\nfar = { b = 1 }\n", "{path}: poses.far: tiny has no joint 'b' (joints: a)"),
    ],
)
def test_profile_errors_say_where(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    if message == "elbow":
        with pytest.raises(CommandError) as err:
            load_profile(path)
        assert err.value.as_json() == {
            "code": "out_of_coupled_limits",
            "message": "a: 5° is outside 0–3° when a is at 5°",
            "joint": "a",
            "limits": [0.0, 3.0],
        }
        return
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value) == message.format(path=path)


def test_a_missing_profile_file_is_a_profile_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value) == f"{path}: [Errno 2] No such file or directory: '{path}'"


def test_a_gripper_that_is_not_a_joint_is_no_gripper(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('gripper = "claw"\n' + MINIMAL)
    assert load_profile(path).gripper is None
    path.write_text("gripper = 3\n" + MINIMAL)
    assert load_profile(path).gripper is None
    path.write_text('gripper = "a"\n' + MINIMAL)
    assert load_profile(path).gripper == "a"


def test_a_pose_is_checked_from_the_home_pose(tmp_path: Path) -> None:
    # b's range depends on a; the pose moves only b, so a stays at its home (100): b may go to 90.
    path = tmp_path / "c.toml"
    path.write_text(
        'name = "c"\n[joints.a]\nmin = 0\nmax = 100\nmax_speed = 5\nhome = 100\n'
        "[joints.b]\nmin = 0\nmax = 100\nmax_speed = 5\nhome = 0\n"
        '[[coupled]]\njoint = "b"\non = "a"\npoints = [[0, 0, 10], [100, 0, 100]]\n'
        "[poses]\nhigh = { b = 90 }\n"
    )
    assert dict(load_profile(path).poses["high"]) == {"b": 90.0}


# Commands ---------------------------------------------------------------------------------------------------


def refused(obj: object) -> dict[str, object]:
    with pytest.raises(CommandError) as err:
        parse_command(obj)
    return err.value.as_json()


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        (
            [1],
            {
                "code": "malformed",
                "message": 'a command is a JSON object such as {"type": "move", "targets": {"base": 90}}',
            },
        ),
        (
            {"type": "dance"},
            {
                "code": "unknown_type",
                "message": 'unknown command type "dance": use one of move, pose, gripper, home, stop',
            },
        ),
        (
            {},
            {
                "code": "unknown_type",
                "message": "unknown command type null: use one of move, pose, gripper, home, stop",
            },
        ),
        (
            {"type": "move", "targets": []},
            {"code": "malformed", "message": 'a move needs "targets": an object of joint names to angles in degrees'},
        ),
        (
            {"type": "move", "targets": {str(i): 1 for i in range(17)}},
            {"code": "malformed", "message": "a move names at most 16 joints"},
        ),
        (
            {"type": "move", "targets": {"base": "90"}},
            {"code": "not_a_number", "message": 'target for "base" must be a number of degrees, got "90"'},
        ),
        (
            {"type": "move", "targets": {"base": 10**400}},
            {"code": "not_a_number", "message": 'target for "base" must be a number of degrees, got ' + "1" + "0" * 39},
        ),
        (
            {"type": "move", "targets": {"base": {1, 2}}},
            {"code": "not_a_number", "message": 'target for "base" must be a number of degrees, got ?'},
        ),
        (
            {"type": "move", "targets": {"base": 90}, "speed": "fast"},
            {"code": "not_a_number", "message": 'speed must be a number of degrees, got "fast"'},
        ),
        (
            {"type": "move", "targets": {"base": 90}, "speed": -2.5},
            {"code": "bad_speed", "message": "speed must be above 0 °/s, got -2.5"},
        ),
        (
            {"type": "pose", "name": ""},
            {"code": "malformed", "message": 'a pose command needs "name": the name of a pose of this arm'},
        ),
        (
            {"type": "pose", "name": 3},
            {"code": "malformed", "message": 'a pose command needs "name": the name of a pose of this arm'},
        ),
        (
            {"type": "pose", "name": "rest", "speed": 0},
            {"code": "bad_speed", "message": "speed must be above 0 °/s, got 0"},
        ),
        (
            {"type": "gripper", "action": "angle", "angle": "wide"},
            {"code": "not_a_number", "message": 'gripper angle must be a number of degrees, got "wide"'},
        ),
        (
            {"type": "gripper"},
            {
                "code": "malformed",
                "message": 'a gripper command needs "action": "open", "close" or "angle" (with "angle")',
            },
        ),
        ({"type": "home", "speed": 0}, {"code": "bad_speed", "message": "speed must be above 0 °/s, got 0"}),
    ],
)
def test_malformed_commands_whole(obj: object, expected: dict[str, object]) -> None:
    assert refused(obj) == expected


@pytest.mark.parametrize(
    ("obj", "expected"),
    [
        ({"type": "move", "targets": {"base": 1}, "speed": 0.5}, Move({"base": 1.0}, 0.5)),
        ({"type": "move", "targets": {"base": 1}, "speed": 1}, Move({"base": 1.0}, 1.0)),
        ({"type": "move", "targets": {"base": 1}, "speed": None}, Move({"base": 1.0}, None)),
        ({"type": "move", "targets": {str(i): i for i in range(16)}}, Move({str(i): float(i) for i in range(16)})),
        ({"type": "pose", "name": "rest", "speed": 20}, GoToPose("rest", 20.0)),
        ({"type": "gripper", "action": "close"}, Gripper("close")),
        ({"type": "gripper", "action": "angle", "angle": 12.5}, Gripper("angle", 12.5)),
        ({"type": "home", "speed": 45}, Home(45.0)),
    ],
)
def test_commands_parse_whole(obj: object, expected: object) -> None:
    assert parse_command(obj) == expected


def test_command_error_as_json_has_joint_and_limits_only_when_set() -> None:
    assert CommandError("c", "m").as_json() == {"code": "c", "message": "m"}
    assert CommandError("c", "m", "base", (0.0, 180.0)).as_json() == {
        "code": "c",
        "message": "m",
        "joint": "base",
        "limits": [0.0, 180.0],
    }
    err = CommandError("c", "m", "base")
    assert (err.joint, err.limits, err.as_json()) == ("base", None, {"code": "c", "message": "m", "joint": "base"})


def unsafe(command: object, pose: dict[str, float], profile_name: str = "mearm") -> dict[str, object]:
    profile = load_profiles()[profile_name]
    with pytest.raises(CommandError) as err:
        check_command(command, profile, pose)  # type: ignore[arg-type]
    return err.value.as_json()


@pytest.mark.parametrize(
    ("command", "pose", "expected"),
    [
        (
            Move({"base": -0.5}),
            {},
            {
                "code": "out_of_limits",
                "message": "base: -0.5° is outside its limits 0–180°",
                "joint": "base",
                "limits": [0.0, 180.0],
            },
        ),
        (
            Move({"base": 180.5}),
            {},
            {
                "code": "out_of_limits",
                "message": "base: 180.5° is outside its limits 0–180°",
                "joint": "base",
                "limits": [0.0, 180.0],
            },
        ),
        (
            Move({"wrist": 1}),
            {},
            {
                "code": "unknown_joint",
                "message": "mearm has no joint 'wrist' (joints: base, shoulder, elbow, gripper)",
                "joint": "wrist",
            },
        ),
        (
            Move({"base": 10}, 180.5),
            {},
            {
                "code": "too_fast",
                "message": "base: 180.5°/s is above its top speed 180°/s",
                "joint": "base",
                "limits": [0.0, 180.0],
            },
        ),
        (
            Move({"shoulder": 150}, 120.5),
            {},
            {
                "code": "too_fast",
                "message": "shoulder: 120.5°/s is above its top speed 120°/s",
                "joint": "shoulder",
                "limits": [0.0, 120.0],
            },
        ),
        (
            Move({"shoulder": 30.0, "elbow": 59.0}),
            {},
            {
                "code": "out_of_coupled_limits",
                "message": "elbow: 59° is outside 60–150° when shoulder is at 30°",
                "joint": "elbow",
                "limits": [60.0, 150.0],
            },
        ),
        (
            Move({"shoulder": 120.0}),
            {"elbow": 130.5},
            {
                "code": "out_of_coupled_limits",
                "message": "elbow: 130.5° is outside 20–130° when shoulder is at 120°",
                "joint": "elbow",
                "limits": [20.0, 130.0],
            },
        ),
        (
            Move({"shoulder": 45.0, "elbow": 49.0}),
            {},
            {
                "code": "out_of_coupled_limits",
                "message": "elbow: 49° is outside 50–150° when shoulder is at 45°",
                "joint": "elbow",
                "limits": [50.0, 150.0],
            },
        ),
        (
            Move({"shoulder": 40.0, "elbow": 50.0}),
            {},
            {
                "code": "out_of_coupled_limits",
                "message": "elbow: 50° is outside 53–150° when shoulder is at 40°",
                "joint": "elbow",
                "limits": [53.3, 150.0],
            },
        ),
        (
            GoToPose("dance"),
            {},
            {"code": "unknown_pose", "message": "mearm has no pose 'dance' (poses: rest, reach, left, right)"},
        ),
    ],
)
def test_unsafe_commands_whole(command: object, pose: dict[str, float], expected: dict[str, object]) -> None:
    assert unsafe(command, pose) == expected


def test_limits_are_inclusive_and_speeds_up_to_the_top_are_fine() -> None:
    mearm = load_profiles()["mearm"]
    home = {"base": 90.0, "shoulder": 90.0, "elbow": 90.0, "gripper": 90.0}
    assert check_command(Move({"base": 0.0}, 180.0), mearm, {}) == {**home, "base": 0.0}
    assert check_command(Move({"base": 180.0}), mearm, {}) == {**home, "base": 180.0}
    # coupled bounds are inclusive too: at shoulder 30 the elbow may be exactly 60 or 150
    assert check_command(Move({"shoulder": 30.0, "elbow": 60.0}), mearm, {})["elbow"] == 60.0
    assert check_command(Move({"shoulder": 30.0, "elbow": 150.0}), mearm, {})["elbow"] == 150.0
    # the current pose is kept for the joints a command does not name
    assert check_command(Move({"base": 10.0}), mearm, {"gripper": 20.0}) == {**home, "base": 10.0, "gripper": 20.0}


def test_a_profile_without_poses_says_none(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text(MINIMAL)
    profile = load_profile(path)
    with pytest.raises(CommandError) as err:
        check_command(GoToPose("rest"), profile, {})
    assert err.value.as_json() == {"code": "unknown_pose", "message": "tiny has no pose 'rest' (poses: none)"}
    with pytest.raises(CommandError) as err:
        check_command(Gripper("open"), profile, {})
    assert err.value.as_json() == {"code": "no_gripper", "message": "tiny has no gripper"}


def test_resolve_whole() -> None:
    mearm = load_profiles()["mearm"]
    assert resolve(Move({"base": 1.0}, 5.0), mearm) == ({"base": 1.0}, 5.0)
    assert resolve(GoToPose("left", 7.0), mearm) == ({"base": 160.0}, 7.0)
    assert resolve(Home(9.0), mearm) == ({"base": 90.0, "shoulder": 90.0, "elbow": 90.0, "gripper": 90.0}, 9.0)
    assert resolve(Gripper("open"), mearm) == ({"gripper": 90.0}, None)
    assert resolve(Gripper("close"), mearm) == ({"gripper": 10.0}, None)
    assert resolve(Gripper("angle", 33.0), mearm) == ({"gripper": 33.0}, None)
    assert resolve(Stop(), mearm) == ({}, None)


@pytest.mark.parametrize(
    ("points", "angle", "expected"),
    [
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0)), -5.0, (0.0, 10.0)),
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0)), 0.0, (0.0, 10.0)),
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0)), 4.0, (2.0, 14.0)),
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0)), 10.0, (5.0, 20.0)),
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0)), 11.0, (5.0, 20.0)),
        (((0.0, 0.0, 10.0), (10.0, 5.0, 20.0), (20.0, 1.0, 2.0)), 15.0, (3.0, 11.0)),
    ],
)
def test_coupled_bounds_interpolate_and_clamp_at_the_ends(
    points: tuple[tuple[float, float, float], ...], angle: float, expected: tuple[float, float]
) -> None:
    assert CoupledLimit("j", "on", points).bounds(angle) == pytest.approx(expected)


# Wire format -------------------------------------------------------------------------------------------------


def test_device_commands_on_the_wire() -> None:
    assert encode_device_command("c1", Move({"base": 1.0}), {"base": 1.0}, None) == (
        b'{"id": "c1", "type": "move", "targets": {"base": 1.0}}'
    )
    assert encode_device_command("c2", Home(), {"base": 90.0}, 30.0) == (
        b'{"id": "c2", "type": "move", "targets": {"base": 90.0}, "speed": 30.0}'
    )
    assert encode_device_command("c3", Stop(), {"base": 1.0}, 5.0) == b'{"id": "c3", "type": "stop"}'


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b'{"id": "c1", "status": "accepted"}', Ack("c1", "accepted")),
        (b'{"id": "c1", "status": "rejected", "reason": "busy"}', Ack("c1", "rejected", "busy")),
        (b'{"id": "c1", "status": "rejected", "reason": 42}', Ack("c1", "rejected", "")),
        (
            b'{"id": "c1", "status": "rejected", "reason": "' + b"r" * 250 + b'"}',
            Ack("c1", "rejected", "r" * 200),
        ),
        (b'{"id": "c1", "status": "rejected", "reason": "\\udc80x"}', Ack("c1", "rejected", "\ufffdx")),
        (
            b'{"id": "c1", "status": "done", "pose": {"base": 45, "bad": "x", "t": true}}',
            Ack("c1", "done", pose={"base": 45.0}),
        ),
        (b'{"id": "c1", "status": "done", "pose": {}}', Ack("c1", "done", pose={})),
        (b'{"id": "c1", "status": "done", "pose": [1, 2]}', Ack("c1", "done")),
        (
            b'{"id": "c1", "status": "done", "pose": {"' + b"k" * 70 + b'": 1, "\\udc80": 2}}',
            Ack("c1", "done", pose={"k" * 64: 1.0, "\ufffd": 2.0}),
        ),
        (b'{"id": "c1", "status": "done", "interrupted": true}', Ack("c1", "done", interrupted=True)),
        (b'{"id": "c1", "status": "done", "interrupted": 1}', Ack("c1", "done")),
        (b'{"id": "' + b"i" * 64 + b'", "status": "done"}', Ack("i" * 64, "done")),
    ],
)
def test_acks_decode_whole(payload: bytes, expected: Ack) -> None:
    ack = decode_ack(payload)
    assert ack == expected
    assert (ack.pose is None) == (expected.pose is None)


def test_an_ack_pose_keeps_at_most_sixteen_joints() -> None:
    pose = {f"j{i}": i for i in range(20)}
    ack = decode_ack(json.dumps({"id": "c1", "status": "done", "pose": pose}).encode())
    assert ack.pose == {f"j{i}": float(i) for i in range(16)}


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"[]", "ack must be a JSON object"),
        (b'"x"', "ack must be a JSON object"),
        (b'{"status": "done"}', 'ack needs the command\'s "id"'),
        (b'{"id": "", "status": "done"}', 'ack needs the command\'s "id"'),
        (b'{"id": 7, "status": "done"}', 'ack needs the command\'s "id"'),
        (b'{"id": "' + b"i" * 65 + b'", "status": "done"}', 'ack needs the command\'s "id"'),
        (b'{"id": "c1", "status": "maybe"}', "ack status must be one of accepted, rejected, done"),
        (b'{"id": "c1"}', "ack status must be one of accepted, rejected, done"),
        (b'{"id": "\\udc80", "status": "done"}', "ack id is not valid text"),
        (b"{", "ack is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
    ],
)
def test_bad_acks_say_why(payload: bytes, message: str) -> None:
    with pytest.raises(ValueError) as err:
        decode_ack(payload)
    assert str(err.value) == message


@pytest.mark.parametrize(
    ("ack", "wire"),
    [
        (Ack("c1", "accepted"), b'{"id": "c1", "status": "accepted"}'),
        (Ack("c1", "rejected", "busy"), b'{"id": "c1", "status": "rejected", "reason": "busy"}'),
        (Ack("c1", "done", pose={"base": 45.126}), b'{"id": "c1", "status": "done", "pose": {"base": 45.13}}'),
        (Ack("c1", "done", pose={}), b'{"id": "c1", "status": "done", "pose": {}}'),
        (Ack("c1", "done", interrupted=True), b'{"id": "c1", "status": "done", "interrupted": true}'),
    ],
)
def test_acks_encode_whole(ack: Ack, wire: bytes) -> None:
    assert encode_ack(ack) == wire
