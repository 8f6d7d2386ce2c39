"""Request bodies from outside, read as JSON with the limits no client of ours comes near: valid UTF-8 and Unicode,
integers of at most 19 digits, no NaN or Infinity, at most 32 levels deep. Checked in linear time."""

from __future__ import annotations

import json

from aiohttp import web

from devices.text import has_surrogates
from hub.web.common import error

MAX_JSON_DEPTH = 32  # a command is 3 levels deep
MAX_INT_DIGITS = 19  # int64; a longer integer is no angle, speed or id


class HostileBody(ValueError):
    """A body no client of ours sends: not UTF-8, lone surrogates, absurd numbers or nesting (→ 400)."""


def _parse_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise HostileBody(f"an integer of {len(text)} digits is too large (at most {MAX_INT_DIGITS})")
    return int(text)


def _no_constant(name: str) -> object:
    raise HostileBody(f"{name} is not a JSON number")


def _check_text(value: object) -> None:
    """Every string (keys too) valid Unicode, at most MAX_JSON_DEPTH levels: iterative, linear in the size."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if has_surrogates(item):
                raise HostileBody("the body holds a lone surrogate (e.g. \\ud800): text must be valid Unicode")
        elif isinstance(item, dict | list):
            if depth >= MAX_JSON_DEPTH:
                raise HostileBody(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
            if isinstance(item, dict):
                stack.extend((k, depth + 1) for k in item)
                stack.extend((v, depth + 1) for v in item.values())
            else:
                stack.extend((v, depth + 1) for v in item)


def parse_json(raw: bytes) -> object:
    """JSON from outside: HostileBody for what no client sends, ValueError if it is not JSON."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise HostileBody("the body is not UTF-8 text") from None
    try:
        value = json.loads(text, parse_int=_parse_int, parse_constant=_no_constant)
    except RecursionError:
        raise HostileBody(f"the body is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    _check_text(value)
    return value


async def json_body(request: web.Request) -> object:
    """The request's body as JSON from outside (see `parse_json`)."""
    return parse_json(await request.read())


async def object_body(request: web.Request) -> dict[str, object]:
    """The body as a JSON object, or 400."""
    try:
        body = await json_body(request)
    except HostileBody as err:
        raise error(web.HTTPBadRequest, str(err)) from None
    except ValueError:
        raise error(web.HTTPBadRequest, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise error(web.HTTPBadRequest, "the body must be a JSON object")
    return body


def text_field(body: dict[str, object], key: str, default: str | None = None) -> str:
    value = body.get(key, default)
    if not isinstance(value, str):
        raise error(web.HTTPBadRequest, f"{key!r} must be a string")
    return value
