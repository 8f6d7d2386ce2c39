"""`GET /api/devices/<c>/<l>/<d>/diagnosis`: the lab doctor's checklist and findings for one device.

Read like the device's other routes: its learner, and trainers and viewers of its cohort. The findings hold
no secret (a refused login's evidence names the address, never a password); the broker's lines in them name
only the device's own account.
"""

from __future__ import annotations

from aiohttp import web

from hub.web.common import deps_of, error
from hub.web.devices import state_of


async def device_diagnosis(request: web.Request) -> web.Response:
    state = state_of(request)  # 403 outside the token's reach, 404 for a device never seen nor declared
    doctor = deps_of(request).doctor
    if doctor is None:
        raise error(web.HTTPNotImplemented, "this hub runs no lab doctor")
    return web.json_response(doctor.report(state.ref), headers={"Cache-Control": "no-store"})
