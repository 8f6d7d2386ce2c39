"""The watchdog's measures, tick by tick, against a fake MQTT client: lag, stalls, the broker's drops."""

from __future__ import annotations

import asyncio

import pytest

from hub.watchdog import BROKER_DROPPED, Watchdog


class FakeIntake:
    def __init__(self) -> None:
        self.handled = 0
        self.paused = False
        self.connected = asyncio.Event()
        self.connected.set()
        self.bytes_waiting = 0

    def waiting(self) -> int:
        return self.bytes_waiting


def test_the_lag_is_the_worst_of_the_last_five_seconds() -> None:
    dog, intake = Watchdog(), FakeIntake()
    dog.tick(0.0, 0.7, intake)
    dog.tick(1.0, 0.1, intake)
    assert dog.lag_s == 0.7 and dog.problems == ["event loop lagging: 700 ms"]
    dog.tick(5.5, 0.2, intake)  # the 0.7 s is more than 5 s old
    assert dog.lag_s == 0.2 and dog.problems == []


@pytest.mark.parametrize(
    ("paused", "connected", "waiting", "handled", "stalled"),
    [
        (False, True, 100, False, True),  # bytes wait, nothing handled: stalled
        (False, True, 100, True, False),  # messages handled: moving
        (False, True, 0, False, False),  # nothing waits: idle, not stalled
        (True, True, 100, False, False),  # paused on purpose (backpressure)
        (False, False, 100, False, False),  # not connected
    ],
)
def test_intake_is_stalled_only_when_bytes_wait_and_none_is_handled(
    paused: bool, connected: bool, waiting: int, handled: bool, stalled: bool
) -> None:
    dog, intake = Watchdog(), FakeIntake()
    intake.paused, intake.bytes_waiting = paused, waiting
    if not connected:
        intake.connected.clear()
    for second in range(4):
        intake.handled += handled
        dog.tick(float(second), 0.0, intake)
    assert (dog.stalled_s, dog.stalls) == ((3.0, 1) if stalled else (0.0, 0))
    assert ("intake stalled: messages waiting, none handled for 3 s" in dog.problems) is stalled


def test_a_rise_in_the_brokers_drops_is_an_alarm() -> None:
    dog = Watchdog()
    dog.broker_stat(BROKER_DROPPED, b"5")  # the first figure: a baseline, not an alarm
    assert dog.broker_dropped == 5 and dog.broker_alarm() is None
    dog.broker_stat("$SYS/broker/uptime", b"9")
    dog.broker_stat(BROKER_DROPPED, b"not a number")
    assert dog.broker_dropped == 5 and dog.broker_alarm() is None
    dog.broker_stat(BROKER_DROPPED, b"8")
    assert dog.broker_alarm() == "the broker dropped messages in the last minute (8 in all)"
