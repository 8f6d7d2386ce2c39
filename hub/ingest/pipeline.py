"""Telemetry intake: topic → device → decode → validate → line protocol → spool.

This is the hot path, called synchronously for every MQTT message on the loop thread. Per message it
does one dict lookup for the route, the pure decode/validate/encode steps, and one append to the
spool's pending group commit. Rejections are answered on the device's `errors` topic (rate-limited per device,
the excess counted), counted per device and reason, and kept in the device's payload inspector. Which device a
topic is for, and what the hub knows of each device, is the device table's (`hub.ingest.device_table`).

Receipt timestamps are unique per device (a strictly increasing nanosecond clock per device), because
InfluxDB keeps one point per series and timestamp. A device whose own timestamps repeat is warned.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable

from devices.decode import Decoded, decode_payload
from devices.feedback import preview, render
from devices.kinds import DeviceKind
from devices.problems import PayloadRejected, Problem
from devices.topics import DeviceRef
from devices.validate import DEFAULT_LIMITS, FieldValue, Limits, Reading, validate
from hub.adapters.influx import parse_conflict
from hub.adapters.mqtt import Message
from hub.boundary import escape
from hub.config import DeviceConfig
from hub.ingest.device_table import DeviceState, DeviceTable, IngestTotals, InspectorEntry, influx_type_of
from hub.ingest.lineproto import encode_floats, encode_line, series_prefix
from hub.ingest.spool import AUDIT_KEY, Record
from hub.ingest.spool_format import payload_digest
from hub.ingest.traffic import READING, REJECTED, STATUS, Traffic

log = logging.getLogger(__name__)

MAX_CLEARING = 100_000  # topics whose retained copy the hub asked the broker to forget, awaiting its echo


class Ingest:
    """Turns telemetry messages into queued points, and bad ones into answers."""

    def __init__(
        self,
        declared: Iterable[DeviceConfig],
        *,
        enqueue: Callable[[int, int, str, str, InspectorEntry], None],
        is_duplicate: Callable[[str, int], bool] = lambda key, digest: False,
        publish: Callable[[str, bytes], object],
        language: Callable[[str], str],
        open_mode: bool,
        max_payload_bytes: int,
        errors_per_second: float,
        inspector_size: int = 50,
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], int] = time.time_ns,
        stamp_stride: int = 1,
        stamp_offset: int = 0,
        on_reading: Callable[[DeviceState, dict[str, FieldValue], int], None] | None = None,
        watch: Callable[[DeviceRef], bool] = lambda ref: False,
        refresh: Callable[[], None] | None = None,
        audit: Callable[[str, str], None] | None = None,
        on_rejected: Callable[[DeviceState, dict[str, object]], None] | None = None,
        clear_retained: Callable[[str], object] | None = None,
        observe: Callable[[Traffic], None] | None = None,
    ) -> None:
        self._enqueue = enqueue
        self._is_duplicate = is_duplicate
        self._publish = publish
        self.max_payload_bytes = max_payload_bytes
        self._limits = limits
        self._clock = clock
        # Workers sharing the load stamp in disjoint residue classes (ts ≡ offset mod stride), so two
        # workers can never give two readings of one device the same receipt timestamp.
        self._stride = stamp_stride
        self._offset = stamp_offset
        self._on_reading = on_reading
        self._refresh = refresh
        self._audit = audit  # evidence for grading (rejections, presence) → InfluxDB, through the spool
        self._on_rejected = on_rejected  # live views
        self._clear_retained = clear_retained  # asks the broker to forget a retained telemetry message
        self._clearing: set[str] = set()
        self._observe = observe  # the lab doctor: readings, rejections and statuses as they come
        self.totals = IngestTotals()
        self.table = DeviceTable(
            declared,
            totals=self.totals,
            language=language,
            open_mode=open_mode,
            errors_per_second=errors_per_second,
            inspector_size=inspector_size,
            stamp_stride=stamp_stride,
            watch=watch,
        )
        self.devices = self.table.devices  # the same dict, read by views; the table alone changes it
        self._routes = self.table.routes

    # The hot path ----------------------------------------------------------------------------------

    def handle(self, msg: Message) -> InspectorEntry | None:
        """Process one message from the broker. Never raises for anything a device sends.

        Returns the inspector entry when readings were spooled (the message may be acknowledged once they
        are committed), None when there is nothing to wait for.
        """
        route = self._routes.get(msg.topic) or self.table.route(msg.topic)
        if route is None:
            return None
        state, channel, field_name = route
        now = self._clock()
        state.last_seen_ns = now
        if channel != "telemetry":
            if channel == "status":
                self._status(state, msg.payload, now, msg.retain)
            return None
        if msg.retain:  # the broker's stored copy, sent again at each (re)connect: stored once already
            self.totals.retained_ignored += 1
            if msg.payload and self._clear_retained is not None:
                if len(self._clearing) >= MAX_CLEARING:
                    self._clearing.clear()
                self._clearing.add(msg.topic)
                self._clear_retained(msg.topic)  # the broker forgets it (and sends us the empty message)
            return None
        if not msg.payload and msg.topic in self._clearing:
            self._clearing.discard(msg.topic)  # our own clearing of a retained copy, not the device's
            return None
        # QoS 1 messages can come again after a crash; the digest recognises what is already spooled.
        digest = payload_digest(msg.payload) if msg.qos else 0
        if msg.dup and digest and self._is_duplicate(state.ref.key, digest):
            self.totals.duplicates += 1
            return None
        entry = self.reading(state, msg.topic, msg.payload, field_name, digest, now)
        return entry if entry.pending else None

    def post(self, ref: DeviceRef, field_name: str | None, payload: bytes) -> InspectorEntry | None:
        """A reading that came another way than MQTT (HTTP): what a QoS 0 publish of `payload` on the device's
        `telemetry` (or `telemetry/<field_name>`) topic gets, and its entry whatever its verdict. None when no
        device of the hub's table has this topic (a field name that is no name)."""
        topic = ref.topic("telemetry") if field_name is None else f"{ref.topic('telemetry')}/{field_name}"
        route = self._routes.get(topic) or self.table.route(topic)
        if route is None or route[1] != "telemetry":
            return None
        state, _, name = route
        now = self._clock()
        state.last_seen_ns = now
        return self.reading(state, topic, payload, name, 0, now)

    def reading(
        self, state: DeviceState, topic: str, payload: bytes, field_name: str | None, digest: int, now: int
    ) -> InspectorEntry:
        """One telemetry payload of a device, from MQTT or HTTP: inspect, decode, validate, spool or reject.
        Its entry has `pending` > 0 when readings were spooled, the verdict "rejected" (and its errors) if not."""
        self.totals.received += 1
        state.received += 1
        entry = InspectorEntry(now, topic, payload, state)
        entry.digest = digest
        state.inspector.append(entry)
        kind = state.kind
        if kind is None and self._refresh is not None:
            self._refresh()  # registered a moment ago? the registry knows before the next poll
            kind = state.kind
        if kind is None:
            self._reject(state, entry, [Problem("unknown_device", value=state.ref.key)], now)
            return entry
        try:
            decoded = decode_payload(payload, field_name, self.max_payload_bytes)
            if len(decoded) == 1:
                readings = [validate(kind, decoded[0], now, state.pins, self._limits, state.names)]
            else:
                readings = self._validate_lines(kind, decoded, state, now)
        except PayloadRejected as err:
            self._reject(state, entry, err.problems, now)
            return entry
        except Exception:  # a bug of ours must not take the hub down with one payload
            log.exception("internal error on a message from %s", state.ref.key)
            self._reject(state, entry, [Problem("internal_error")], now)
            return entry
        entry.pending = len(readings)
        observe = self._observe
        for reading in readings:
            self._accept(state, entry, reading, now)
            if observe is not None:
                observe(
                    Traffic(
                        state.ref,
                        READING,
                        topic,
                        kind.name,
                        len(payload),
                        reading.timestamp_ns,
                        reading.fields,
                        payload=payload,
                    )
                )
        return entry

    def _validate_lines(self, kind: DeviceKind, decoded: list[Decoded], state: DeviceState, now: int) -> list[Reading]:
        """Several readings in one message (line protocol): each line is checked against the types and names
        of the lines before it too, so `a=1i` then `a=1.5` is refused whole (`type_changed`) instead of being
        half stored when InfluxDB refuses the second line."""
        pins = dict(state.pins)
        names = set(state.names)
        readings = []
        for one in decoded:
            reading = validate(kind, one, now, pins, self._limits, names)
            for name, ftype in reading.types.items():
                pins.setdefault(name, ftype)
            names.update(reading.types)
            readings.append(reading)
        return readings

    def _accept(self, state: DeviceState, entry: InspectorEntry, reading: Reading, now: int) -> None:
        ts = reading.timestamp_ns
        if ts is None:
            ts = state.stamps.stamp(now - now % self._stride + self._offset)
        else:
            if ts == state.last_device_ts:
                self._warn_collision(state, entry, ts, now)
            state.last_device_ts = ts
        types = reading.types
        if types:  # an open kind's reading that brings a name or a type: pin them; any value type
            pins = state.pins
            for name, ftype in types.items():
                if name not in pins:
                    pins[name] = ftype
            state.names.update(types)
            line = encode_line(state.prefix, reading.fields, ts)
        else:  # floats under names already checked: a fixed kind's reading, or an open kind's with nothing new
            line = encode_floats(state.prefix, reading.fields, ts)  # type: ignore[arg-type]
        if state.watched and self._on_reading is not None:  # arms, and devices someone watches live
            self._on_reading(state, reading.fields, ts)
        self._enqueue(now, entry.digest, state.key, line, entry)

    # Outcomes --------------------------------------------------------------------------------------

    def on_stored(self, records: list[Record[InspectorEntry]]) -> None:
        """The writer stored these points (replayed ones have no inspector entry, only a device key)."""
        for record in records:
            entry = record.owner
            if entry is None:
                if record.key.startswith(AUDIT_KEY):  # evidence (commands, rejections, presence), not a reading
                    continue
                self.totals.stored += 1
                state = self.table.state_for(record.key)
                if state is not None:
                    state.stored += 1
                continue
            self.totals.stored += 1
            entry.device.stored += 1
            entry.pending -= 1
            if entry.pending <= 0 and entry.verdict in ("queued", "spooled"):
                entry.verdict = "stored"

    def on_storage_rejected(self, record: Record[InspectorEntry], detail: str) -> None:
        """InfluxDB refused this point: tell the device which field conflicts, and remember it."""
        entry = record.owner
        state = entry.device if entry is not None else self.table.state_for(record.key)
        if state is None:
            log.warning("InfluxDB refused a replayed point of unknown device %s: %s", record.key, detail[:200])
            return
        if entry is None:  # replayed after a restart: no inspector entry survives
            entry = InspectorEntry(record.received_ns, state.ref.topic("telemetry"), b"", state)
        conflict = parse_conflict(detail)
        problem = Problem("storage_rejected", params={"detail": detail[:200]})
        if conflict is not None:
            existing = influx_type_of(conflict.existing)
            got = influx_type_of(conflict.got)
            problem = Problem("type_conflict", conflict.field, None, {"pinned": existing.value, "got": got.value})
            self.table.pin(conflict.measurement, conflict.field, existing)
        log.warning("InfluxDB refused a point from %s: %s", state.ref.key, detail[:200])
        entry.pending -= 1
        self._reject(state, entry, [problem], self._clock())

    def _reject(self, state: DeviceState, entry: InspectorEntry, problems: list[Problem], now: int) -> None:
        rendered = [render(p, state.language) for p in problems]
        entry.verdict = "rejected"
        entry.errors = rendered
        first = problems[0].code
        state.rejected[first] += 1
        self.totals.rejected[first] += 1
        message = error_message(entry)
        state.last_error = rendered[0]
        self._send_error(state, message, now)
        self._evidence(state, "rejections", {"code": first}, {"message": str(rendered[0].get("message", ""))[:200]})
        if self._observe is not None:
            first_problem = problems[0]
            kind = state.kind.name if state.kind is not None else ""
            params = {**first_problem.params, "value": first_problem.value}
            codes = tuple(p.code for p in problems)
            self._observe(
                Traffic(
                    state.ref,
                    REJECTED,
                    entry.topic,
                    kind,
                    len(entry.payload),
                    codes=codes,
                    params=params,
                    payload=entry.payload,
                )
            )
        if state.watched and self._on_rejected is not None:  # someone has it on screen
            self._on_rejected(state, rendered[0] | {"rejected_total": sum(state.rejected.values())})

    def _evidence(
        self, state: DeviceState, measurement: str, tags: dict[str, str], fields: dict[str, float | int | bool | str]
    ) -> None:
        """A point that grading reads back from InfluxDB (never from memory: a restart must not change a grade)."""
        if self._audit is None:
            return
        # One device's events never share a timestamp; workers stamp in disjoint classes, as for readings.
        now = self._clock()
        ts = state.events.stamp(now - now % self._stride + self._offset)
        ref = state.ref
        prefix = series_prefix(measurement, ref.tags | tags)
        self._audit(ref.key, encode_line(prefix, fields, ts))

    def _warn_collision(self, state: DeviceState, entry: InspectorEntry, ts: int, now: int) -> None:
        problem = Problem("timestamp_collision", "ts", ts)
        rendered = render(problem, state.language)
        entry.errors = [rendered]
        state.warnings["timestamp_collision"] += 1  # a warning: the reading is stored
        message = dict(rendered)
        message.update({"device": state.ref.key, "topic": entry.topic, "problems": [rendered]})
        self._send_error(state, message, now)

    def _send_error(self, state: DeviceState, message: dict[str, object], now: int) -> None:
        """Publish on the device's errors topic, at most `errors_per_second` (burst 20) per device."""
        if not state.error_replies.take(now):
            state.errors_suppressed += 1
            self.totals.errors_suppressed += 1
            return
        log.info("%s: %s — %s", state.ref.key, message.get("code"), escape(message.get("message", "")))
        if state.errors_suppressed:
            message["suppressed_before"] = state.errors_suppressed
        message["time_ns"] = now
        self._publish(state.ref.topic("errors"), json.dumps(message, ensure_ascii=False).encode())
        state.errors_sent += 1
        self.totals.errors_sent += 1

    def _status(self, state: DeviceState, payload: bytes, now: int, retained: bool = False) -> None:
        text = payload[:200].decode("utf-8", errors="replace").strip()
        if text.startswith("{"):
            try:
                text = str(json.loads(text).get("state", ""))
            except (ValueError, AttributeError):
                text = ""
        online = {"online": True, "offline": False}.get(text.lower())
        if online is not None and online != state.online:
            log.info("%s is %s", state.ref.key, "online" if online else "offline")
        # Evidence of a real change only: not the broker's stored copy sent again when the hub (re)connects,
        # and (with several workers, who all see every status) written by worker 0 alone.
        if online is not None and online != state.online and not retained and self._offset == 0:
            self._evidence(state, "presence", {}, {"online": online})
        state.online = online
        if self._observe is not None:
            self._observe(Traffic(state.ref, STATUS, state.ref.topic("status"), online=online, retain=retained))

    # Views -----------------------------------------------------------------------------------------

    def online_count(self) -> int:
        return self.table.online_count()


def error_message(entry: InspectorEntry) -> dict[str, object]:
    """What a rejected message is answered on the device's errors topic (and over HTTP, as a 422's body)."""
    rendered = list(entry.errors)
    message = dict(rendered[0]) if rendered else {}
    message.update(
        {
            "device": entry.device.ref.key,
            "topic": entry.topic,
            "received": preview(entry.payload.decode("utf-8", errors="replace")),
            "problems": rendered,
        }
    )
    return message
