"""A cohort as a trainer writes it in a spreadsheet: the CSV file read and checked, line by line. Pure.

The file comes from outside (an upload, a trainer's disk): it is size-capped before it is read, must be UTF-8,
and hostile text (control characters, lone surrogates, huge cells or files) is refused with a RegistryError
that names the line, never another exception.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

from devices.text import has_surrogates
from devices.topics import DeviceRef
from hub.access.records import RegistryError, check_device, check_learner

CSV_COLUMNS = ("cohort", "learner", "device", "kind", "profile", "description")
MAX_CSV_BYTES = 1 << 20  # a cohort of 1,000 devices is ~50 KiB
MAX_CSV_LINES = 10_000
MAX_CSV_FIELD = 1_000  # characters in one cell (descriptions are kept to 200)
_CONTROL = {c: None for c in range(32) if c not in (9, 10, 13)} | {0x7F: None}


@dataclass(frozen=True, slots=True)
class ImportLine:
    """One line of a cohort CSV: a learner, and optionally one of their devices."""

    cohort: str
    learner: str
    device: DeviceRef | None
    kind: str
    profile: str | None
    description: str


def decode_csv(data: bytes) -> str:
    """A cohort CSV's bytes as text: UTF-8 (a spreadsheet's BOM allowed), size-capped, no control characters."""
    if len(data) > MAX_CSV_BYTES:
        raise RegistryError(f"the CSV is {len(data)} bytes: at most {MAX_CSV_BYTES} (split the cohort)")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[: err.start].count(b"\n") + 1
        raise RegistryError(
            f"line {line}: the CSV is not UTF-8 text (save it from the spreadsheet as 'CSV UTF-8')"
        ) from None
    return text


def _check_cell(where: str, text: str) -> None:
    if len(text) > MAX_CSV_FIELD:
        raise RegistryError(f"{where}: a cell of {len(text)} characters (at most {MAX_CSV_FIELD})")
    if text.translate(_CONTROL) != text:
        raise RegistryError(f"{where}: a control character in {text[:40].encode('unicode_escape').decode()!r}")
    if has_surrogates(text):
        raise RegistryError(f"{where}: text that is not valid Unicode (a lone surrogate)")


def parse_csv(text: str, profiles: frozenset[str]) -> list[ImportLine]:
    """A header with cohort,learner[,device,kind,profile,description], then one line per learner or device."""
    try:
        return _parse_csv(text, profiles)
    except csv.Error as err:
        raise RegistryError(f"the CSV cannot be read: {escape_text(str(err))}") from None


def escape_text(text: str) -> str:
    return text[:120].encode("unicode_escape", "backslashreplace").decode("ascii")


def _parse_csv(text: str, profiles: frozenset[str]) -> list[ImportLine]:
    if len(text) > MAX_CSV_BYTES:
        raise RegistryError(f"the CSV is too large (at most {MAX_CSV_BYTES} characters)")
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff")), skipinitialspace=True)
    for name in reader.fieldnames or []:
        _check_cell("line 1", name)
    header = [h.strip().lower() for h in reader.fieldnames or []]
    if "cohort" not in header or "learner" not in header:
        raise RegistryError("the CSV needs a header line with at least: cohort,learner (then device,kind,…)")
    unknown = [h for h in header if h not in CSV_COLUMNS]
    if unknown:
        raise RegistryError(f"unknown CSV column(s) {', '.join(unknown)} (known: {', '.join(CSV_COLUMNS)})")
    reader.fieldnames = header
    lines = []
    for row in reader:
        where = f"line {reader.line_num}"
        if reader.line_num > MAX_CSV_LINES:
            raise RegistryError(f"{where}: at most {MAX_CSV_LINES} lines (split the cohort)")
        values = {k: (v or "").strip() for k, v in row.items() if k is not None}
        for value in values.values():
            _check_cell(where, value)
        if not any(values.values()):
            continue
        try:
            lines.append(_line(values, profiles))
        except RegistryError as err:
            raise RegistryError(f"{where}: {err}") from None
    if not lines:
        raise RegistryError("the CSV has no learners in it")
    return lines


def _line(values: dict[str, str], profiles: frozenset[str]) -> ImportLine:
    cohort, learner = check_learner(f"{values.get('cohort', '')}/{values.get('learner', '')}")
    device = values.get("device", "")
    kind = values.get("kind", "") or "generic"
    ref, profile = (None, None)
    if device:
        ref, profile = check_device(f"{cohort}/{learner}/{device}", kind, values.get("profile") or None, profiles)
    return ImportLine(cohort, learner, ref, kind, profile, values.get("description", "")[:200])
