"""The lab doctor in the hub: fed by the broker's events file and the ingest pipeline; tells and keeps what it finds.

A finding that opens (or is resolved) is published on the device's `errors` topic in the same JSON style as a
refused payload, with a `diagnosis` object (at most `PER_S` a second per device, bursts of `BURST`; the excess
is counted), and written to InfluxDB as a `diagnoses` point through the spool, like the other evidence, so a
grade never depends on the hub's memory. The broker's file names client ids (the hub's too): it is read here
and nowhere else, and only the findings leave.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Collection
from pathlib import Path

from devices import diagnoses as dx
from devices.topics import DeviceRef
from hub.boundary import escape
from hub.config import LabConfig
from hub.doctor.brokerlog import LOG_NAME, BrokerLogFollower
from hub.doctor.engine import Doctor
from hub.doctor.events import BrokerEvent
from hub.doctor.state import Change
from hub.ingest.lineproto import encode_line, series_prefix
from hub.ingest.traffic import Traffic
from hub.pace import TokenBucket

log = logging.getLogger(__name__)

PER_S = 1.0  # announcements per device and second, on average
BURST = 5
TICK_S = 0.5  # how often quiet findings are resolved and unclean ends without a will diagnosed
MEASUREMENT = "diagnoses"


def events_file(state_dir: Path) -> Path:
    """Where the broker that `labhub up` launches writes the events the doctor reads (hub.ops.mosquitto)."""
    return state_dir / "mosquitto" / LOG_NAME


def diagnosis_line(change: Change, time_ns: int) -> str:
    """The evidence point of a finding's change: tags from closed vocabularies (the device's validated names,
    the code, the severity), the state and count as fields."""
    finding = change.finding
    tags = change.ref.tags | {"code": finding.code, "severity": dx.SEVERITY.get(finding.code, dx.WARNING)}
    fields: dict[str, float | int | bool | str] = {"open": change.opened, "count": finding.count}
    return encode_line(series_prefix(MEASUREMENT, tags), fields, time_ns)


def error_message(change: Change, lang: str, now: int) -> dict[str, object]:
    """The payload on the device's errors topic: like a refused payload's answer, with the finding."""
    finding = change.finding.as_json(change.ref, lang)
    return {
        "code": finding["code"],
        "severity": finding["severity"],
        "message": finding["message"],
        "hint": finding["hint"],
        "device": change.ref.key,
        "diagnosis": finding,
        "time_ns": now,
    }


class LabDoctor:
    def __init__(
        self,
        events_path: Path | None,
        *,
        publish: Callable[[str, bytes], object],
        audit: Callable[[str, str], None] | None,
        language: Callable[[str], str],
        known: Callable[[DeviceRef], bool] = lambda ref: True,
        clock: Callable[[], int] = time.time_ns,
        private_prefix: str = "",
    ) -> None:
        self.engine = Doctor(known, private_prefix=private_prefix)
        self.follower = BrokerLogFollower(events_path, self.on_broker) if events_path is not None else None
        self._publish = publish
        self._audit = audit
        self._language = language
        self._clock = clock
        self._buckets: dict[DeviceRef, TokenBucket] = {}
        self._stamps: dict[DeviceRef, int] = {}
        self.announced = 0
        self.suppressed = 0

    @classmethod
    def of_lab(
        cls,
        cfg: LabConfig,
        worker: int,
        publish: Callable[[str, bytes], object],
        audit: Callable[[str, str], None],
        devices: Callable[[], Collection[DeviceRef]],
    ) -> LabDoctor:
        """The hub's doctor: worker 0 follows the broker's events (the file of the broker `labhub up` launched,
        or of one sharing the state dir); a device is known while the hub's table has it."""
        return cls(
            events_file(cfg.state_dir) if worker == 0 else None,
            publish=publish,
            audit=audit,
            language=cfg.language,
            known=lambda ref: ref in devices(),
            private_prefix=cfg.mqtt.client_id,  # the hub's (and its workers') ids: secret in an open lab
        )

    def shared_address(self, address: str) -> None:
        """The /mqtt bridge connects from `address` for many clients: no refused login there is put on a device."""
        self.engine.shared_address(address)

    # Feeds (each a boundary: the doctor must never break the intake or the follower) ----------------

    def on_broker(self, event: BrokerEvent) -> None:
        try:
            self._announce(self.engine.broker(event, self._clock()))
        except Exception:
            log.exception("lab doctor: failed on a broker event (%s)", event.kind)

    def observe(self, item: Traffic) -> None:
        try:
            self._announce(self.engine.traffic(item, self._clock()))
        except Exception:
            log.exception("lab doctor: failed on traffic of %s", item.ref.key)

    async def run(self) -> None:
        async with asyncio.TaskGroup() as tg:
            if self.follower is not None:
                tg.create_task(self.follower.run(), name="doctor-broker-events")
            tg.create_task(self._ticker(), name="doctor-tick")

    async def _ticker(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self._announce(self.engine.tick(self._clock()))
            except Exception:
                log.exception("lab doctor: failed resolving findings")

    # Out --------------------------------------------------------------------------------------------

    def _announce(self, changes: list[Change]) -> None:
        for change in changes:
            ref = change.ref
            now = self._clock()
            stamp = self._stamps[ref] = max(now, self._stamps.get(ref, 0) + 1)  # one device's points never collide
            if self._audit is not None:
                self._audit(ref.key, diagnosis_line(change, stamp))
            lang = self._language(ref.cohort)
            message = error_message(change, lang, now)
            log.info(
                "%s: %s %s — %s",
                ref.key,
                change.finding.code,
                "found" if change.opened else "resolved",
                escape(message["message"]),
            )
            bucket = self._buckets.get(ref)
            if bucket is None:
                bucket = self._buckets[ref] = TokenBucket(PER_S / 1e9, BURST)
            if not bucket.take(now):
                self.suppressed += 1
                continue
            self._publish(ref.topic("errors"), json.dumps(message, ensure_ascii=False).encode())
            self.announced += 1

    # Views ------------------------------------------------------------------------------------------

    def report(self, ref: DeviceRef) -> dict[str, object]:
        return self.engine.report(ref, self._language(ref.cohort))

    def summary(self, ref: DeviceRef) -> tuple[int, str | None]:
        return self.engine.summary(ref)
