"""What goes in a data pack besides the readings, as pure functions: `schema.json` and the notebook.

The notebook is nbformat 4 JSON written here (no Jupyter at run time). Its code is the same for every pack and
reads everything it needs from `schema.json`, so the code a learner sees is short, and a test that runs one
pack's notebook runs them all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from devices.kinds import KINDS, DeviceKind, FieldSpec

SCHEMA_VERSION = 1
NOTEBOOK_NAME = "analysis.ipynb"
SCHEMA_NAME = "schema.json"


@dataclass(frozen=True, slots=True)
class PackDevice:
    """One device in a pack: where its CSV is, and the fields InfluxDB holds for it (open kinds: as sent)."""

    key: str  # cohort/learner/device
    kind: str
    profile: str | None
    csv: str  # path inside the zip
    observed: Mapping[str, str]  # field → InfluxDB type, for fields the kind does not fix


def _bound(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no infinity: an open bound is null


def field_json(spec: FieldSpec) -> dict[str, Any]:
    return {
        "type": spec.type.value,
        "unit": spec.unit,
        "minimum": _bound(spec.minimum),
        "maximum": _bound(spec.maximum),
        "sensor": spec.sensor,
    }


def kind_json(kind: DeviceKind) -> dict[str, Any]:
    return {
        "description": kind.description,
        "open_fields": kind.open_fields,
        "fields": {name: field_json(spec) for name, spec in kind.fields.items()},
    }


def device_fields(device: PackDevice) -> dict[str, Any]:
    """The kind's fields, then those the device sent that its kind does not fix (no unit or range known)."""
    kind = KINDS.get(device.kind)
    fields = {name: field_json(spec) for name, spec in kind.fields.items()} if kind else {}
    for name, influx_type in sorted(device.observed.items()):
        fields.setdefault(name, {"type": influx_type, "unit": "", "minimum": None, "maximum": None, "sensor": ""})
    return fields


def schema_json(title: str, window: tuple[int, int], devices: Sequence[PackDevice], grades: Sequence[str]) -> str:
    """`schema.json`: the pack's devices with their fields, units and sensor ranges, and the device kinds."""
    kinds = sorted({d.kind for d in devices if d.kind in KINDS})
    data = {
        "schema_version": SCHEMA_VERSION,
        "title": title,
        "window": {"start_ns": window[0], "end_ns": window[1]},
        "csv_columns": ["time_utc", "time_ns", "cohort", "learner", "device", "<one column per field>"],
        "devices": [
            {
                "key": d.key,
                "kind": d.kind,
                "profile": d.profile,
                "csv": d.csv,
                "fields": device_fields(d),
            }
            for d in devices
        ],
        "kinds": {name: kind_json(KINDS[name]) for name in kinds},
        "grades": list(grades),
    }
    return json.dumps(data, indent=1, ensure_ascii=False) + "\n"


# The notebook ----------------------------------------------------------------------------------------------

LOAD = '''\
import json
import re
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

HERE = Path(".")  # run the notebook from the unzipped pack
schema = json.loads((HERE / "schema.json").read_text(encoding="utf-8"))
TAGS = {"time_utc", "time_ns", "cohort", "learner", "device"}


def field_of(column):
    """The field a CSV column holds (a header may add its unit, as in `temperature (°C)`)."""
    match = re.match(r"[A-Za-z][A-Za-z0-9_]*", column)
    return match.group(0) if match else column


def unit_of(device, field):
    return device["fields"].get(field, {}).get("unit", "")


readings = {}
for device in schema["devices"]:
    frame = pd.read_csv(HERE / device["csv"])
    frame["time"] = pd.to_datetime(frame["time_ns"], unit="ns", utc=True)  # exact, whatever the pandas version
    readings[device["key"]] = frame
    print(f"{device['key']} ({device['kind']}): {len(frame)} readings")
'''

PLOTS = """\
for device in schema["devices"]:
    frame = readings[device["key"]]
    numeric = [c for c in frame.select_dtypes("number").columns if c not in TAGS and frame[c].notna().any()]
    if not numeric:
        print(f"{device['key']}: no numeric readings in the window")
        continue
    fig, axes = plt.subplots(len(numeric), 1, figsize=(10, 2.2 * len(numeric) + 0.6), sharex=True, squeeze=False)
    for ax, column in zip(axes[:, 0], numeric):
        field = field_of(column)
        unit = unit_of(device, field)
        ax.plot(frame["time"], frame[column], linewidth=0.8)
        ax.set_ylabel(f"{field}\\n({unit})" if unit else field)
        ax.grid(True, alpha=0.3)
    axes[0, 0].set_title(f"{device['key']} ({device['kind']})")
    axes[-1, 0].set_xlabel("time (UTC)")
    fig.tight_layout()
    plt.show()
"""

SUMMARY = """\
rows = []
for device in schema["devices"]:
    frame = readings[device["key"]]
    for column in frame.select_dtypes("number").columns:
        if column in TAGS:
            continue
        values = frame[column].dropna()
        field = field_of(column)
        spec = device["fields"].get(field, {})
        rows.append({
            "device": device["key"], "field": field, "unit": unit_of(device, field), "count": len(values),
            "mean": values.mean(), "min": values.min(), "max": values.max(), "std": values.std(),
            "sensor min": spec.get("minimum"), "sensor max": spec.get("maximum"),
        })
summary = pd.DataFrame(rows)
summary
"""

GRADES = """\
criteria = []
for name in schema["grades"]:
    grade = json.loads((HERE / name).read_text(encoding="utf-8"))
    for device in grade["devices"]:
        for criterion in device["criteria"]:
            criteria.append({
                "session": grade["session"]["id"], "device": device["device"], "criterion": criterion["title"],
                "value": criterion["value"], "score": criterion["score"], "weight": criterion["weight"],
            })
    print(f"demo {grade['session']['id']}: {grade['score_percent']}% ({grade['score_20']}/20)")
pd.DataFrame(criteria)
"""


def _cell(kind: str, text: str) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "metadata": {}, "source": text.splitlines(keepends=True)}
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def notebook_json(title: str, files: Sequence[str]) -> str:
    """The notebook (nbformat 4.5 JSON): load the CSVs, one figure per device (a panel per numeric field over
    time), a summary table per field, the grades' criteria."""
    listing = "\n".join(f"- `{name}`" for name in files)
    cells = [
        _cell(
            "markdown",
            f"# {title}\n\nThe readings InfluxDB held, as CSV (one file per device, UTC times), what they mean in "
            f"`schema.json` (fields, units, sensor ranges) and the grades of the demos. Run every cell (pandas and "
            f"matplotlib needed) from the folder where the pack is unzipped.\n\n{listing}\n",
        ),
        _cell("code", LOAD),
        _cell("markdown", "## Each numeric field over time\n\nOne figure per device, one panel per field."),
        _cell("code", PLOTS),
        _cell("markdown", "## Summary per field\n\nCompare the values with the sensor's range from its datasheet."),
        _cell("code", SUMMARY),
        _cell("markdown", "## Grades\n\nEach criterion of each demo, with the value measured from these readings."),
        _cell("code", GRADES),
    ]
    for n, cell in enumerate(cells):
        cell["id"] = f"cell-{n}"  # nbformat 4.5 asks for ids
    notebook = {
        "nbformat": 4,
        "nbformat_minor": 5,
        "metadata": {
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
        "cells": cells,
    }
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"
