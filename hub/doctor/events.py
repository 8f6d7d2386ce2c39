"""What the lab doctor is fed from the broker: its events, parsed from its log (the traffic the hub sees comes
as hub.ingest.traffic's values). Small frozen values made once at the edge, so the engine never sees a log line.
"""

from __future__ import annotations

from dataclasses import dataclass

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


def device_of(name: str) -> DeviceRef | None:
    """The device an account name (or a closed lab's client id) stands for: `cohort/learner/device`."""
    if name.count("/") != 2:
        return None
    try:
        return DeviceRef.parse(name)
    except TopicError:
        return None
