"""The hub's watchdog: is the event loop on time, does intake move, has the broker dropped messages.

Every device's answers wait as long as the event loop is late, so its lag (how late a timer fires; the worst of
the last LAG_WINDOW_S) is measured all the time, and past LAG_DEGRADED_S the hub says it is degraded. Intake is
stalled when bytes wait from the broker and no message was handled for STALL_S. The broker's own count of
messages it dropped (queue or in-flight limits, from `$SYS`) raises an alarm for a minute on any increase. And a
step of stopping that takes longer than SLOW_STOP_S is said while it lasts, naming what the hub waits for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"
WATCH_EVERY_S = 0.1  # the watchdog's tick: how late it wakes is the event loop's lag
LAG_WINDOW_S = 5.0  # the lag reported is the worst of this window
LAG_DEGRADED_S = 0.5  # worse than this, /healthz says degraded: every device's answers wait that long
STALL_S = 2.0  # messages waiting and none handled for this long: intake is stalled
ALARM_S = 60.0  # how long a broker drop keeps the hub degraded
SLOW_STOP_S = 3.0  # a step of stopping that takes longer is logged while it lasts


class Intake(Protocol):
    """What the watchdog reads of the MQTT client."""

    @property
    def handled(self) -> int: ...  # messages whose handler returned
    @property
    def paused(self) -> bool: ...
    @property
    def connected(self) -> asyncio.Event: ...
    def waiting(self) -> int: ...  # bytes received and not yet handled


@dataclass(slots=True)
class Watchdog:
    """What the watchdog measured: the event loop's lag, whether intake moves, what the broker dropped."""

    lag_s: float = 0.0  # the worst lag over the last LAG_WINDOW_S
    stalled_s: float = 0.0  # how long messages have waited with none handled (0: intake moves)
    stalls: int = 0  # times intake was found stalled
    broker_dropped: int | None = None  # None: the broker has not said
    broker_drop_alarm_until: float = 0.0
    _window: deque[tuple[float, float]] = field(default_factory=deque)  # (when, how late)
    _handled: int = 0  # messages handled at the last move
    _moved_at: float = 0.0

    @property
    def problems(self) -> list[str]:
        out = []
        if self.lag_s > LAG_DEGRADED_S:
            out.append(f"event loop lagging: {self.lag_s * 1000:.0f} ms")
        if self.stalled_s >= STALL_S:
            out.append(f"intake stalled: messages waiting, none handled for {self.stalled_s:.0f} s")
        return out

    def broker_alarm(self) -> str | None:
        """Why the hub is degraded because of the broker's drops, while the alarm lasts."""
        if time.monotonic() < self.broker_drop_alarm_until:
            return f"the broker dropped messages in the last minute ({self.broker_dropped} in all)"
        return None

    def broker_stat(self, topic: str, payload: bytes) -> None:
        """The broker's own count of messages it dropped (queue or in-flight limits): any increase is an alarm."""
        if topic != BROKER_DROPPED:
            return
        try:
            dropped = int(payload)
        except ValueError:
            return
        if self.broker_dropped is not None and dropped > self.broker_dropped:
            self.broker_drop_alarm_until = time.monotonic() + ALARM_S
            log.error(
                "ALARM: the broker dropped %d messages (%d in all): a client's queue or in-flight limit was hit",
                dropped - self.broker_dropped,
                dropped,
            )
        self.broker_dropped = dropped

    def tick(self, now: float, late_s: float, intake: Intake) -> None:
        """One observation at `now`, the timer having fired `late_s` late."""
        window = self._window
        window.append((now, late_s))
        while window[0][0] < now - LAG_WINDOW_S:
            window.popleft()
        self.lag_s = max(lag for _, lag in window)
        idle = intake.paused or not intake.connected.is_set() or not intake.waiting()
        if intake.handled != self._handled or idle:
            self._handled, self._moved_at = intake.handled, now
            self.stalled_s = 0.0
            return
        was_stalled = self.stalled_s >= STALL_S
        self.stalled_s = now - self._moved_at
        if self.stalled_s >= STALL_S and not was_stalled:
            self.stalls += 1
            log.error("intake stalled: %d bytes wait from the broker, no message handled for 2 s", intake.waiting())

    async def run(self, intake: Intake) -> None:
        """Event-loop lag (how late a timer fires) and intake stalls (bytes wait, no message is handled)."""
        self._handled, self._moved_at = intake.handled, time.monotonic()
        while True:
            before = time.monotonic()
            await asyncio.sleep(WATCH_EVERY_S)
            now = time.monotonic()
            self.tick(now, max(0.0, now - before - WATCH_EVERY_S), intake)


@contextlib.contextmanager
def slow_step(what: str) -> Iterator[None]:
    """Says, while it lasts, that a step of stopping is slow (a stalled fsync, a broker that does not answer)."""
    late = asyncio.get_running_loop().call_later(
        SLOW_STOP_S, log.warning, "stopping: still %s after %.0f s", what, SLOW_STOP_S
    )
    try:
        yield
    finally:
        late.cancel()
