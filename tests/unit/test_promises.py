"""Issue 12: README promises held without a service: the reconnect backoff (0.2 s doubling to 4 s, with jitter)
and the presence timeout's default (30 s). The others are held against a real hub (tests/integration)."""

from __future__ import annotations

import random

from hub.adapters.mqtt import RECONNECT_BACKOFF
from hub.config import HubConfig
from hub.pace import Backoff

# From the README.
PRESENCE_TIMEOUT_DEFAULT_S = 30.0
BACKOFF_FIRST_S, BACKOFF_CAP_S = 0.2, 4.0


# Presence: a device silent for hub.presence_timeout_s (30 s by default) is no longer present ----------------


def test_the_presence_timeout_is_30_s_by_default() -> None:
    assert HubConfig().presence_timeout_s == PRESENCE_TIMEOUT_DEFAULT_S


# Reconnecting: capped exponential backoff with jitter, 0.2 s doubling to 4 s ---------------------------------


def test_reconnect_backoff_starts_at_0_2_s_doubles_to_4_s_with_jitter() -> None:
    random.seed(12)
    backoff = RECONNECT_BACKOFF
    for attempt in range(30):
        ceiling = min(BACKOFF_CAP_S, BACKOFF_FIRST_S * 2**attempt)
        delays = [backoff.delay(attempt) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays), (attempt, min(delays), max(delays))
        assert max(delays) - min(delays) > ceiling / 4  # jittered, not one fixed delay
    assert isinstance(backoff, Backoff)
