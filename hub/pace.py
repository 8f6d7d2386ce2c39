"""How fast things may go: token buckets for rates, capped backoff for retries, unique timestamps.

One of each for the whole hub: the API's per-token limits, a device's error replies and the serial bridge's error
lines share `TokenBucket`; the MQTT reconnect, the writer's retries and the serial port's reopening share `Backoff`;
every evidence series that must not put two points on one timestamp shares `Stamper`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field


@dataclass(slots=True)
class TokenBucket:
    """`rate` events a second on average, bursts of `burst`; time is the caller's (seconds, any monotonic unit)."""

    rate: float
    burst: float
    tokens: float = field(init=False)
    at: float | None = None  # the last call's time; a new bucket is full

    def __post_init__(self) -> None:
        self.tokens = self.burst

    def wait(self, now: float) -> float:
        """0 and take a token if one is there; otherwise how long until one is (nothing taken)."""
        if self.at is not None:
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate if self.rate > 0 else math.inf  # rate 0: the burst, then never

    def take(self, now: float) -> bool:
        """Whether this event may go (a token was there and is now spent)."""
        return self.wait(now) == 0.0


MAX_KEYS = 10_000  # keys are callers' names (tokens, devices): a flood of new ones restarts the table


@dataclass(slots=True)
class RateLimiter:
    """A token bucket per key (an API token, a device): `rate` a second, bursts of `burst`."""

    rate: float
    burst: float
    buckets: dict[str, TokenBucket] = field(default_factory=dict)

    def check(self, key: str, now: float) -> float:
        """0 if this event may go; otherwise how many seconds to wait (for Retry-After)."""
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_KEYS:
                self.buckets.clear()
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst)
        return bucket.wait(now)


@dataclass(frozen=True, slots=True)
class Backoff:
    """Capped exponential backoff; with jitter, each delay is drawn in [delay/2, delay] so clients spread out."""

    first_s: float = 0.2
    cap_s: float = 4.0
    jitter: bool = True

    def delay(self, attempt: int) -> float:
        base = min(self.cap_s, self.first_s * (2 ** min(attempt, 30)))
        return random.uniform(base / 2, base) if self.jitter else base


@dataclass(slots=True)
class Stamper:
    """Strictly increasing timestamps: InfluxDB keeps one point per series and time, so equal stamps would merge."""

    stride_ns: int = 1
    last_ns: int = 0

    def stamp(self, time_ns: int) -> int:
        if time_ns <= self.last_ns:
            time_ns = self.last_ns + self.stride_ns
        self.last_ns = time_ns
        return time_ns
