"""Presence and rates, one tick at a time: what is announced, and when."""

from __future__ import annotations

from collections import deque

import pytest

from devices.topics import DeviceRef
from hub.ingest.device_table import DeviceState
from hub.ingest.presence import Presence
from hub.pace import Stamper, TokenBucket

S = 1_000_000_000


def state(name: str, online: bool | None, last_seen_s: float, present: bool = False) -> DeviceState:
    made = DeviceState(
        ref=DeviceRef("c", "l", name),
        kind=None,
        language="en",
        declared=True,
        prefix="m",
        inspector=deque(),
        error_replies=TokenBucket(1.0, 1.0),
        stamps=Stamper(),
        events=Stamper(),
    )
    made.online, made.last_seen_ns, made.present = online, int(last_seen_s * S), present
    return made


# (online, last heard (s), present before) → present after, announced?
CASES = [
    (True, 95.0, False, True, True),  # heard 5 s ago: comes in
    (True, 95.0, True, True, False),  # still there: nothing to say
    (True, 60.0, True, False, True),  # silent 40 s > 30 s: gone
    (None, 95.0, False, True, True),  # no status yet, but it sends: there
    (False, 99.0, True, False, True),  # its last will: gone at once, however recent
    (False, 99.0, False, False, False),
]


@pytest.mark.parametrize(("online", "seen_s", "before", "after", "announced"), CASES)
def test_presence_from_the_last_will_and_the_timeout(
    online: bool | None, seen_s: float, before: bool, after: bool, announced: bool
) -> None:
    device = state("d", online, seen_s, before)
    said: list[tuple[DeviceRef, dict[str, object]]] = []
    Presence({device.ref: device}, 30.0, lambda ref, p: said.append((ref, p)), lambda ref: False).update(1.0, 100 * S)
    assert device.present is after
    assert said == ([(device.ref, device.presence())] if announced else [])


def test_rates_are_a_moving_average_and_watched_devices_hear_them_every_five_ticks() -> None:
    device = state("d", True, 100.0, present=True)
    said: list[DeviceRef] = []
    presence = Presence({device.ref: device}, 30.0, lambda ref, p: said.append(ref), lambda ref: True)
    presence.update(1.0, 100 * S)  # the first tick learns the count
    assert device.rate_per_s == 0.0
    for _ in range(4):
        device.received += 10
        presence.update(1.0, 100 * S)
    assert device.rate_per_s == pytest.approx(10 * (1 - 0.7**4))
    assert said == [device.ref]  # the fifth tick
    assert device.presence() == {"online": True, "present": True, "last_seen_ns": 100 * S, "rate_per_s": 7.6}
    ticks = []
    for tick in range(6, 16):
        presence.update(1.0, 100 * S)
        ticks += [tick] * len(said[1:])
        del said[1:]
    assert ticks == [10, 15]
