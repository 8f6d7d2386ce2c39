"""What the intake tells the lab doctor about each message it handled (a reading, a rejection, a status).

Ingest's own small value, so the pipeline knows nothing of the doctor (hub.doctor reads these)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from devices.feedback import preview
from devices.topics import DeviceRef

READING = "reading"
REJECTED = "rejected"
STATUS = "status"


@dataclass(slots=True)  # not frozen: one per reading on the hot path, and frozen construction costs 3.5x
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
    payload: bytes = b""  # previewed only when it becomes evidence


def sample(item: Traffic) -> str:
    """A short printable copy of a message's payload, for a finding's evidence."""
    return preview(item.payload.decode("utf-8", errors="replace"))
