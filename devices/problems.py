"""What can be wrong with what a device sent: a stable code, the field, the value, and the facts behind it.

Problems are plain data; `devices.feedback` turns them into sentences (English or French) for the device's
`errors` topic, the same way for a refused payload and for a serial cable's trouble. Bad input is a `ValueError`, per the project's error taxonomy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from dataclasses import field as dataclass_field


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a payload (or one field of it) was refused. `params` fill the message templates; `entry` picks
    the catalogue's explanation when one code has several (default: the code's own)."""

    code: str
    field: str | None = None
    value: object = None
    params: Mapping[str, object] = dataclass_field(default_factory=dict)
    entry: str | None = None


class PayloadRejected(ValueError):
    """A payload was refused; `problems` says every reason found, first one first."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__(", ".join(p.code for p in problems))
        self.problems = problems


def reject(code: str, field: str | None = None, value: object = None, **params: object) -> PayloadRejected:
    """Shorthand for a rejection with a single problem."""
    return PayloadRejected([Problem(code, field, value, params)])
