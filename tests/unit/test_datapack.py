"""The data pack's pure parts: schema.json (units, sensor ranges, open kinds' own fields), the notebook as valid
nbformat whose code compiles, and which devices a learner's or a demo's pack holds."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from devices.topics import DeviceRef
from hub.access.registry import Registry
from hub.datapack.contents import PackDevice, notebook_json, schema_json
from hub.datapack.pack import PackTarget, _devices


def test_schema_json_gives_units_ranges_and_an_open_kinds_fields() -> None:
    devices = [
        PackDevice("c/ana/aq1", "air_quality", None, "readings/aq1.csv", {}),
        PackDevice("c/ana/proj", "generic", None, "readings/proj.csv", {"light": "float", "note": "string"}),
    ]
    schema = json.loads(schema_json("Data pack of c/ana", (1, 2), devices, ["grades/s1.json"]))
    assert schema["window"] == {"start_ns": 1, "end_ns": 2} and schema["grades"] == ["grades/s1.json"]
    assert schema["devices"][0]["fields"]["pm2_5"] == {
        "type": "float",
        "unit": "µg/m³",
        "minimum": 0,
        "maximum": 1000,
        "sensor": "SDS011: 0–999.9, PMS5003: 0–1000 µg/m³",
    }
    assert schema["devices"][1]["fields"] == {
        "light": {"type": "float", "unit": "", "minimum": None, "maximum": None, "sensor": ""},
        "note": {"type": "string", "unit": "", "minimum": None, "maximum": None, "sensor": ""},
    }
    assert set(schema["kinds"]) == {"air_quality", "generic"}
    assert schema["kinds"]["generic"] == {
        "description": "A learner's own project: any numeric, boolean or short string fields",
        "open_fields": True,
        "fields": {},
    }


def test_the_notebook_is_valid_nbformat_and_its_code_compiles() -> None:
    text = notebook_json("Data pack of c/ana", ["readings/aq1.csv", "schema.json"])
    notebook = nbformat.reads(text, as_version=4)
    nbformat.validate(notebook)
    code = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert len(code) == 4 and all(not cell.outputs for cell in notebook.cells if cell.cell_type == "code")
    for n, source in enumerate(code):
        compile(source, f"cell {n}", "exec")
    assert "`readings/aq1.csv`" in notebook.cells[0].source


def test_a_learners_pack_keeps_devices_no_longer_registered_and_a_demos_its_own(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry.sqlite3")
    try:
        old, aq, bob = DeviceRef("c", "ana", "old"), DeviceRef("c", "ana", "aq1"), DeviceRef("c", "bob", "aq1")
        for ref in (old, aq, bob):
            registry.add_device(ref, "air_quality", None)
        demo = registry.start_session("c", "ana", "t", now_ns=10)
        registry.stop_session(demo.id, now_ns=20)
        registry.remove_device(old)
        registry.add_device(DeviceRef("c", "ana", "arm1"), "arm", "mearm")
        learner = [(ref.key, kind, profile) for ref, kind, profile, _ in _devices(registry, PackTarget("c", "ana"))]
        assert learner == [
            ("c/ana/aq1", "air_quality", None),
            ("c/ana/arm1", "arm", "mearm"),
            ("c/ana/old", "air_quality", None),
        ]
        session = registry.session(demo.id)
        assert session is not None
        target = PackTarget.of_session(session)
        assert (target.label, target.start_ns, target.end_ns) == (f"pack-c-ana-{demo.id}", 10, 20)
        in_demo = _devices(registry, target)
        assert [(ref.key, since) for ref, _, _, since in in_demo] == [
            ("c/ana/aq1", registry.device(aq).created_ns),  # type: ignore[union-attr]
            ("c/ana/old", 0),  # gone from the registry: no registration time to cut at
        ]
    finally:
        registry.close()
