"""What a showcase page shows from InfluxDB: its chosen plots over its window, and its demo's grade when the
learner opted in, both over the project's devices only. Read through the one `Reader`, like every other read of the
hub."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.access.records import DemoSession
from hub.access.registry import Registry
from hub.adapters.influx_read import Reader
from hub.grading import svgplot
from hub.grading.reports import grade_session, session_devices
from hub.grading.rubrics import Rubric
from hub.showcase.model import Showcase


def _kind_of(registry: Registry, showcase: Showcase, device: str) -> str:
    session = registry.session(showcase.session) if showcase.session else None
    for key, kind in (session.devices or ()) if session else ():
        if key == device:
            return kind
    record = registry.device(DeviceRef.parse(device))
    return record.kind if record is not None else "generic"


async def plots_svg(reader: Reader, registry: Registry, showcase: Showcase) -> str:
    """One SVG, a panel per chosen plot, over the showcase's window ("" without plots)."""
    if not showcase.plots:
        return ""
    wanted: dict[str, list[str]] = {}
    for spec in showcase.plots:
        device, _, field = spec.rpartition(":")
        wanted.setdefault(device, []).append(field)
    series = []
    for device, fields in wanted.items():
        ref = DeviceRef.parse(device)
        kind = KINDS.get(_kind_of(registry, showcase, device), KINDS["generic"])
        rows = await reader.readings(
            kind.measurement_for(ref.cohort, ref.learner), ref, showcase.start_ns, showcase.end_ns
        )
        for name in fields:
            points = [
                (t / 1e9, float(v))
                for t, values in rows
                if isinstance(v := values.get(name), int | float) and not isinstance(v, bool)
            ]
            spec_ = kind.fields.get(name)
            series.append(svgplot.Series(f"{ref.device}: {name}", points, spec_.unit if spec_ else ""))
    return svgplot.render(series, showcase.start_ns / 1e9, showcase.end_ns / 1e9)


def shown_session(registry: Registry, showcase: Showcase) -> DemoSession | None:
    """The showcase's demo as its visitors see it: narrowed to the project's devices, so its replay, grade and
    data pack say nothing of a device the demo recorded but the project does not show."""
    session = registry.session(showcase.session) if showcase.session else None
    return None if session is None else _narrowed(registry, session, showcase)


def _narrowed(registry: Registry, session: DemoSession, showcase: Showcase) -> DemoSession:
    shown = tuple((ref.key, kind) for ref, kind in session_devices(registry, session) if ref.key in showcase.devices)
    return replace(session, devices=shown)


async def grade_json(
    reader: Reader, registry: Registry, showcase: Showcase, rubrics: Mapping[str, Rubric]
) -> dict[str, Any] | None:
    """The demo's grade over the project's devices, only when the learner chose to show it; when the project
    leaves some of the demo's devices out, the whole demo's score beside it (`demo_score_percent`), so a page
    cannot show a better grade than the demo earned without saying so."""
    whole = registry.session(showcase.session) if showcase.show_grade and showcase.session else None
    if whole is None:
        return None
    session = _narrowed(registry, whole, showcase)
    grade = (await grade_session(reader, registry, session, rubrics)).as_json()
    if len(session.devices or ()) != len(session_devices(registry, whole)):
        grade["demo_score_percent"] = (await grade_session(reader, registry, whole, rubrics)).as_json()["score_percent"]
    return grade
