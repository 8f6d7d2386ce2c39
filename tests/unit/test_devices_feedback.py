"""The device contract's one error vocabulary: payload and serial problems in one catalogue, rendered alike; and
devices/ stays pure (no hub, no asyncio, no I/O library).
"""

import ast
from pathlib import Path

from devices.feedback import CATALOGUE, render
from devices.feedback_payload import PAYLOAD_TEXTS
from devices.feedback_serial import SERIAL_TEXTS
from devices.problems import Problem

DEVICES = Path(__file__).resolve().parents[2] / "devices"
FORBIDDEN = {"hub", "asyncio", "paho", "aiohttp", "influxdb_client", "serial"}


def test_the_catalogue_is_the_payload_and_serial_texts_without_overlap() -> None:
    assert set(PAYLOAD_TEXTS).isdisjoint(SERIAL_TEXTS)
    assert dict(CATALOGUE) == {**PAYLOAD_TEXTS, **SERIAL_TEXTS}


def test_an_entry_picks_the_explanation_and_keeps_the_code() -> None:
    problem = Problem("serial_garbage", params={"size": 3}, entry="serial_garbage_sds011")
    assert render(problem) == {
        "code": "serial_garbage",
        "severity": "error",
        "field": None,
        "value": None,
        "message": "3 bytes that are not SDS011 frames",
        "hint": "the SDS011 talks at 9600 baud (8N1): check --baud and that TX/RX are not swapped",
    }
    assert render(problem, "fr")["message"] == "3 octets qui ne sont pas des trames SDS011"
    assert render(Problem("serial_garbage"))["message"] == "unreadable bytes on the serial line"


def test_devices_imports_nothing_from_the_hub_or_an_io_library() -> None:
    found: dict[str, set[str]] = {}
    for path in sorted(DEVICES.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            if isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            bad = {n.split(".")[0] for n in names} & FORBIDDEN
            if bad:
                found.setdefault(path.name, set()).update(bad)
    assert found == {}
