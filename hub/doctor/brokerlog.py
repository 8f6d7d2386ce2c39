"""Mosquitto 2.0.11's log lines → broker events (pure parser), and the follower that reads them (thin I/O).

The lines, as 2.0.11 prints them with `log_type all` (captured against a real broker, see the unit tests):
a refused login names no user, only the address its CONNACK goes to; a denied publish and a retained publish
are debug lines; a denied subscription is a topic listed under "Received SUBSCRIBE" that no granted line
("<client> <qos> <topic>") follows before the SUBACK. Lines name client ids, the hub's too: the log goes to
a file in the broker's private data dir that only the hub reads, and nothing here is published.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from hub.doctor import events as ev
from hub.doctor.events import BrokerEvent

log = logging.getLogger(__name__)

LOG_NAME = "broker-events.log"  # in the broker's data dir (mode 0600, its own user's)
REFUSING_CONNACK = frozenset({"4", "5", "134", "135"})  # bad username or password / not authorised (3.1.1, 5)
MAX_LINE = 2000
MAX_CLIENTS = 100_000

_CONNECTED = re.compile(r"New client connected from (\S+):\d+ as (.*) \(p\d+, c\d+, k\d+(?:, u'(.*)')?\)\.")
_CONNACK = re.compile(r"Sending CONNACK to (\S+) \(\d+, (\d+)\)")
_PUBLISH = re.compile(r"(Received|Denied) PUBLISH from (.*) \(d\d, q\d, r(\d), m\d+, '(.*)', \.\.\. \((\d+) bytes\)\)")
_CLIENT_LINES = (
    (re.compile(r"Client (.*) already connected, closing old connection\."), ev.COLLISION),
    (re.compile(r"Client (.*) has exceeded timeout, disconnecting\."), ev.TIMEOUT),
    (re.compile(r"Client (.*) closed its connection\."), ev.UNCLEAN_END),
    (re.compile(r"Socket error on client (.*), disconnecting\."), ev.UNCLEAN_END),
    (re.compile(r"Client (.*) disconnected due to protocol error\."), ev.UNCLEAN_END),
    (re.compile(r"Client (.*) disconnected\."), ev.CLEAN_END),
)
_SUBSCRIBE_TOPIC = re.compile(r"\t(.*) \(QoS \d\)")
_SKIP = ("Sending PUBLISH", "Received PUBACK", "Sending PUBACK", "Received PINGREQ", "Sending PINGRESP")
_SKIP_BYTES = tuple(prefix.encode() for prefix in _SKIP)
_RECEIVED = b"Received PUBLISH from "
BULK_FROM_LINES = 1_000  # lines in one read (~5,000 a second): past this, the traffic's lines go in one regex pass
# A line the parser would not pass over for its prefix, nor as a plain (not retained) publish: what is left of a
# busy log once its traffic is taken out, found by the regex engine without a Python step per line.
# Anchored on the newline before each line (a literal the engine finds fast), not `^`: a third of the cost.
_NOTEWORTHY = re.compile(
    rb"\n((?:\d+: )?+(?!" + b"|".join(re.escape(p) for p in _SKIP_BYTES) + rb"|Received PUBLISH from (?![^\n]*, r1, ))"
    rb"[^\n]*)"
)


class BrokerLogParser:
    """Folds log lines into events. Stateful only across a SUBSCRIBE's lines (a single-threaded broker prints
    them together) and a connect's will lines."""

    def __init__(self) -> None:
        self._subscribing: str | None = None
        self._pending: list[str] = []
        self._client = ""  # the last connected client, whose will lines follow
        self._will = False  # its will's topic line comes next
        self._seen: set[str] = set()  # clients whose first plain publish was reported (open mode: ids are free)

    def feed_bytes(self, raw: bytes) -> list[BrokerEvent]:
        """A line as read from the file. The bulk of a busy lab's log — the traffic's PUBLISH and PUBACK lines,
        a known client's plain publishes — is passed over without being decoded: decoding and parsing every
        line cost the hub 12% of its time at 90,000 messages/s. The same lines `feed` would pass over."""
        if len(raw) <= MAX_LINE:
            head, sep, text = raw.partition(b": ")
            if not sep or not head.isdigit():
                text = raw
            if text.startswith(_SKIP_BYTES):
                return []
            if text.startswith(_RECEIVED) and b", r1, " not in text:
                end = text.find(b" (d", len(_RECEIVED))
                if end >= 0 and text[len(_RECEIVED) : end].decode("utf-8", errors="replace") in self._seen:
                    return []
        return self.feed(raw.decode("utf-8", errors="replace"))

    def feed(self, raw: str) -> list[BrokerEvent]:
        line = raw.rstrip("\r\n")[:MAX_LINE]
        head, sep, text = line.partition(": ")
        if not sep or not head.isdigit():
            text = line  # a line without the time prefix (log_timestamp false)
        if text.startswith(_SKIP):
            return []
        if text.startswith("Received PUBLISH") and ", r1, " not in text:
            return self._first_publish(text)  # the bulk of a busy lab's log: only a client's first one counts
        if self._will:
            self._will = False
            if text.startswith("\t"):  # the will's topic: it names the device in open mode too
                return [BrokerEvent(ev.WILL, self._client, topic=text[1:], will=True, line="will on " + text[1:])]
        if self._subscribing is not None:
            events = self._subscription(text)
            if events is not None:
                return events
        return self._one(text)

    def _first_publish(self, text: str) -> list[BrokerEvent]:
        """A client's first publish since it connected (its topic names its device when its id does not)."""
        end = text.find(" (d", 22)
        client = text[len("Received PUBLISH from ") : end]
        if end < 0 or client in self._seen:
            return []
        if len(self._seen) >= MAX_CLIENTS:
            self._seen.clear()
        self._seen.add(client)
        found = _PUBLISH.fullmatch(text)
        if found is None:
            return []
        return [BrokerEvent(ev.PUBLISHED, client, topic=found.group(4), size=int(found.group(5)), line=text)]

    def _subscription(self, text: str) -> list[BrokerEvent] | None:
        client = self._subscribing
        assert client is not None
        found = _SUBSCRIBE_TOPIC.fullmatch(text)
        if found:
            self._pending.append(found.group(1))
            return []
        if text == f"Sending SUBACK to {client}":
            denied = [
                BrokerEvent(ev.DENIED_SUBSCRIBE, client, topic=t, line=f"denied SUBSCRIBE {t}") for t in self._pending
            ]
            self._subscribing, self._pending = None, []
            return denied
        for topic in self._pending:
            if text.startswith(f"{client} ") and text.endswith(f" {topic}"):
                self._pending.remove(topic)
                return [BrokerEvent(ev.SUBSCRIBED, client, topic=topic, line=text)]
        return None

    def _one(self, text: str) -> list[BrokerEvent]:
        if text.startswith("Received SUBSCRIBE from "):
            self._subscribing, self._pending = text[len("Received SUBSCRIBE from ") :], []
            return []
        if text.startswith("New client connected"):
            found = _CONNECTED.fullmatch(text)
            if found:
                addr, client, user = found.groups()
                self._client = client
                self._seen.discard(client)  # a new connection: its first publish names its device again
                return [BrokerEvent(ev.CONNECTED, client, user or "", addr, line=text)]
            return []
        if text.startswith("Will message specified"):
            self._will = True
            return []
        if text == "No will message specified.":
            return [BrokerEvent(ev.WILL, self._client, will=False, line=text)]
        if text.startswith("Sending CONNACK"):
            found = _CONNACK.fullmatch(text)
            if found and found.group(2) in REFUSING_CONNACK:
                return [BrokerEvent(ev.REFUSED, address=found.group(1), line=text)]
            return []
        if "PUBLISH from" in text:
            found = _PUBLISH.fullmatch(text)
            if found:
                what, client, retain, topic, size = found.groups()
                kind = ev.PUBLISHED if what == "Received" else ev.DENIED_PUBLISH
                return [BrokerEvent(kind, client, topic=topic, retain=retain == "1", size=int(size), line=text)]
            return []
        if text.startswith(("Client ", "Socket error")):
            for pattern, kind in _CLIENT_LINES:
                found = pattern.fullmatch(text)
                if found:
                    return [BrokerEvent(kind, found.group(1), line=text)]
        return []


class BrokerLogFollower:
    """Reads what the broker appends to its events file and hands each event on; keeps the file under
    `max_bytes` by truncating it once read (the broker appends, so it carries on at the new end)."""

    def __init__(
        self,
        path: Path,
        on_event: Callable[[BrokerEvent], None],
        poll_s: float = 0.2,
        max_bytes: int = 16 * 2**20,
        chunk: int = 4 * 2**20,
        bulk_from_lines: int = BULK_FROM_LINES,
    ) -> None:
        self.path = path
        self.bulk_from_lines = bulk_from_lines
        self.on_event = on_event
        self.poll_s = poll_s
        self.max_bytes = max_bytes
        self.chunk = chunk
        self.parser = BrokerLogParser()
        self.offset: int | None = None  # None: start at the file's end (history before the hub is not news)
        self._partial = b""
        self.lines = 0  # lines read
        self.bulk_reads = 0  # reads whose traffic was passed over in bulk

    def read_new(self) -> list[bytes]:
        """The complete lines appended since the last call (blocking file I/O: run in a thread)."""
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return []
        if self.offset is None or size < self.offset:
            self.offset, self._partial = (size if self.offset is None else 0), b""
        if size == self.offset:
            if size > self.max_bytes:
                os.truncate(self.path, 0)
                self.offset = 0
            return []
        with open(self.path, "rb") as fh:
            fh.seek(self.offset)
            data = fh.read(self.chunk)
        self.offset += len(data)
        data = self._partial + data
        cut = data.rfind(b"\n") + 1
        whole, self._partial = data[:cut], data[cut:]
        count = whole.count(b"\n")
        self.lines += count
        if count > self.bulk_from_lines:
            # Under load, the traffic's lines are passed over in bulk: one by one they were a tenth of the hub's
            # samples at 30,000/s. Only a client's first plain publish is lost (it names its device in open
            # mode); it is seen at its next publish in a quieter read.
            self.bulk_reads += 1
            return _NOTEWORTHY.findall(b"\n" + whole, 0, len(whole))  # not the last newline: no empty line after
        return whole.split(b"\n")[:-1]

    def feed(self, lines: list[bytes]) -> None:
        feed = self.parser.feed_bytes
        for line in lines:
            for event in feed(line):
                self.on_event(event)

    async def run(self) -> None:
        warned = False
        while True:
            try:
                lines = await asyncio.to_thread(self.read_new)
            except OSError as err:
                if not warned:
                    log.warning("the lab doctor cannot read the broker's events (%s); retrying", err.strerror)
                    warned = True
                lines = []
            self.feed(lines)
            await asyncio.sleep(self.poll_s)
