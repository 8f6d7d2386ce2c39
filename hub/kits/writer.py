"""A kit on disk or in a zip: each device's files, and one sheet per learner with a card per device.

Layout, under the chosen folder (or at the zip's root for one device):

    <cohort>/<learner>/sheet.html                    the learner's printable sheet, a card per device
    <cohort>/<learner>/<device>/config.json          the settings, as JSON
    <cohort>/<learner>/<device>/ca.crt               the lab CA (LAN mode: TLS)
    <cohort>/<learner>/<device>/esp/labhub_kit/      labhub_kit.ino + secrets.h (ESP32, ESP8266)
    <cohort>/<learner>/<device>/micropython/         main.py + secrets.py
    <cohort>/<learner>/<device>/uno/labhub_uno/      labhub_uno.ino (USB, through the serial bridge)

Files hold passwords: they are written for their owner only (0600 in 0700 folders).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable, Mapping
from itertools import groupby
from pathlib import Path

from hub.credentials import write_private
from hub.kits.arduino import esp_sketch, secrets_h, uno_sketch
from hub.kits.micropython import main_py, secrets_py
from hub.kits.settings import KitSettings, settings_json
from hub.kits.sheet import sheet

ESP_SKETCH = "esp/labhub_kit/labhub_kit.ino"  # an Arduino sketch lives in a folder of its own name
ESP_SECRETS = "esp/labhub_kit/secrets.h"
UNO_SKETCH = "uno/labhub_uno/labhub_uno.ino"
MICROPYTHON_MAIN = "micropython/main.py"
MICROPYTHON_SECRETS = "micropython/secrets.py"


def device_files(s: KitSettings) -> dict[str, str]:
    """One device's kit: relative path → text."""
    files = {
        "config.json": json.dumps(settings_json(s), indent=2, ensure_ascii=False) + "\n",
        ESP_SKETCH: esp_sketch(s),
        ESP_SECRETS: secrets_h(s),
        MICROPYTHON_MAIN: main_py(s),
        MICROPYTHON_SECRETS: secrets_py(s),
        UNO_SKETCH: uno_sketch(s),
        "sheet.html": sheet(s.ref.key, [s]),
    }
    if s.broker.ca_pem:
        files["ca.crt"] = s.broker.ca_pem
    return files


def kit_files(settings: Iterable[KitSettings]) -> dict[str, str]:
    """Many devices' kits: `<cohort>/<learner>/sheet.html` and `<cohort>/<learner>/<device>/…`."""
    files: dict[str, str] = {}
    ordered = sorted(settings, key=lambda s: s.ref.key)
    for (cohort, learner), group in groupby(ordered, key=lambda s: (s.ref.cohort, s.ref.learner)):
        devices = list(group)
        files[f"{cohort}/{learner}/sheet.html"] = sheet(f"{cohort}/{learner}", devices)
        for s in devices:
            for name, text in device_files(s).items():
                if name != "sheet.html":
                    files[f"{s.ref.key}/{name}"] = text
    return files


def write_kit(folder: Path, files: Mapping[str, str]) -> list[Path]:
    """Write `files` under `folder`, each for its owner only; the paths written."""
    written = []
    for name, text in files.items():
        path = folder / name
        write_private(path, text)
        written.append(path)
    return written


def kit_zip(files: Mapping[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, text in sorted(files.items()):
            archive.writestr(name, text)
    return buffer.getvalue()
