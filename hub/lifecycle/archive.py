"""`labhub cohort archive C DIR`: everything a cohort leaves behind, in a folder, with a manifest of checksums.

DIR holds `packs/<pack>.zip` (one data pack per learner: readings, schema, grades, notebook), `grades/` (every demo
of the cohort graded, as `labhub grade` writes it), `registry.json` (the cohort's learners, devices, demo sessions
and token metadata; never a secret nor a digest) and `MANIFEST.sha256` (`sha256sum -c` checks it). A marker
`<state_dir>/archives/<cohort>.json` records where the archive is and each file's checksum: `purge` refuses to run
unless the archive is still there and whole.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.access.records import RegistryError
from hub.access.registry import Registry
from hub.adapters.influx_read import Reader
from hub.credentials import private_dir, write_private
from hub.datapack.pack import PackTarget, write_pack
from hub.grading.reports import grade_session, write_reports
from hub.grading.rubrics import Rubric, load_rubrics

MANIFEST = "MANIFEST.sha256"


class ArchiveError(RuntimeError):
    """No archive to purge from, or one that is no longer what was written."""


@dataclass(frozen=True, slots=True)
class Archived:
    cohort: str
    folder: Path
    packs: int
    graded: int
    files: dict[str, str]  # path in the folder → SHA-256


def marker_path(state_dir: Path, cohort: str) -> Path:
    return state_dir / "archives" / f"{cohort}.json"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def registry_rows(registry: Registry, cohort: str) -> dict[str, Any]:
    """The cohort's rows as JSON: what the registry knew of it (token metadata only: no secret, no digest)."""
    return {
        "cohort": cohort,
        "learners": [dataclasses.asdict(r) for r in registry.learners(cohort)],
        "devices": [{**d.as_json(), "registered_ns": d.created_ns} for d in registry.devices(cohort)],
        "demo_sessions": [dataclasses.asdict(s) for s in registry.sessions(cohort)],
        "tokens": [t.as_json() for t in registry.cohort_tokens(cohort)],
    }


async def archive_cohort(
    reader: Reader,
    registry: Registry,
    cohort: str,
    folder: Path,
    state_dir: Path,
    rubrics: Mapping[str, Rubric] | None = None,
    now_ns: int | None = None,
) -> Archived:
    """Write the archive into `folder` (missing or empty), then the marker. RegistryError: no such cohort;
    ArchiveError: the folder holds something already. StorageError: InfluxDB failed (no marker is written)."""
    if cohort not in registry.cohorts():
        raise RegistryError(f"no cohort {cohort!r} in the registry")
    _check_empty(folder)
    now_ns = now_ns or time.time_ns()
    rubrics = load_rubrics() if rubrics is None else rubrics
    private_dir(private_dir(folder) / "packs")  # personal data: the owner's only
    learners = registry.learners(cohort)
    for record in learners:
        target = PackTarget(cohort, record.learner)
        await write_pack(reader, registry, target, folder / "packs" / f"{target.label}.zip", rubrics, now_ns)
    sessions = sorted(registry.sessions(cohort), key=lambda s: (s.learner, s.started_ns))
    reports = [await grade_session(reader, registry, s, rubrics, now_ns) for s in sessions]
    write_reports(folder / "grades", cohort, reports, rubrics)
    files = _seal(folder, state_dir, cohort, registry_rows(registry, cohort), now_ns)
    return Archived(cohort, folder, len(learners), len(reports), files)


def _check_empty(folder: Path) -> None:
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise ArchiveError(f"{folder}: not an empty folder; an archive goes into a new one")


def _seal(folder: Path, state_dir: Path, cohort: str, rows: dict[str, Any], now_ns: int) -> dict[str, str]:
    """The registry rows, the manifest of every file's checksum, then the marker that lets a purge run."""
    write_private(folder / "registry.json", json.dumps(rows, indent=1, ensure_ascii=False))
    files = {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    write_private(folder / MANIFEST, "".join(f"{digest}  {name}\n" for name, digest in files.items()))
    files[MANIFEST] = sha256(folder / MANIFEST)
    marker = {"cohort": cohort, "folder": str(folder.resolve()), "archived_ns": now_ns, "files": files}
    write_private(marker_path(state_dir, cohort), json.dumps(marker, indent=1), private_parent=True)
    return files


def check_archive(state_dir: Path, cohort: str) -> Path:
    """The archive's folder if its marker exists and every file it lists is there with its checksum; otherwise
    ArchiveError saying what to do."""
    path = marker_path(state_dir, cohort)
    redo = f"run `labhub cohort archive {cohort} DIR` (a new, empty DIR) first"
    try:
        marker = json.loads(path.read_text())
        folder, files = Path(marker["folder"]), dict(marker["files"])
    except FileNotFoundError:
        raise ArchiveError(f"cohort {cohort} was never archived: {redo}") from None
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ArchiveError(f"{path}: not an archive marker ({err}): {redo}") from None
    if marker.get("cohort") != cohort or not files:
        raise ArchiveError(f"{path}: not the marker of cohort {cohort}'s archive: {redo}")
    for name, digest in files.items():
        try:
            found = sha256(folder / name)
        except OSError as err:
            raise ArchiveError(f"archive of {cohort}: {folder / name}: {err.strerror}: {redo}") from None
        if found != digest:
            raise ArchiveError(f"archive of {cohort}: {folder / name} changed since it was written: {redo}")
    return folder
