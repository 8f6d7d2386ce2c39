"""Live events for WebSocket clients: a device's readings, presence and command events.

Each client has a small bounded queue: a slow phone never stalls the hub or the other clients; when its
queue is full the oldest event is dropped (and counted), so it always catches up with the present.
Only devices that someone watches cost anything on the ingest path (one flag check per reading).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from devices.topics import DeviceRef

log = logging.getLogger(__name__)

K = TypeVar("K")  # what a watcher index is keyed by: a device or a cohort
CLIENT_QUEUE = 256


@dataclass(eq=False)
class LiveClient:
    devices: frozenset[DeviceRef]
    cohorts: frozenset[str] = frozenset()  # every device of these cohorts, including ones that appear later
    queue: asyncio.Queue[dict[str, Any]] = field(default_factory=lambda: asyncio.Queue(CLIENT_QUEUE))
    dropped: int = 0

    def push(self, event: dict[str, Any]) -> None:
        if self.queue.full():
            self.queue.get_nowait()  # the oldest goes: a live view wants the present
            self.dropped += 1
        self.queue.put_nowait(event)


class Live:
    def __init__(self) -> None:
        self.watchers: dict[DeviceRef, set[LiveClient]] = {}
        self.cohort_watchers: dict[str, set[LiveClient]] = {}
        self.clients: set[LiveClient] = set()
        self.dropped_gone = 0  # events dropped for clients that have gone since

    def add(self, devices: frozenset[DeviceRef], cohorts: frozenset[str] = frozenset()) -> LiveClient:
        client = LiveClient(devices, cohorts)
        self.clients.add(client)
        for ref in devices:
            self.watchers.setdefault(ref, set()).add(client)
        for cohort in cohorts:
            self.cohort_watchers.setdefault(cohort, set()).add(client)
        return client

    def remove(self, client: LiveClient) -> None:
        if client in self.clients:
            self.dropped_gone += client.dropped
        self.clients.discard(client)
        for ref in client.devices:
            _forget(self.watchers, ref, client)
        for cohort in client.cohorts:
            _forget(self.cohort_watchers, cohort, client)

    @property
    def dropped(self) -> int:
        return self.dropped_gone + sum(c.dropped for c in self.clients)

    def watched(self, ref: DeviceRef) -> bool:
        return ref in self.watchers or ref.cohort in self.cohort_watchers

    def publish(self, ref: DeviceRef, event: dict[str, Any]) -> None:
        clients = self.watchers.get(ref, set())
        by_cohort = self.cohort_watchers.get(ref.cohort)
        if by_cohort:
            clients = clients | by_cohort
        for client in clients:
            client.push(event)

    def reading(self, ref: DeviceRef, fields: Mapping[str, object], time_ns: int) -> None:
        self.publish(ref, {"type": "reading", "device": ref.key, "time_ns": time_ns, "fields": dict(fields)})

    def presence(self, ref: DeviceRef, summary: Mapping[str, object]) -> None:
        self.publish(ref, {"type": "presence", "device": ref.key, "at_ns": time.time_ns(), **summary})

    def rejection(self, ref: DeviceRef, problem: Mapping[str, object]) -> None:
        self.publish(ref, {"type": "rejection", "device": ref.key, "at_ns": time.time_ns(), "problem": dict(problem)})

    def command(self, ref: DeviceRef, record: Mapping[str, object]) -> None:
        self.publish(ref, {"type": "command", "device": ref.key, "command": dict(record)})


def _forget(index: dict[K, set[LiveClient]], key: K, client: LiveClient) -> None:
    """`client` no longer watches `key`; a key nobody watches leaves the index (it would grow without end)."""
    watchers = index.get(key)
    if watchers is not None:
        watchers.discard(client)
        if not watchers:
            del index[key]
