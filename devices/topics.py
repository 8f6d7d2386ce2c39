"""The MQTT topic contract: `lab/<cohort>/<learner>/<device>/<channel>[/<field>]`. Pure functions."""

from __future__ import annotations

import re
from dataclasses import dataclass

ROOT = "lab"
# Channels a device publishes on, and the ones the hub answers on.
DEVICE_CHANNELS = frozenset({"telemetry", "status", "ack"})
HUB_CHANNELS = frozenset({"errors", "commands"})
# Identifiers become InfluxDB tag values and topic levels: keep them boring.
SEGMENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,31}")


class TopicError(ValueError):
    """A topic that is not part of the contract."""


@dataclass(frozen=True, slots=True)
class DeviceRef:
    """Which device, as named by its topic."""

    cohort: str
    learner: str
    device: str

    @property
    def key(self) -> str:
        return f"{self.cohort}/{self.learner}/{self.device}"

    @property
    def tags(self) -> dict[str, str]:
        """The InfluxDB tags that name this device in every series (readings, presence, commands, rejections)."""
        return {"cohort": self.cohort, "learner": self.learner, "device": self.device}

    def topic(self, channel: str) -> str:
        return f"{ROOT}/{self.cohort}/{self.learner}/{self.device}/{channel}"

    @classmethod
    def parse(cls, key: str) -> DeviceRef:
        """`cohort/learner/device` → DeviceRef, as written in configs and on the command line."""
        parts = key.split("/")
        if len(parts) != 3:
            raise TopicError(f"device id {key!r} must be cohort/learner/device")
        for part in parts:
            check_segment(part)
        return cls(*parts)


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    ref: DeviceRef
    channel: str
    field: str | None = None


def check_segment(part: str) -> None:
    if not SEGMENT_RE.fullmatch(part):  # fullmatch: `$` would let a trailing newline through
        raise TopicError(
            f"{part!r} is not a valid name: use 1–32 letters, digits, '_' or '-', starting with a letter or digit"
        )


def parse_topic(topic: str) -> ParsedTopic:
    """Split a device topic; TopicError says which level is wrong."""
    parts = topic.split("/")
    if len(parts) not in (5, 6) or parts[0] != ROOT:
        raise TopicError(f"topic {topic!r} is not lab/<cohort>/<learner>/<device>/<channel>")
    for part in parts[1:4]:
        check_segment(part)
    channel = parts[4]
    if channel not in DEVICE_CHANNELS and channel not in HUB_CHANNELS:
        raise TopicError(f"unknown channel {channel!r} in {topic!r}")
    field = None
    if len(parts) == 6:
        if channel == "commands" and parts[5] in ("request", "result"):
            field = parts[5]
        elif channel != "telemetry":
            raise TopicError(
                f"only telemetry (…/telemetry/<field>) and commands/request|result have a sixth level: {topic!r}"
            )
        else:
            field = parts[5]
    return ParsedTopic(DeviceRef(parts[1], parts[2], parts[3]), channel, field)


def subscriptions(share: str | None = None) -> list[str]:
    """What the hub listens to. With `share`, workers split telemetry and command requests through an MQTT
    shared subscription (each message goes to one worker of the group); every worker still sees every
    status message and every acknowledgement (the worker that sent a command is the one that knows it)."""
    prefix = f"$share/{share}/" if share else ""
    return [
        f"{prefix}{ROOT}/+/+/+/telemetry",
        f"{prefix}{ROOT}/+/+/+/telemetry/+",
        f"{prefix}{ROOT}/+/+/+/commands/request",
        f"{ROOT}/+/+/+/status",
        f"{ROOT}/+/+/+/ack",
    ]
