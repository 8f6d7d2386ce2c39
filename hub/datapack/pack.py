"""Write a data pack: a zip per learner (all their data) or per demo session (its window and devices).

Inside one folder: `readings/<device>.csv` (streamed from InfluxDB by `hub.exports`, never held whole), `schema.json`,
`grades/<session>.json` and `.html` (the grade as `labhub grade` makes it, evidence included) and `analysis.ipynb`.
The zip goes to a path or any writable binary file; the HTTP handler gives it a temporary file, so memory stays
flat whatever the window. Writing the zip is blocking file I/O in small pieces between reads of InfluxDB.
"""

from __future__ import annotations

import json
import logging
import time
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devices.kinds import KINDS
from devices.topics import DeviceRef
from hub.access.records import DemoSession
from hub.access.registry import Registry
from hub.adapters.influx_read import Reader
from hub.datapack.contents import NOTEBOOK_NAME, SCHEMA_NAME, PackDevice, notebook_json, schema_json
from hub.exports import write_csv
from hub.exports.selection import Selection, Target
from hub.grading.reports import grade_session, learner_html, session_devices
from hub.grading.rubrics import Rubric, load_rubrics

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PackTarget:
    """Whose pack: a learner's (every device they have or had, every demo, over [start_ns, end_ns)) or, with
    `session`, one demo's (its devices as they were when it started, over its window)."""

    cohort: str
    learner: str
    session: DemoSession | None = None
    start_ns: int = 0
    end_ns: int | None = None  # None: the session's stop, or now

    @classmethod
    def of_session(cls, session: DemoSession) -> PackTarget:
        return cls(session.cohort, session.learner, session, session.started_ns, session.stopped_ns)

    @property
    def label(self) -> str:
        """The zip's folder and file name: `pack-<cohort>-<learner>[-<session>]` (names hold no dots nor slashes)."""
        tail = f"-{self.session.id}" if self.session else ""
        return f"pack-{self.cohort}-{self.learner}{tail}"

    @property
    def title(self) -> str:
        who = f"{self.cohort}/{self.learner}"
        return f"Data pack of {who}, demo {self.session.id}" if self.session else f"Data pack of {who}"


@dataclass(frozen=True, slots=True)
class PackSummary:
    files: tuple[str, ...]  # paths inside the zip
    devices: int
    grades: int


def _devices(registry: Registry, target: PackTarget) -> list[tuple[DeviceRef, str, str | None, int]]:
    """(ref, kind, profile, registered at) of the pack's devices; a device no longer registered is kept (its
    readings are still the learner's) with no registration time."""
    registered = {d.ref: d for d in registry.learner_devices(target.cohort, target.learner)}
    if target.session is not None:
        wanted = session_devices(registry, target.session)
    else:
        wanted = [(ref, d.kind) for ref, d in registered.items()]
        for session in registry.sessions(target.cohort, target.learner):
            wanted += [(DeviceRef.parse(key), kind) for key, kind in session.devices or ()]
    found: dict[DeviceRef, tuple[DeviceRef, str, str | None, int]] = {}
    for ref, kind in wanted:
        record = registered.get(ref)
        if record is not None and record.kind == kind:
            found.setdefault(ref, (ref, kind, record.profile, record.created_ns))
        else:
            found.setdefault(ref, (ref, kind, None, 0))
    return sorted(found.values(), key=lambda row: row[0].key)


async def write_pack(
    reader: Reader,
    registry: Registry,
    target: PackTarget,
    out: Path | IO[bytes],
    rubrics: Mapping[str, Rubric] | None = None,
    now_ns: int | None = None,
) -> PackSummary:
    """Write `target`'s pack as a zip to `out` (a path: whole or not at all, through `<name>.part`).
    StorageError: InfluxDB failed; RubricError: a rubric is wrong."""
    if isinstance(out, Path):
        part = out.with_name(out.name + ".part")
        try:
            with part.open("wb") as stream:
                summary = await write_pack(reader, registry, target, stream, rubrics, now_ns)
            part.replace(out)
        finally:
            part.unlink(missing_ok=True)
        return summary
    now_ns = now_ns or time.time_ns()
    end_ns = target.end_ns or now_ns
    start_ns = min(target.start_ns, end_ns - 1)
    rubrics = load_rubrics() if rubrics is None else rubrics
    sessions = [target.session] if target.session else registry.sessions(target.cohort, target.learner)
    field_types = await reader.field_types()
    root = target.label
    files: list[str] = []
    devices: list[PackDevice] = []
    grades: list[str] = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for ref, kind, profile, since in _devices(registry, target):
            known = KINDS.get(kind)
            if known is None:
                log.warning("pack %s: %s has kind %r, which this hub does not know: left out", root, ref.key, kind)
                continue
            name = f"readings/{ref.device}.csv"
            measurement = known.measurement_for(ref.cohort, ref.learner)
            observed = {f: t for (m, f), t in field_types.items() if m == measurement and f not in known.fields}
            selection = Selection((Target(ref, known, since),), start_ns, end_ns, label=ref.device)
            with zf.open(f"{root}/{name}", "w", force_zip64=True) as stream:
                await write_csv(reader, selection, stream)
            files.append(name)
            devices.append(PackDevice(ref.key, kind, profile, name, observed))
        for session in sessions:
            report = await grade_session(reader, registry, session, rubrics, now_ns)
            for suffix, text in (
                ("json", json.dumps(report.as_json(), indent=1, ensure_ascii=False)),
                ("html", learner_html(report, rubrics)),
            ):
                name = f"grades/{session.id}.{suffix}"
                zf.writestr(f"{root}/{name}", text)
                files.append(name)
            grades.append(f"grades/{session.id}.json")
        zf.writestr(f"{root}/{SCHEMA_NAME}", schema_json(target.title, (start_ns, end_ns), devices, grades))
        files.append(SCHEMA_NAME)
        zf.writestr(f"{root}/{NOTEBOOK_NAME}", notebook_json(target.title, [*files, NOTEBOOK_NAME]))
        files.append(NOTEBOOK_NAME)
    log.info("pack %s: %d devices, %d grades", root, len(devices), len(grades))
    return PackSummary(tuple(f"{root}/{f}" for f in files), len(devices), len(grades))
