"""Which devices an export covers, from the registry: a device, a learner's, a cohort's, or those a demo session
graded (as they were when it started). Returns `Target`s for `hub.exports.selection.Selection`."""

from __future__ import annotations

from devices.topics import DeviceRef
from hub.access.records import DemoSession
from hub.access.registry import Registry
from hub.exports.selection import Target, target_of, targets_of


def device_target(registry: Registry, ref: DeviceRef, kind: str | None = None) -> Target | None:
    """A registered device; or, in an open lab, one the hub has seen as `kind` (no registration: every reading)."""
    record = registry.device(ref)
    if record is not None:
        return target_of(ref, record.kind, record.created_ns)
    return target_of(ref, kind) if kind is not None else None


def learner_targets(registry: Registry, cohort: str, learner: str) -> tuple[Target, ...]:
    return targets_of((d.ref, d.kind, d.created_ns) for d in registry.learner_devices(cohort, learner))


def cohort_targets(registry: Registry, cohort: str) -> tuple[Target, ...]:
    return targets_of((d.ref, d.kind, d.created_ns) for d in registry.devices(cohort))


def session_targets(registry: Registry, session: DemoSession) -> tuple[Target, ...]:
    """The devices the demo graded; its window is its own, so a later re-registration hides nothing."""
    if session.devices is not None:
        return targets_of((DeviceRef.parse(key), kind, 0) for key, kind in session.devices)
    return targets_of((d.ref, d.kind, 0) for d in registry.learner_devices(session.cohort, session.learner))


def session_window(session: DemoSession, now_ns: int) -> tuple[int, int]:
    """A demo's window: from its start to its stop (a running demo: to now)."""
    return session.started_ns, max(session.started_ns + 1, session.stopped_ns or now_ns)
