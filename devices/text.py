"""Text rules of the device contract: what counts as valid text from outside. Pure.

JSON lets a sender write a lone UTF-16 surrogate (`"\\udc80"`); Python's parser turns it into a `str`
that cannot be encoded as UTF-8, so it would fail far from where it came in (the spool, a log line, an
answer). Every string from outside is checked or repaired here, at the edge.
"""

from __future__ import annotations

MAX_DEPTH = 64


def has_surrogates(text: str) -> bool:
    """True when `text` holds a lone surrogate: not valid Unicode, cannot be UTF-8."""
    if text.isascii():
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def valid_text(text: str) -> str:
    """`text` with every lone surrogate replaced by U+FFFD (valid pairs were already joined by the JSON parser)."""
    if not has_surrogates(text):
        return text
    return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def json_has_surrogates(value: object, depth: int = 0) -> bool:
    """Does a decoded JSON value hold a lone surrogate in any string, keys included? (Nesting is bounded by
    the parser; past MAX_DEPTH levels the answer is True: such input is refused anyway.)"""
    if isinstance(value, str):
        return has_surrogates(value)
    if depth > MAX_DEPTH:
        return True
    if isinstance(value, dict):
        return any(has_surrogates(str(k)) or json_has_surrogates(v, depth + 1) for k, v in value.items())
    if isinstance(value, list):
        return any(json_has_surrogates(v, depth + 1) for v in value)
    return False


def finite_float(value: object, limit: float = 1e15) -> float | None:
    """A JSON number as a float within ±`limit`, or None (booleans, NaN, infinities, and integers too large
    for a float, which would raise OverflowError in float() or math.isfinite())."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return float(value) if -limit <= value <= limit else None
    if isinstance(value, float):
        return value if -limit <= value <= limit else None  # NaN fails both comparisons
    return None
