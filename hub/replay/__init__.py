"""Replays of demos and device windows: a timeline of what InfluxDB holds (`timeline`, pure), read through the one
`Reader` (`source`); `hub.web.replay` serves it and `labhub replay` publishes its readings again over MQTT."""

from hub.replay.source import MAX_WINDOW_S, check_window, device_timeline, session_timeline
from hub.replay.timeline import DeviceData, Frame, Timeline, arm_pose, as_json, build, card_values, command_log

__all__ = [
    "MAX_WINDOW_S",
    "DeviceData",
    "Frame",
    "Timeline",
    "arm_pose",
    "as_json",
    "build",
    "card_values",
    "check_window",
    "command_log",
    "device_timeline",
    "session_timeline",
]
