"""The replay's timeline (pure): frames merged in order, the state of a device at an instant, the JSON the page
reads, and the plan `labhub replay` publishes (offsets, payloads without a timestamp, retargeting, pacing)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from devices.arm import ProfileError, load_profile, load_profiles
from devices.topics import DeviceRef
from hub.replay import DeviceData, arm_pose, as_json, build, card_values, command_log
from hub.replay.publish import Send, plan, play
from hub.replay.timeline import last_reading, online

S = 1_000_000_000
ARM = "c/ana/arm1"
AIR = "c/ana/aq1"
MEARM = load_profiles()["mearm"]


def demo() -> list[DeviceData]:
    arm = DeviceData(
        ARM,
        "arm",
        readings=[(10 * S, {"base": 90.0, "shoulder": 90.0}), (12 * S, {"base": 120.0}), (14 * S, {"elbow": 60.0})],
        presence=[(5 * S, True), (13 * S, False)],  # the status before the window, then one inside
        commands=[(11 * S, {"type": "move", "state": "done", "accepted_ms": 12.0, "finished_ms": 950.0, "id": "c1"})],
        rejections=[(12 * S, "bad_json")],
        diagnoses=[(1 * S, {"finding": "clock_not_set"}), (13 * S, {"finding": "none"})],
        profile=MEARM,
    )
    air = DeviceData(AIR, "air_quality", readings=[(10 * S, {"co2_ppm": 400.0}), (12 * S, {"co2_ppm": 420.0})])
    return [arm, air]


def test_frames_are_ordered_by_time_then_type_then_device() -> None:
    timeline = build(10 * S, 20 * S, demo())
    got = [(f.t_ns // S, f.type, f.device) for f in timeline.frames]
    assert got == [
        (10, "presence", ARM),
        (10, "reading", AIR),  # devices by name: aq1 before arm1
        (10, "reading", ARM),
        (10, "diagnosis", ARM),
        (11, "command", ARM),
        (12, "reading", AIR),
        (12, "reading", ARM),
        (12, "rejection", ARM),
        (13, "presence", ARM),
        (13, "diagnosis", ARM),
        (14, "reading", ARM),
    ]
    first = timeline.frames[0]
    assert first.data == {"online": True, "since_ns": 5 * S}  # the status from before, placed at the start


def test_frames_outside_the_window_are_left_out() -> None:
    timeline = build(11 * S, 13 * S, demo())
    assert all(11 * S <= f.t_ns < 13 * S for f in timeline.frames)
    assert [f.type for f in timeline.frames if f.device == AIR] == ["reading"]


@pytest.mark.parametrize(
    ("t", "base", "shoulder", "elbow"),
    [
        (9, 90.0, 90.0, 90.0),
        (10, 90.0, 90.0, 90.0),
        (12, 120.0, 90.0, 90.0),
        (13.9, 120.0, 90.0, 90.0),
        (19, 120.0, 90.0, 60.0),
    ],
)
def test_arm_pose_at_an_instant_is_the_home_pose_then_each_joints_last_angle(
    t: float, base: float, shoulder: float, elbow: float
) -> None:
    timeline = build(10 * S, 20 * S, demo())
    pose = arm_pose(timeline, ARM, int(t * S), MEARM)
    assert pose == {"base": base, "shoulder": shoulder, "elbow": elbow, "gripper": MEARM.joints["gripper"].home}


def test_card_values_presence_and_command_log_at_an_instant() -> None:
    timeline = build(10 * S, 20 * S, demo())
    assert card_values(timeline, AIR, 11 * S) == {"co2_ppm": 400.0}
    assert card_values(timeline, AIR, 12 * S) == {"co2_ppm": 420.0}
    assert card_values(timeline, ARM, 9 * S) == {}
    assert last_reading(timeline, ARM, 13 * S) is not None and last_reading(timeline, ARM, 13 * S).t_ns == 12 * S  # type: ignore[union-attr]
    assert (online(timeline, ARM, 12 * S), online(timeline, ARM, 13 * S), online(timeline, AIR, 15 * S)) == (
        True,
        False,
        None,
    )
    log = command_log(timeline, ARM, 12 * S)
    assert [(f.type, f.data.get("state"), f.data.get("code")) for f in log] == [
        ("command", "done", None),
        ("rejection", None, "bad_json"),
    ]
    assert log[0].data["finished_ms"] == 950.0 and log[0].data["command"] == "move"


def test_too_many_frames_are_cut_and_say_so() -> None:
    timeline = build(10 * S, 20 * S, demo(), max_frames=3)
    assert len(timeline.frames) == 3 and timeline.truncated
    assert card_values(timeline, ARM, 19 * S) == {"base": 90.0, "shoulder": 90.0}


def test_json_carries_the_devices_the_arm_drawing_and_the_frames() -> None:
    body = json.loads(json.dumps(as_json(build(10 * S, 20 * S, demo()))))
    assert (body["start_ns"], body["end_ns"], body["truncated"]) == (10 * S, 20 * S, False)
    air, arm = body["devices"]
    assert (arm["device"], arm["kind"], arm["fields"]) == (ARM, "arm", ["base", "shoulder", "elbow"])
    assert arm["arm"]["links"] == {"upper": 80.0, "fore": 80.0, "hand": 50.0}
    assert arm["arm"]["joints"]["shoulder"] == {"min": 30.0, "max": 150.0, "home": 90.0}
    assert (air["device"], air["arm"], air["fields"]) == (AIR, None, ["co2_ppm"])
    assert body["frames"][4] == {
        "t_ns": 11 * S,
        "device": ARM,
        "type": "command",
        "data": {"command": "move", "state": "done", "id": "c1", "accepted_ms": 12.0, "finished_ms": 950.0},
    }


def test_plan_keeps_the_spacing_drops_timestamps_and_retargets() -> None:
    ref = DeviceRef.parse(AIR)
    recorded = [(ref, 12 * S + S // 2, {"co2_ppm": 420.0, "ts": 5}), (ref, 10 * S, {"co2_ppm": 400.0})]
    fresh = DeviceRef.parse("c/ana/new1")
    sends = plan(recorded, 2.0, {AIR: fresh})
    assert sends == [
        Send(0.0, fresh.key, "lab/c/ana/new1/telemetry", b'{"co2_ppm": 400.0}'),
        Send(1.25, fresh.key, "lab/c/ana/new1/telemetry", b'{"co2_ppm": 420.0}'),
    ]
    with pytest.raises(ValueError, match="speed"):
        plan(recorded, 0)


def test_play_sends_each_at_its_offset_on_one_clock_without_drift() -> None:
    now = [100.0]
    sent_at: list[float] = []
    late = iter([0.004, 0.030, 0.004, 0.004])  # the second wake-up 30 ms late, the others 4 ms

    async def fake_sleep(delay: float) -> None:
        now[0] += delay + next(late)

    def clock() -> float:
        now[0] += 0.0005  # reading the clock takes time
        return now[0]

    sends = [Send(i * 0.5, "d", "t", b"{}") for i in range(5)]

    async def run() -> int:
        real = asyncio.sleep
        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        try:
            return await play(sends, lambda s: sent_at.append(now[0]) is None, clock=clock)
        finally:
            asyncio.sleep = real  # type: ignore[assignment]

    assert asyncio.run(run()) == 5
    start = sent_at[0]
    lateness_ms = [(t - start - s.at_s) * 1000 for t, s in zip(sent_at, sends, strict=True)]
    # On time to the clock's grain (1 ms here), except the one woken 30 ms late (18 ms past the spin); never a sum.
    assert all(abs(got - want) <= 1.0 for got, want in zip(lateness_ms, [0, 0, 18, 0, 0], strict=True)), lateness_ms


@pytest.mark.parametrize(
    ("links", "error"),
    [
        ("upper = 80.0\nfore = 80", None),
        ("upper = -1.0", "links.upper"),
        ('fore = "x"', "links.fore"),
        ("hand = true", "links.hand"),
    ],
)
def test_arm_profiles_read_their_link_lengths(tmp_path: Path, links: str, error: str | None) -> None:
    path = tmp_path / "arm.toml"
    path.write_text(
        'name = "two"\n[joints.base]\nmin = 0.0\nmax = 180.0\nmax_speed = 90.0\nhome = 90.0\n[links]\n' + links + "\n"
    )
    if error is None:
        assert dict(load_profile(path).links) == {"upper": 80.0, "fore": 80.0}
    else:
        with pytest.raises(ProfileError, match=error):
            load_profile(path)
