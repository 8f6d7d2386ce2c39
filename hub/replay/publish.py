"""Replay into the lab: recorded readings published again over MQTT with their original spacing.

`plan` (pure) turns stored readings into (offset in s from the first reading, topic, payload): the fields as
stored, as a device's JSON, never a `ts`, so the hub stamps each one with its own receipt time, as for a live
device. `play` sends them open loop, each at its offset (divided by the speed) on a monotonic clock started at the
first one: a late send is not followed by later ones (no drift accumulates), it only makes that one late. The last
milliseconds before each send are spent watching the clock rather than asleep (see SPIN_S).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from devices.topics import DeviceRef
from hub.adapters.influx_read import FieldValue

SPEEDS = (0.5, 1.0, 2.0, 5.0, 10.0)  # what the CLI offers; `plan` takes any positive speed
PROGRESS_EVERY_S = 0.5
# An event loop's timer wakes up late (measured here: 4 ms on average, up to 10 ms on a loaded 2-core machine),
# which alone would eat the ±10 ms the spacing may be off by. So each send sleeps until SPIN_S before it is due,
# then watches the clock: at most SPIN_S of one core per reading (1 % at 1 reading/s).
SPIN_S = 0.012


@dataclass(frozen=True, slots=True)
class Send:
    at_s: float  # seconds after the first send
    target: str  # the device key it is published as
    topic: str
    payload: bytes


def payload(fields: Mapping[str, FieldValue]) -> bytes:
    """A reading as a device publishes it: its fields as JSON, without any timestamp key."""
    return json.dumps({k: v for k, v in fields.items() if k not in ("ts", "time", "timestamp")}).encode()


def plan(
    recorded: Iterable[tuple[DeviceRef, int, Mapping[str, FieldValue]]],
    speed: float = 1.0,
    retarget: Mapping[str, DeviceRef] | None = None,
) -> list[Send]:
    """(recorded device, time in ns, fields) → what to send when, oldest first. `retarget` maps a recorded
    device's key to the device it is published as (`--as`)."""
    if not speed > 0:
        raise ValueError("speed must be above 0")
    rows = sorted(recorded, key=lambda r: (r[1], r[0].key))
    if not rows:
        return []
    first = rows[0][1]
    sends = []
    for ref, t_ns, fields in rows:
        target = (retarget or {}).get(ref.key, ref)
        sends.append(Send((t_ns - first) / 1e9 / speed, target.key, target.topic("telemetry"), payload(fields)))
    return sends


Publish = Callable[[Send], bool]  # queue one message (False: not connected)
Progress = Callable[[int, int, float, float], None]  # (sent, total, elapsed s, total s)


async def play(
    sends: list[Send],
    publish: Publish,
    progress: Progress | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int:
    """Send each at its offset from the first send; returns how many were queued (a refused one is counted out).
    Open loop: the schedule is fixed at the start, so one late send does not shift the others."""
    total_s = sends[-1].at_s if sends else 0.0
    start = clock()
    sent = 0
    last_report = -PROGRESS_EVERY_S
    for i, send in enumerate(sends):
        due = start + send.at_s
        if due - clock() > SPIN_S:
            await asyncio.sleep(due - clock() - SPIN_S)
        while clock() < due:  # the last moments on the clock itself: a timer wakes up milliseconds late
            pass
        if publish(send):
            sent += 1
        elapsed = clock() - start
        if progress is not None and (elapsed - last_report >= PROGRESS_EVERY_S or i == len(sends) - 1):
            progress(sent, len(sends), elapsed, total_s)
            last_report = elapsed
    return sent
