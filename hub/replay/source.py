"""A replay's data, read from InfluxDB only, through the one `Reader`: a finished (or running) demo session's
devices over its window, or one device over any window. Nothing comes from a running hub's memory, so a replay is
the same after a restart and on every backend that answers InfluxQL.

Readings are paged as exports page them (`hub.exports.stream.pages`: the same queries, a page's memory at a
time while reading); presence, commands, refusals and diagnoses are the reads grading makes (few points each).
"""

from __future__ import annotations

from devices.arm import DEFAULT_PROFILE, ArmProfile, load_profiles
from devices.topics import DeviceRef
from hub.access.records import DemoSession
from hub.access.registry import Registry
from hub.adapters.influx_read import FieldValue, Reader
from hub.exports.scopes import session_targets, session_window
from hub.exports.selection import Selection, Target
from hub.exports.stream import pages
from hub.replay.timeline import MAX_FRAMES, DeviceData, Timeline, build

MAX_WINDOW_S = 86400  # a replay of at most a day: a demo lasts minutes, a lab session hours


async def recorded_readings(
    reader: Reader, target: Target, start_ns: int, end_ns: int, limit: int = MAX_FRAMES
) -> list[tuple[int, dict[str, FieldValue]]]:
    """The device's stored readings over [start_ns, end_ns), oldest first (at most `limit` and a page more)."""
    readings: list[tuple[int, dict[str, FieldValue]]] = []
    async for page in pages(reader, Selection((target,), start_ns, end_ns)):
        readings += [(int(row["time_ns"]), _fields(row)) for row in page]
        if len(readings) > limit:
            break
    return readings


async def device_data(
    reader: Reader, target: Target, start_ns: int, end_ns: int, profile: ArmProfile | None
) -> DeviceData:
    ref = target.ref
    return DeviceData(
        ref.key,
        target.kind.name,
        await recorded_readings(reader, target, start_ns, end_ns),
        await reader.presence(ref, start_ns, end_ns),
        await reader.commands(ref, start_ns, end_ns),
        await reader.rejections(ref, start_ns, end_ns),
        await reader.readings("diagnoses", ref, 0, end_ns),  # only changes of findings: few points
        profile,
    )


def _fields(row: dict[str, object]) -> dict[str, FieldValue]:
    skip = ("time_ns", "time", "cohort", "learner", "device")
    return {k: v for k, v in row.items() if k not in skip and isinstance(v, float | int | str | bool)}


def profile_of(registry: Registry, ref: DeviceRef, kind: str) -> ArmProfile | None:
    """An arm's profile as registered (an arm registered without one: the default profile)."""
    if kind != "arm":
        return None
    record = registry.device(ref)
    profiles = load_profiles()
    name = (record.profile if record is not None else None) or DEFAULT_PROFILE
    return profiles.get(name) or profiles.get(DEFAULT_PROFILE)


def check_window(start_ns: int, end_ns: int) -> None:
    if not start_ns < end_ns:
        raise ValueError("the window must end after it starts (from < to)")
    if end_ns - start_ns > MAX_WINDOW_S * 1_000_000_000:
        raise ValueError(f"a replay covers at most {MAX_WINDOW_S // 3600} hours")


async def targets_timeline(
    reader: Reader, registry: Registry, targets: tuple[Target, ...], start_ns: int, end_ns: int
) -> Timeline:
    check_window(start_ns, end_ns)
    data = [await device_data(reader, t, start_ns, end_ns, profile_of(registry, t.ref, t.kind.name)) for t in targets]
    return build(start_ns, end_ns, data)


async def session_timeline(reader: Reader, registry: Registry, session: DemoSession, now_ns: int) -> Timeline:
    """A demo's devices (as they were when it started) over its window (a running demo: up to now)."""
    start, end = session_window(session, now_ns)
    return await targets_timeline(reader, registry, session_targets(registry, session), start, end)


async def device_timeline(reader: Reader, registry: Registry, target: Target, start_ns: int, end_ns: int) -> Timeline:
    """One device over [start_ns, end_ns) (its readings from before its registration, someone else's, left out)."""
    return await targets_timeline(reader, registry, (target,), start_ns, end_ns)
