"""A simulated mobile app driving an arm through the hub's HTTP API, as a learner's phone app would.

It reads the arm's joints and limits from the API, opens the live WebSocket for its device, and sends
commands: random moves within the limits (some of them deliberately unsafe, to see the 422), named poses
and now and then a stop. It times every command from the POST to `accepted` and to `done` as the events
arrive on the WebSocket; the benchmark reads those figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp

log = logging.getLogger(__name__)


@dataclass
class Timing:
    posted: float
    expected_s: float = 0.0
    accepted: float | None = None
    finished: float | None = None
    state: str = "queued"
    hub_accepted_ms: float | None = None  # as the hub measured it: request received → device accepted
    hub_sent_ms: float | None = None  # request received → published to the device
    reason: str = ""  # why it failed, was rejected or timed out (as the hub says)
    interrupted: bool = False  # done, but cut short by a newer target: not a whole move


@dataclass
class AppStats:
    sent: int = 0
    refused: int = 0  # 422: unsafe or malformed, refused before anything was sent
    http_errors: dict[int, int] = field(default_factory=dict)  # any other refusal, by status (429: the rate)
    timings: dict[str, Timing] = field(default_factory=dict)


class PhoneApp:
    def __init__(self, base_url: str, device: str, rate_per_s: float, seed: int = 0, unsafe_share: float = 0.05):
        self.base_url = base_url.rstrip("/")
        self.device = device
        self.rate = rate_per_s
        self.rng = random.Random(seed)
        self.unsafe_share = unsafe_share
        self.stats = AppStats()
        self.ready = asyncio.Event()
        self.arm: dict[str, Any] = {}

    async def run(self, session: aiohttp.ClientSession, duration_s: float | None = None) -> None:
        async with session.get(f"{self.base_url}/api/devices/{self.device}/arm") as resp:
            resp.raise_for_status()
            self.arm = await resp.json()
        async with session.ws_connect(f"{self.base_url}/api/live", params={"device": self.device}) as ws:
            listener = asyncio.create_task(self._listen(ws))
            self.ready.set()
            try:
                # Apps are independent: each starts at its own moment, not all on the same tick (which would
                # turn a steady rate into bursts of one command per app at once).
                await asyncio.sleep(self.rng.uniform(0, 1 / self.rate))
                started = time.monotonic()
                n = 0
                while duration_s is None or time.monotonic() - started < duration_s:
                    await self._send(session, self._next_command())
                    n += 1
                    await asyncio.sleep(max(0.0, started + n / self.rate - time.monotonic()))
                await asyncio.sleep(2.0)  # let the last commands finish
            finally:
                listener.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await listener

    def _next_command(self) -> dict[str, Any]:
        joints = self.arm["joints"]
        roll = self.rng.random()
        if roll < self.unsafe_share:
            name, limits = self.rng.choice(list(joints.items()))
            return {"type": "move", "targets": {name: limits["max"] + 10}}
        if roll < 0.15 and self.arm["poses"]:
            return {"type": "pose", "name": self.rng.choice(list(self.arm["poses"]))}
        name, limits = self.rng.choice(list(joints.items()))
        return {"type": "move", "targets": {name: round(self.rng.uniform(limits["min"], limits["max"]), 1)}}

    async def _send(self, session: aiohttp.ClientSession, command: dict[str, Any]) -> None:
        posted = time.monotonic()
        async with session.post(f"{self.base_url}/api/devices/{self.device}/commands", json=command) as resp:
            body = await resp.json(content_type=None)
        if resp.status == 422:
            self.stats.refused += 1
            return
        if resp.status >= 300 or not isinstance(body, dict) or "id" not in body:
            self.stats.http_errors[resp.status] = self.stats.http_errors.get(resp.status, 0) + 1
            return
        self.stats.sent += 1
        timing = self.stats.timings.setdefault(body["id"], Timing(posted))
        timing.posted = posted
        timing.expected_s = body.get("expected_duration_s") or 0.0
        self._update(timing, body["state"])

    def _update(self, timing: Timing, state: str) -> None:
        now = time.monotonic()
        timing.state = state
        if state in ("accepted", "done") and timing.accepted is None:
            timing.accepted = now
        if state in ("done", "rejected", "timed_out", "failed"):
            timing.finished = now

    async def _listen(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        async for message in ws:
            if message.type != aiohttp.WSMsgType.TEXT:
                continue
            event = message.json()
            if event.get("type") == "command":
                record = event["command"]
                timing = self.stats.timings.setdefault(record["id"], Timing(time.monotonic()))
                if record.get("accepted_ms") is not None:
                    timing.hub_accepted_ms = record["accepted_ms"]
                    timing.hub_sent_ms = record.get("sent_ms")
                timing.reason = str(record.get("reason") or "")
                timing.interrupted = bool(record.get("interrupted"))
                self._update(timing, record["state"])
