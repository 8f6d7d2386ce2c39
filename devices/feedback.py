"""Sentences for problems, in English and French: what is wrong, and what a beginner can do about it.

Each code maps to a message and a hint per language (the payload texts in devices.feedback_payload, the
serial cable's in devices.feedback_serial). Templates use `str.format` with the problem's
field, value and params; a missing parameter renders as '?' rather than failing.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping

from devices.feedback_payload import PAYLOAD_TEXTS
from devices.feedback_serial import SERIAL_TEXTS
from devices.problems import Problem
from devices.text import valid_text

LANGUAGES = ("en", "fr")
VALUE_PREVIEW = 80

# code (or a problem's `entry`): {lang: (message, hint)}
CATALOGUE: Mapping[str, Mapping[str, tuple[str, str]]] = {**PAYLOAD_TEXTS, **SERIAL_TEXTS}

WARNINGS = frozenset({"timestamp_collision"})


class _Lenient(dict[str, object]):
    def __missing__(self, key: str) -> str:
        return "?"


def preview(value: object) -> str:
    """A short printable copy of an offending value."""
    if isinstance(value, (bytes, bytearray)):
        text = bytes(value).hex(" ")
    elif isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, allow_nan=True)
        except (TypeError, ValueError):
            text = repr(value)
    text = valid_text(text)
    return text if len(text) <= VALUE_PREVIEW else text[: VALUE_PREVIEW - 1] + "…"


def render(problem: Problem, lang: str = "en") -> dict[str, object]:
    """The JSON-ready description of one problem, in `lang` (falls back to English)."""
    entries = CATALOGUE.get(problem.entry or problem.code)
    if entries is None:
        message, hint = problem.code.replace("_", " "), ""
    else:
        message, hint = entries.get(lang) or entries["en"]
    values = _Lenient(problem.params)
    field = None if problem.field is None else preview(problem.field)
    values["field"] = field if field is not None else "?"
    values["value"] = preview(problem.value)
    formatter = string.Formatter()
    out: dict[str, object] = {
        "code": problem.code,
        "severity": "warning" if problem.code in WARNINGS else "error",
        "field": field,
        "value": None if problem.value is None else preview(problem.value),
        "message": formatter.vformat(message, (), values),
        "hint": formatter.vformat(hint, (), values),
    }
    return out
