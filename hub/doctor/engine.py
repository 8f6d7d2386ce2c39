"""The lab doctor's engine: per-device state fed with broker events and traffic, giving findings and a checklist.

Pure: no clock (every call gets `now` in ns), no I/O. Each feed returns the findings it opened (new, or seen
again after being resolved); `tick` resolves the quiet ones and returns them. A finding keeps first/last seen,
a count and a few samples; it is resolved once its symptom has not recurred for `quiet_s` (a stuck sensor: once
its value changes; a refused login: once a login is accepted).

The broker names no user in a refused login's lines, only the address: a refused login is put on the device
whose account last logged in from that address (`wrong_password`, or `unknown_account` when that account is
gone); from an address never seen it stays unattributed (`refused_addresses`, for the trainer), and so does one
from an address many clients share: the hub's own, where its /mqtt bridge connects from (`shared_address`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

from devices import diagnoses as dx
from devices.topics import DeviceRef, TopicError, parse_topic
from hub.doctor import events as ev
from hub.doctor.events import BrokerEvent, device_of
from hub.doctor.state import Change, DeviceDoctor, Finding
from hub.ingest.traffic import REJECTED, STATUS, Traffic, sample

MAX_REFUSED = 100  # unattributed refused logins kept
STUCK_EVERY_NS = 10**9  # a fast publisher's values are compared once a second (readings: the hot path)
MAX_CLIENTS = 100_000  # open mode's anonymous clients remembered until their device is known


class Doctor:
    """All devices' diagnoses. `known(ref)` says whether a device's account exists now."""

    def __init__(
        self,
        known: Callable[[DeviceRef], bool] = lambda ref: True,
        thresholds: dx.Thresholds | None = None,
        private_prefix: str = "",
    ) -> None:
        self.known = known
        # The hub's own client ids start with this: never attributed to a device, so never shown to a learner.
        self.private_prefix = private_prefix
        self.thresholds = thresholds or dx.DEFAULT_THRESHOLDS
        self.devices: dict[DeviceRef, DeviceDoctor] = {}
        self.addresses: dict[str, DeviceRef] = {}  # IP address → the device that last logged in from it
        self.clients: dict[str, DeviceRef] = {}  # client id → device (open mode: ids are free)
        self.refused_addresses: deque[tuple[int, str]] = deque(maxlen=MAX_REFUSED)
        self._connected_from: dict[str, str] = {}  # client id → address, until its device is known
        self.shared: set[str] = set()  # addresses many clients log in from (the hub's /mqtt bridge): never attributed

    def device(self, ref: DeviceRef) -> DeviceDoctor:
        doc = self.devices.get(ref)
        if doc is None:
            doc = self.devices[ref] = DeviceDoctor(ref)
        return doc

    def shared_address(self, address: str) -> None:
        """Logins from `address` are many clients' (the hub's /mqtt bridge): its refusals stay unattributed."""
        if len(self.shared) < MAX_REFUSED:
            self.shared.add(address)
            self.addresses.pop(address, None)

    def forget(self, ref: DeviceRef) -> None:
        self.devices.pop(ref, None)

    # Findings ---------------------------------------------------------------------------------------

    def _hit(self, doc: DeviceDoctor, code: str, now: int, sample: str, **params: object) -> list[Change]:
        finding = doc.findings.get(code)
        opened = False
        if finding is None:
            finding = doc.findings[code] = Finding(code, now, now)
            finding.samples = deque(maxlen=self.thresholds.samples)
            opened = True
        elif finding.resolved_ns is not None:
            finding.resolved_ns = None
            opened = True
        finding.count += 1
        finding.last_ns = now
        finding.params.update(params)
        if sample:
            finding.samples.append(sample[:300])
        return [Change(doc.ref, finding, True)] if opened else []

    def _resolve(self, doc: DeviceDoctor, code: str, now: int) -> list[Change]:
        finding = doc.findings.get(code)
        if finding is None or finding.resolved_ns is not None:
            return []
        finding.resolved_ns = now
        return [Change(doc.ref, finding, False)]

    def tick(self, now: int) -> list[Change]:
        """Resolve quiet findings; diagnose unclean ends that no `offline` status followed."""
        t = self.thresholds
        quiet = int(t.quiet_s * 1e9)
        changes: list[Change] = []
        for doc in self.devices.values():
            if doc.unclean_at is not None and now - doc.unclean_at >= t.will_wait_s * 1e9:
                doc.unclean_at = None
                doc.check("last_will_set", False, now, "the connection ended uncleanly and no 'offline' followed")
                changes += self._hit(doc, dx.NO_LAST_WILL, now, doc.unclean_line)
            for finding in doc.open_findings():
                if finding.code != dx.STUCK_SENSOR and now - finding.last_ns >= quiet:
                    changes += self._resolve(doc, finding.code, now)
        return changes

    # Broker events ----------------------------------------------------------------------------------

    def _ref_of_client(self, client: str) -> DeviceRef | None:
        return self.clients.get(client) or device_of(client)

    def broker(self, event: BrokerEvent, now: int) -> list[Change]:
        kind = event.kind
        if self.private_prefix and event.client.startswith(self.private_prefix):
            return []
        if kind == ev.REFUSED:
            return self._refused(event, now)
        if kind == ev.CONNECTED:
            ref = device_of(event.username) or device_of(event.client)
            if ref is None:  # open mode: its first publish or its will names its device
                self.clients.pop(event.client, None)
                if len(self._connected_from) >= MAX_CLIENTS:
                    self._connected_from.clear()
                self._connected_from[event.client] = event.address
                return []
            self.clients[event.client] = ref
            if event.address and event.address not in self.shared:
                self.addresses[event.address] = ref
            doc = self.device(ref)
            doc.check("broker_reached", True, now, f"connected from {event.address or '?'}")
            doc.check("account_accepted", True, now, f"logged in as {ref.key}")
            changes = self._resolve(doc, dx.WRONG_PASSWORD, now) + self._resolve(doc, dx.UNKNOWN_ACCOUNT, now)
            return changes + self._connect(doc, now, event.line)
        if kind == ev.PUBLISHED and event.retain and event.size > 0 and _channel(event.topic) == "commands":
            # the learner's app (no device's account) may publish commands/request: the topic names the device
            commanded = parse_topic(event.topic).ref
            return self._hit(self.device(commanded), dx.RETAINED_COMMAND, now, event.line, topic=event.topic)
        ref = self._ref_of_client(event.client)
        learnable = kind == ev.WILL or (kind == ev.PUBLISHED and not event.retain and event.size > 0)
        if ref is None and event.topic and learnable:  # (a retained empty publish is the hub clearing a copy)
            ref = self._learn(event.client, event.topic, now)
        if ref is None:
            return []
        if kind == ev.WILL:
            if event.will is not None:
                text = f"a last will on {event.topic}" if event.will else "no last will at connect"
                self.device(ref).check("last_will_set", event.will, now, text)
            return []
        doc = self.device(ref)
        if kind == ev.COLLISION:
            return self._collision(doc, now, event.line)
        if kind == ev.CLEAN_END:
            doc.unclean_at = None
        elif kind in (ev.UNCLEAN_END, ev.TIMEOUT):
            doc.unclean_at, doc.unclean_line = now, event.line
            if kind == ev.TIMEOUT:
                return self._hit(doc, dx.KEEPALIVE_TIMEOUT, now, event.line)
        elif kind == ev.SUBSCRIBED:
            if event.topic == ref.topic("errors"):
                doc.check("errors_subscribed", True, now, f"subscribed to {event.topic}")
        elif kind == ev.DENIED_SUBSCRIBE:
            return self._hit(doc, dx.FOREIGN_TOPIC, now, event.line, action="subscribe", topic=event.topic)
        elif kind == ev.DENIED_PUBLISH:
            if event.retain and _channel(event.topic) == "commands":
                return self._hit(doc, dx.RETAINED_COMMAND, now, event.line, topic=event.topic)
            return self._hit(doc, dx.FOREIGN_TOPIC, now, event.line, action="publish", topic=event.topic)
        elif kind == ev.PUBLISHED and event.retain and event.size > 0:
            channel = _channel(event.topic)
            if channel == "telemetry":
                return self._hit(doc, dx.RETAINED_TELEMETRY, now, event.line, topic=event.topic)
        return []

    def _learn(self, client: str, topic: str, now: int) -> DeviceRef | None:
        """Open mode: a client's device, from the topic of its will or first publish on a device channel."""
        try:
            parsed = parse_topic(topic)
        except TopicError:
            return None
        if parsed.channel not in ("telemetry", "status", "ack"):
            return None
        ref = self.clients[client] = parsed.ref
        address = self._connected_from.pop(client, "")
        doc = self.device(ref)
        if doc.checks["broker_reached"].ok is None:
            doc.check("broker_reached", True, now, f"connected from {address or '?'} as client {client}")
            doc.check("account_accepted", True, now, "open mode: anonymous clients are accepted")
        return ref

    def _refused(self, event: BrokerEvent, now: int) -> list[Change]:
        ref = self.addresses.get(event.address)  # (never a shared address: those are not recorded)
        if ref is None:
            self.refused_addresses.append((now, event.address))
            return []
        doc = self.device(ref)
        code = dx.WRONG_PASSWORD if self.known(ref) else dx.UNKNOWN_ACCOUNT
        doc.check("broker_reached", True, now, f"a login from {event.address}")
        doc.check("account_accepted", False, now, f"login refused from {event.address} ({code.replace('_', ' ')})")
        sample = f"login refused from {event.address}: {event.line}"
        return self._hit(doc, code, now, sample, address=event.address) + self._connect(doc, now, "")

    def _connect(self, doc: DeviceDoctor, now: int, line: str) -> list[Change]:
        """Each login (accepted or refused): a reconnect storm is many of them, each right after the last."""
        t = self.thresholds
        connects = doc.connects
        if connects and now - connects[-1] >= t.storm_gap_s * 1e9:
            connects.clear()  # the board waited: backoff, no storm
        connects.append(now)
        while connects and now - connects[0] > t.storm_window_s * 1e9:
            connects.popleft()
        if len(connects) >= t.storm_connects:
            return self._hit(doc, dx.RECONNECT_STORM, now, line, window=round(t.storm_window_s))
        return []

    def _collision(self, doc: DeviceDoctor, now: int, line: str) -> list[Change]:
        t = self.thresholds
        doc.collisions.append(now)
        while doc.collisions and now - doc.collisions[0] > t.collision_window_s * 1e9:
            doc.collisions.popleft()
        if len(doc.collisions) >= t.collision_count:
            return self._hit(doc, dx.CLIENT_ID_COLLISION, now, line)
        return []

    # Traffic ----------------------------------------------------------------------------------------

    def traffic(self, item: Traffic, now: int) -> list[Change]:
        doc = self.device(item.ref)
        if item.kind == STATUS:
            if item.online is True:
                doc.check("status_online", True, now, f"'online' on {item.topic}")
            elif item.online is False:
                doc.check("status_online", False, now, f"'offline' on {item.topic}")
                if doc.unclean_at is not None and not item.retain:
                    doc.unclean_at = None
                    doc.check("last_will_set", True, now, "its will ('offline') came after an unclean end")
            return []
        if item.kind == REJECTED:
            return self._rejected(doc, item, now)
        return self._reading(doc, item, now)

    def _rejected(self, doc: DeviceDoctor, item: Traffic, now: int) -> list[Change]:
        changes: list[Change] = []
        code = item.codes[0] if item.codes else ""
        as_date = str(item.params.get("as_date", ""))
        if code == "timestamp_since_boot" or (code == "timestamp_out_of_range" and as_date < "2000"):
            value = item.params.get("value", "?")
            doc.check("clock_plausible", False, now, f"ts {value} is {as_date or '1970'}")
            changes += self._hit(doc, dx.CLOCK_NOT_SET, now, sample(item), value=value, as_date=as_date or "1970")
        limit = dx.PUBSUBCLIENT_BUFFER
        if limit - 7 - len(item.topic) <= item.size <= limit and code not in ("unknown_device",):
            changes += self._hit(doc, dx.PAYLOAD_CUT_256, now, sample(item), size=item.size)
        return changes

    def _reading(self, doc: DeviceDoctor, item: Traffic, now: int) -> list[Change]:
        """The hot path (every reading): checklist texts are made only when an item changes."""
        changes: list[Change] = []
        doc.readings += 1
        checks = doc.checks
        if checks["first_valid_reading"].ok is None:
            doc.check("first_valid_reading", True, now, f"{item.topic}: {sample(item)}")
        ts = item.device_ts_ns
        if checks["clock_plausible"].ok is not True and (ts is None or ts >= dx.YEAR_2000_NS):
            text = "no ts: the hub stamps each reading" if ts is None else f"device ts {ts} is a plausible date"
            doc.check("clock_plausible", True, now, text)
        period = dx.KIND_MIN_PERIOD_S.get(item.device_kind)
        if period is None:
            if doc.readings >= 2 and checks["cadence_plausible"].ok is None:
                doc.check("cadence_plausible", True, now, "no sensor period for this kind")
            return changes
        last = doc.last_by_topic.get(item.topic)
        doc.last_by_topic[item.topic] = now
        if last is not None:
            interval_ns = now - last
            if interval_ns < 0.9e9 * period:
                doc.fast_run += 1
                found = doc.findings.get(dx.TOO_FAST)
                if found is not None and found.open:  # still too fast: counted, without new texts
                    found.count += 1
                    found.last_ns = now
                elif doc.fast_run >= self.thresholds.too_fast_readings:
                    interval = interval_ns / 1e9
                    doc.check("cadence_plausible", False, now, f"a reading every {interval:.3f} s on {item.topic}")
                    text = f"{interval:.3f} s after the previous reading: {sample(item)}"
                    changes += self._hit(doc, dx.TOO_FAST, now, text, interval=f"{interval:.2f}", period=f"{period:g}")
            else:
                doc.fast_run = 0
                if checks["cadence_plausible"].ok is not True:
                    doc.check("cadence_plausible", True, now, f"{interval_ns / 1e9:.1f} s since the previous reading")
        if now < doc.stuck_next_ns:  # a stuck value lasts minutes: looked at once a second is enough
            return changes
        doc.stuck_next_ns = now + STUCK_EVERY_NS
        return changes + self._stuck(doc, item, now)  # sensors: a stuck value means something

    def _stuck(self, doc: DeviceDoctor, item: Traffic, now: int) -> list[Change]:
        t = self.thresholds
        changes: list[Change] = []
        same = doc.same
        for name, value in item.fields.items():
            if type(value) is not float:
                continue
            seen = same.get(name)
            if seen is None:
                same[name] = [value, now, 1]
            elif seen[0] != value:  # in place: this runs for every field of every reading
                seen[0], seen[1], seen[2] = value, now, 1
                if doc.stuck_field == name:
                    doc.stuck_field = None
                    changes += self._resolve(doc, dx.STUCK_SENSOR, now)
            else:
                seen[2] += 1
                if seen[2] >= t.stuck_readings and now - seen[1] >= t.stuck_s * 1e9:
                    doc.stuck_field = name
                    seconds = round((now - seen[1]) / 1e9)
                    params = {"field": name, "value": value, "seconds": seconds, "count": seen[2]}
                    changes += self._hit(doc, dx.STUCK_SENSOR, now, sample(item), **params)
        return changes

    # Views ------------------------------------------------------------------------------------------

    def report(self, ref: DeviceRef, lang: str = "en") -> dict[str, object]:
        """The diagnosis API's answer for one device."""
        doc = self.devices.get(ref) or DeviceDoctor(ref)
        findings = sorted(doc.findings.values(), key=lambda f: (f.resolved_ns is not None, -f.last_ns))
        return {
            "device": ref.key,
            "checklist": [
                {"item": name, "ok": c.ok, "at_ns": c.at_ns, "evidence": c.evidence} for name, c in doc.checks.items()
            ],
            "findings": [f.as_json(ref, lang) for f in findings],
            "open": sum(1 for f in findings if f.open),
        }

    def summary(self, ref: DeviceRef) -> tuple[int, str | None]:
        """(open findings, worst severity) for the dashboard's badge."""
        doc = self.devices.get(ref)
        if doc is None:
            return 0, None
        found = doc.open_findings()
        return len(found), dx.worst([dx.SEVERITY.get(f.code, dx.WARNING) for f in found])


def _channel(topic: str) -> str:
    try:
        return parse_topic(topic).channel
    except TopicError:
        return ""
