"""The device table: what the hub knows about each device while it runs, and which device a topic is for.

Bounded whatever devices send: at most MAX_DEVICES states (in open mode, anyone can invent devices: the
undeclared ones idle the longest are forgotten to make room) and MAX_ROUTES cached topics. A device's kind comes
from the registry (or `generic` in open mode); open kinds pin each field's type the first time it is seen, or
as InfluxDB already holds it, so a conflict is refused here rather than half-written there.
"""

from __future__ import annotations

import logging
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from devices.kinds import ARM, KINDS, DeviceKind, FieldType
from devices.topics import DeviceRef, TopicError, parse_topic
from hub.config import DeviceConfig
from hub.ingest.lineproto import series_prefix
from hub.pace import Stamper, TokenBucket

log = logging.getLogger(__name__)

MAX_ROUTES = 100_000
MAX_DEVICES = 10_000
EVICT_FRACTION = 10  # when the table is full, the 1/10 of undeclared devices idle the longest are forgotten
ERROR_BURST = 20.0  # error replies a device gets at once before its rate applies
INSPECT_BYTES = 2048  # the inspector keeps (and shows) this much of each payload, whatever its size


class InspectorEntry:
    """One raw message as the hub saw it, and what became of it."""

    __slots__ = ("device", "digest", "errors", "payload", "pending", "received_ns", "size", "topic", "verdict")

    def __init__(self, received_ns: int, topic: str, payload: bytes, device: DeviceState) -> None:
        self.received_ns = received_ns
        self.topic = topic
        self.payload = payload[:INSPECT_BYTES]  # a device cannot make the hub keep 50 × 1 MiB
        self.size = len(payload)
        self.verdict = "queued"
        self.errors: Sequence[dict[str, object]] = ()  # replaced, never appended to: no list per message
        self.pending = 0
        self.device = device
        self.digest = 0

    def spooled(self) -> None:
        """Its points are on disk: its message may be acknowledged."""
        if self.verdict == "queued":
            self.verdict = "spooled"

    def as_json(self) -> dict[str, object]:
        text = self.payload.decode("utf-8", errors="replace")
        return {
            "received_ns": self.received_ns,
            "topic": self.topic,
            "payload": text,
            "payload_bytes": self.size,
            "verdict": self.verdict,
            "errors": list(self.errors),
        }


@dataclass(slots=True)
class DeviceState:
    """What the hub knows about one device while it runs."""

    ref: DeviceRef
    kind: DeviceKind | None  # None: not registered and the lab is closed
    language: str
    declared: bool
    prefix: str
    inspector: deque[InspectorEntry]
    error_replies: TokenBucket  # answers on its errors topic (time in ns)
    stamps: Stamper  # receipt timestamps of its readings: unique, as InfluxDB keeps one point per series and time
    events: Stamper  # timestamps of its evidence points (rejections, presence): unique too
    received: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    warnings: Counter[str] = field(default_factory=Counter)
    pins: dict[str, FieldType] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)  # field names this device has had accepted (open kinds)
    measurement: str = ""
    last_device_ts: int | None = None
    online: bool | None = None
    last_seen_ns: int = 0
    errors_sent: int = 0
    errors_suppressed: int = 0
    last_error: dict[str, object] | None = None
    watched: bool = False  # readings are passed on (arms' poses to the relay, live views)
    present: bool = False  # online (last will not published) and heard from recently
    rate_per_s: float = 0.0
    key: str = field(init=False)  # ref.key, made once: the spool's record key for each of its readings

    def __post_init__(self) -> None:
        self.key = self.ref.key

    def presence(self) -> dict[str, object]:
        """What live views are told when presence or the message rate changes."""
        return {
            "online": self.online,
            "present": self.present,
            "last_seen_ns": self.last_seen_ns or None,
            "rate_per_s": round(self.rate_per_s, 2),
        }

    def summary(self) -> dict[str, object]:
        return {
            "id": self.ref.key,
            **self.ref.tags,
            "kind": self.kind.name if self.kind else None,
            "declared": self.declared,
            **self.presence(),
            "received": self.received,
            "stored": self.stored,
            "rejected": dict(self.rejected),
            "warnings": dict(self.warnings),
            "errors_sent": self.errors_sent,
            "errors_suppressed": self.errors_suppressed,
            "last_error": self.last_error,
        }


Route = tuple[DeviceState, str, str | None]  # (device, channel, field named by the topic)


@dataclass(slots=True)
class IngestTotals:
    received: int = 0
    stored: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    bad_topics: int = 0
    duplicates: int = 0  # redeliveries recognised as already spooled
    retained_ignored: int = 0  # stored copies of telemetry sent again by the broker: never stored twice
    devices_evicted: int = 0  # undeclared devices forgotten to make room (open mode)
    errors_sent: int = 0
    errors_suppressed: int = 0


class DeviceTable:
    def __init__(
        self,
        declared: Iterable[DeviceConfig],
        *,
        totals: IngestTotals,
        language: Callable[[str], str],
        open_mode: bool,
        errors_per_second: float,
        inspector_size: int,
        stamp_stride: int,
        watch: Callable[[DeviceRef], bool],
    ) -> None:
        self._declared = {d.ref: d for d in declared}
        self._totals = totals
        self._language = language
        self.open_mode = open_mode
        self._error_rate = errors_per_second / 1e9  # per ns: the pipeline's clock
        self._inspector_size = inspector_size
        self._stride = stamp_stride
        self._watch = watch
        self.devices: dict[DeviceRef, DeviceState] = {}
        self.routes: dict[str, Route] = {}  # topic → route; cleared whenever a device is forgotten
        self.known_types: dict[tuple[str, str], FieldType] = {}  # (measurement, field) → type in InfluxDB
        for dev in self._declared.values():
            self.device(dev.ref)

    def kind_of(self, ref: DeviceRef) -> DeviceKind | None:
        declared = self._declared.get(ref)
        if declared is not None:
            return KINDS[declared.kind]
        return KINDS["generic"] if self.open_mode else None

    def device(self, ref: DeviceRef) -> DeviceState | None:
        """The device's state, made on first sight; None when the table is full of devices it must keep."""
        state = self.devices.get(ref)
        if state is not None:
            return state
        if len(self.devices) >= MAX_DEVICES and not self._evict():
            return None
        kind = self.kind_of(ref)
        if kind is not None and ref not in self._declared:
            log.info("new device %s registered as generic (open mode)", ref.key)
        state = DeviceState(
            ref=ref,
            kind=kind,
            language=self._language(ref.cohort),
            declared=ref in self._declared,
            prefix=series_prefix(measurement_of(ref, kind), ref.tags),
            inspector=deque(maxlen=self._inspector_size),
            error_replies=TokenBucket(self._error_rate, ERROR_BURST),
            stamps=Stamper(self._stride),
            events=Stamper(self._stride),
            watched=kind is ARM or self._watch(ref),
            measurement=measurement_of(ref, kind),
        )
        self._pin_known(state)
        self.devices[ref] = state
        return state

    def _evict(self) -> bool:
        """Make room in a full device table: forget the undeclared, unwatched devices idle the longest (in
        open mode anyone can invent devices; they must not fill the table for good). False: none to forget."""
        idle = sorted(
            (s for s in self.devices.values() if not s.declared and not s.watched), key=lambda s: s.last_seen_ns
        )
        if not idle:
            return False
        forget = idle[: max(1, len(self.devices) // EVICT_FRACTION)]
        for state in forget:
            del self.devices[state.ref]
        self._totals.devices_evicted += len(forget)
        self.routes.clear()
        log.warning("device table full (%d): forgot the undeclared devices idle the longest", MAX_DEVICES)
        return True

    def _pin_known(self, state: DeviceState) -> None:
        kind = state.kind
        if kind is not None and kind.open_fields:
            state.pins.update({f: t for (m, f), t in self.known_types.items() if m == state.measurement})

    def declare(self, declared: Iterable[DeviceConfig]) -> set[DeviceRef]:
        """The registry changed: new devices get a state, a changed kind applies from the next message on.
        Returns the devices no longer declared."""
        previous = self._declared
        self._declared = {d.ref: d for d in declared}
        for ref in self._declared:
            self.device(ref)
        removed = set(previous) - set(self._declared)
        if removed and not self.open_mode:  # gone from a closed lab: forget them
            for ref in removed:
                self.devices.pop(ref, None)
            self.routes.clear()
        for state in self.devices.values():
            kind = self.kind_of(state.ref)
            state.declared = state.ref in self._declared
            if kind is not state.kind:
                log.info("%s is now of kind %s", state.ref.key, kind.name if kind else "unregistered")
                state.kind = kind
                state.measurement = measurement_of(state.ref, kind)
                state.prefix = series_prefix(state.measurement, state.ref.tags)
                state.pins.clear()
                state.names.clear()
                self._pin_known(state)
                state.watched = kind is ARM or self._watch(state.ref)
        return removed

    def route(self, topic: str) -> Route | None:
        """A topic not in `routes` yet: parse it, find (or make) its device, and cache the route."""
        try:
            parsed = parse_topic(topic)
        except TopicError as err:
            self._totals.bad_topics += 1
            if self._totals.bad_topics <= 10 or self._totals.bad_topics % 1000 == 0:
                log.warning("ignored message on %r: %s (%d so far)", topic[:120], err, self._totals.bad_topics)
            return None
        if parsed.channel == "status" and parsed.ref not in self.devices and self.kind_of(parsed.ref) is None:
            return None  # a status of no device of this closed lab (a removed one's retained status): ignored
        state = self.device(parsed.ref)
        if state is None:
            self._totals.bad_topics += 1
            log.warning("ignored %s: too many devices (%d)", parsed.ref.key, MAX_DEVICES)
            return None
        route = (state, parsed.channel, parsed.field)
        if len(self.routes) >= MAX_ROUTES:
            self.routes.clear()
        self.routes[topic] = route
        return route

    def state_for(self, key: str) -> DeviceState | None:
        """The state of a device named by its key (a replayed spool record's)."""
        try:
            return self.device(DeviceRef.parse(key))
        except TopicError:
            return None

    # Field types as InfluxDB holds them --------------------------------------------------------------

    def learn_types(self, types: Mapping[tuple[str, str], str]) -> None:
        """Field types InfluxDB already holds, by (measurement, field) (read at start), so conflicts are
        caught before writing."""
        for (measurement, name), influx_type in types.items():
            ftype = influx_type_of(influx_type)
            self.known_types[(measurement, name)] = ftype
            for state in self.devices.values():
                if state.measurement == measurement and state.kind is not None and state.kind.open_fields:
                    state.pins.setdefault(name, ftype)

    def pin(self, measurement: str, name: str, ftype: FieldType) -> None:
        """InfluxDB says this field has this type: every open-kind device writing there pins it."""
        self.known_types[(measurement, name)] = ftype
        for other in self.devices.values():
            if other.measurement == measurement and other.kind is not None and other.kind.open_fields:
                other.pins[name] = ftype

    def online_count(self) -> int:
        return sum(1 for s in self.devices.values() if s.online)


def measurement_of(ref: DeviceRef, kind: DeviceKind | None) -> str:
    return kind.measurement_for(ref.cohort, ref.learner) if kind is not None else "unregistered"


def influx_type_of(name: str) -> FieldType:
    return {
        "float": FieldType.FLOAT,
        "integer": FieldType.INTEGER,
        "unsigned": FieldType.INTEGER,
        "boolean": FieldType.BOOLEAN,
        "string": FieldType.STRING,
    }.get(name, FieldType.STRING)
