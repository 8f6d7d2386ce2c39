"""Boundaries around each unit of outside input. Pure but for logging.

A classroom sends everything a broken firmware can send. Each unit of input (an MQTT message, an HTTP
request, a WebSocket message, a serial line) is handled inside one boundary: whatever escapes its handler
is counted by surface and error type, logged once per source and minute (control characters escaped, so a
device cannot forge log lines), and the rest of the input keeps flowing. (A spool record that fails its
checks is skipped and counted by the spool itself.) The text rules are devices.text's.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

from devices.text import valid_text

log = logging.getLogger(__name__)

LOG_EVERY_S = 60.0  # one log line per (surface, source) and minute; every failure is counted
MAX_SOURCES = 10_000  # sources remembered for log rate limiting (then the memory starts afresh)

# Surfaces: where outside input enters the hub (metric label values; a closed vocabulary).
MQTT = "mqtt"
HTTP = "http"
WEBSOCKET = "websocket"
SERIAL = "serial"


_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(32), *range(127, 160))} | {10: "\\n", 13: "\\r", 9: "\\t"}


def escape(text: object, limit: int = 200) -> str:
    """Text safe for one log line: control characters and lone surrogates escaped, at most `limit` characters."""
    raw = text if isinstance(text, str) else str(text)
    out = valid_text(raw[:limit].translate(_CONTROLS))
    return out + ("…" if len(raw) > limit else "")


def source_of(topic: str) -> str:
    """Who sent an MQTT message, for the boundary's log: the device part of its topic (escaped when logged)."""
    return "/".join(topic.split("/", 4)[:4])


class ServerLogFilter(logging.Filter):
    """aiohttp logs a request it cannot even parse (a request line over 8 KiB, a broken header) with a
    traceback, before any handler or middleware runs, and answers 400 itself: such errors are counted at the
    HTTP boundary instead (and logged there once a minute), so no client can fill the log."""

    def __init__(self, boundaries: Boundaries, surface: str) -> None:
        super().__init__()
        self._boundaries = boundaries
        self._surface = surface

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if record.levelno >= logging.ERROR and error is not None:
            self._boundaries.failed(self._surface, "the HTTP parser", error)
            return False
        return True


class Boundaries:
    """Counts and logs what escaped a handler; one instance per hub."""

    def __init__(self) -> None:
        self.failures: Counter[tuple[str, str]] = Counter()  # (surface, error type) → count
        self._logged: dict[tuple[str, str], float] = {}

    @property
    def total(self) -> int:
        return sum(self.failures.values())

    def _due(self, key: tuple[str, str]) -> bool:
        """Is a log line about `key` due (none in the last minute)? If so, it counts as logged now."""
        now = time.monotonic()
        if now - self._logged.get(key, -1e18) < LOG_EVERY_S:
            return False
        if len(self._logged) >= MAX_SOURCES:
            self._logged.clear()
        self._logged[key] = now
        return True

    def failed(self, surface: str, source: str, err: BaseException) -> None:
        """Record one failure of a unit of input from `source` (a device key, a route, a port)."""
        self.failures[(surface, type(err).__name__)] += 1
        first = (surface, source) not in self._logged
        if not self._due((surface, source)):
            return
        log.error(
            "%s input from %s failed inside the hub (%s: %s); it was dropped and the rest goes on",
            surface,
            escape(source, 120),
            type(err).__name__,
            escape(err),
            exc_info=err if first else None,  # the traceback once per source
        )

    def warn(self, source: str, message: str, *args: object) -> None:
        """Log a warning about `source`'s input at most once a minute (the caller counts the event)."""
        if self._due(("warn", source)):
            log.warning(message, *(escape(a) if isinstance(a, (str, BaseException)) else a for a in args))

    @contextmanager
    def guard(self, surface: str, source: str) -> Iterator[None]:
        """`with boundaries.guard(MQTT, key): handle(message)` — nothing escapes; failures are recorded."""
        try:
            yield
        except Exception as err:  # the boundary: anything a handler lets through stops here
            self.failed(surface, source, err)
