"""Presence: is a device there, and how fast does it send.

A device is present while it is online (its last will not published) and was heard from within the presence
timeout; its message rate is a moving average (the latest second weighs 0.3), sampled every second. Changes are announced at once (to live
views), and watched devices' rates every few seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping

from devices.topics import DeviceRef
from hub.ingest.device_table import DeviceState

log = logging.getLogger(__name__)

EVERY_S = 1.0
RATES_EVERY = 5  # ticks between two rate announcements for watched devices


class Presence:
    def __init__(
        self,
        devices: Mapping[DeviceRef, DeviceState],
        timeout_s: float,
        announce: Callable[[DeviceRef, dict[str, object]], None],
        watched: Callable[[DeviceRef], bool],
    ) -> None:
        self._devices = devices
        self._timeout_s = timeout_s
        self._announce = announce
        self._watched = watched
        self._previous: dict[DeviceRef, int] = {}  # messages received at the last tick
        self._tick = 0

    def update(self, span_s: float, now_ns: int) -> None:
        """One tick, `span_s` after the last: rates, and presence from the last will plus the timeout."""
        self._tick += 1
        timeout_ns = int(self._timeout_s * 1e9)
        previous = self._previous
        for ref, state in list(self._devices.items()):
            received = state.received
            state.rate_per_s = 0.7 * state.rate_per_s + 0.3 * (received - previous.get(ref, received)) / span_s
            previous[ref] = received
            present = state.online is not False and now_ns - state.last_seen_ns < timeout_ns
            if present != state.present:
                state.present = present
                if not present and state.online is not False:
                    log.info("%s: nothing heard for %.0f s", ref.key, self._timeout_s)
                self._announce(ref, state.presence())
            elif self._tick % RATES_EVERY == 0 and self._watched(ref):  # rates for live views, every 5 s
                self._announce(ref, state.presence())

    async def run(self) -> None:
        last = time.monotonic()
        while True:
            await asyncio.sleep(EVERY_S)
            now = time.monotonic()
            span = max(1e-3, now - last)
            last = now
            self.update(span, time.time_ns())
