"""`GET /api/devices/<c>/<l>/<d>/kit`: a device's ready kit as a zip, or one of its files (`?file=main.py`).

Read like the device's other routes (its learner, and trainers and viewers of its cohort). The password is in
the kit only for those who may hold it, the device's learner and its cohort's trainers, and only if the lab
holds it in clear (declared and simulated devices): otherwise the kit says "the password your trainer gave you".
A classroom screen's viewer token never gets one. Every answer is a download (attachment, no-store): a kit
holds an account.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from hub.access.policy import Action, Place, allows
from hub.access.records import Token
from hub.kits.writer import device_files, kit_zip
from hub.web.common import deps_of, error, token_of
from hub.web.devices import state_of

TYPES = {
    ".json": "application/json",
    ".html": "text/html",
    ".py": "text/x-python",
    ".crt": "application/x-x509-ca-cert",
}


def may_hold_password(token: Token, place: Place) -> bool:
    """The device's own learner, or a trainer of its cohort; never a viewer (a projected screen)."""
    return allows(token, Action.MANAGE, place) or (token.role == "learner" and allows(token, Action.READ, place))


def pick(files: dict[str, str], name: str) -> str | None:
    """A file of the kit by its path (`micropython/main.py`) or, when that is unambiguous, its name (`main.py`)."""
    if name in files:
        return name
    found = [path for path in files if path.rsplit("/", 1)[-1] == name]
    return found[0] if len(found) == 1 else None


async def device_kit(request: web.Request) -> web.Response:
    state = state_of(request)  # 403 outside the token's reach, 404 for a device never seen nor declared
    source = deps_of(request).kits
    if source is None:
        raise error(web.HTTPNotImplemented, "this hub makes no kits (it was started without the lab's settings)")
    if state.kind is None:
        raise error(web.HTTPNotFound, f"{state.ref.key} is not a device of this lab (not declared nor registered)")
    reveal = may_hold_password(token_of(request), Place.of(state.ref))
    settings = source.settings(state.ref, state.kind.name, reveal)
    # Rendering a kit (its QR code, sheet and zip) takes tens of ms: in a thread, the loop keeps serving meanwhile.
    files = await asyncio.to_thread(device_files, settings)
    stem = settings.file_stem
    headers = {"Cache-Control": "no-store"}
    wanted = request.query.get("file")
    if wanted is None:
        headers["Content-Disposition"] = f'attachment; filename="{stem}-kit.zip"'
        body = await asyncio.to_thread(kit_zip, files)
        return web.Response(body=body, content_type="application/zip", headers=headers)
    path = pick(files, wanted[:200])
    if path is None:
        raise error(web.HTTPNotFound, f"no file {wanted[:200]!r} in a kit; one of: {', '.join(sorted(files))}")
    name = path.rsplit("/", 1)[-1]
    headers["Content-Disposition"] = f'attachment; filename="{name}"'
    suffix = name[name.rfind(".") :] if "." in name else ""
    kind = TYPES.get(suffix, "text/plain")
    return web.Response(text=files[path], content_type=kind, charset="utf-8", headers=headers)
