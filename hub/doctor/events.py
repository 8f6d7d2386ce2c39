"""What the lab doctor is fed: the broker's events (from its log) and the traffic the hub already sees.

Small frozen values made once at the edge (hub.doctor.brokerlog parses the broker's lines, the ingest
pipeline reports readings), so the engine never sees a log line's format or a paho object.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from devices.topics import DeviceRef, TopicError

# Broker event kinds
CONNECTED = "connected"  # a login was accepted ("New client connected from … as …")
WILL = "will"  # the last connection said whether it set a will (debug lines after the connect)
REFUSED = "refused"  # a login was refused (CONNACK 4/5/134/135 to an address; the broker names no user)
COLLISION = "collision"  # "Client … already connected, closing old connection."
CLEAN_END = "clean_end"  # a DISCONNECT packet
UNCLEAN_END = "unclean_end"  # the socket closed without DISCONNECT
TIMEOUT = "timeout"  # "Client … has exceeded timeout, disconnecting."
PUBLISHED = "published"  # "Received PUBLISH from …" (allowed)
DENIED_PUBLISH = "denied_publish"
SUBSCRIBED = "subscribed"  # granted
DENIED_SUBSCRIBE = "denied_subscribe"

# Traffic kinds
READING = "reading"
REJECTED = "rejected"
STATUS = "status"


@dataclass(frozen=True, slots=True)
class BrokerEvent:
    kind: str
    client: str = ""  # the client id ("" when the broker did not know it yet)
    username: str = ""
    address: str = ""  # the client's IP address, when the line gives it
    topic: str = ""
    retain: bool = False
    size: int = 0
    will: bool | None = None
    line: str = ""  # the broker's own line, kept as evidence (only in the hub's memory and its private file)


@dataclass(frozen=True, slots=True)
class Traffic:
    """One message the hub handled for a device: a reading accepted, a payload rejected, or a status."""

    ref: DeviceRef
    kind: str
    topic: str = ""
    device_kind: str = ""
    size: int = 0
    device_ts_ns: int | None = None  # the device's own timestamp, when it sent one
    fields: Mapping[str, object] = field(default_factory=dict)
    codes: tuple[str, ...] = ()  # a rejection's problem codes
    params: Mapping[str, object] = field(default_factory=dict)  # the first problem's params (and its value)
    online: bool | None = None  # status: online / offline / neither
    retain: bool = False
    sample: str = ""  # a short printable copy of the payload


def device_of(name: str) -> DeviceRef | None:
    """The device an account name (or a closed lab's client id) stands for: `cohort/learner/device`."""
    if name.count("/") != 2:
        return None
    try:
        return DeviceRef.parse(name)
    except TopicError:
        return None
