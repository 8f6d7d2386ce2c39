"""Arm commands over HTTP: send one (checked by the relay exactly like MQTT requests), follow it (long-poll with
?wait=S), list an arm's recent ones, and read its profile (joints, limits, poses) with its current pose."""

from __future__ import annotations

from aiohttp import web

from devices.arm import CommandError
from devices.topics import DeviceRef
from hub.access.policy import Action, Place
from hub.commands.relay import FINAL, OfflineError, command_error_json
from hub.web.bodies import HostileBody, json_body
from hub.web.common import deps_of, error, readable, ref_of, require, wait_s
from hub.web.deps import ArmView


def arm_of(request: web.Request) -> tuple[DeviceRef, ArmView]:
    ref = ref_of(request)
    readable(request, ref)
    arm = deps_of(request).commands.arm(ref)
    if arm is None:
        raise error(web.HTTPNotFound, f"{ref.key} is not a known arm")
    return ref, arm


async def post_command(request: web.Request) -> web.Response:
    """Send a command to an arm: 202 with its record (200 once finished with ?wait=S), 422 if unsafe,
    409 if the device is offline, 404 if it is not an arm."""
    commands = deps_of(request).commands
    ref, _ = arm_of(request)
    require(request, Action.COMMAND, Place.of(ref), f"send commands to {ref.key}")
    try:
        body = await json_body(request)
    except HostileBody as err:
        return web.json_response({"error": {"code": "malformed", "message": str(err)}}, status=400)
    except ValueError:
        return web.json_response(
            {"error": {"code": "malformed", "message": "the body must be a JSON command"}}, status=422
        )
    key = request.headers.get("Idempotency-Key") or (body.get("idempotency_key") if isinstance(body, dict) else None)
    try:
        record = commands.submit(ref, body, "http", idempotency_key=str(key)[:128] if key else None)
    except CommandError as err:
        return web.json_response(command_error_json(err), status=422)
    except OfflineError as err:
        return web.json_response(err.record.as_json(), status=409)
    record = await commands.wait(record, wait_s(request))
    return web.json_response(record.as_json(), status=200 if record.state in FINAL else 202)


async def arm_profile(request: web.Request) -> web.Response:
    """An arm's joints with their limits and top speeds, its poses and gripper, and its current pose."""
    ref, arm = arm_of(request)
    profile = arm.profile
    return web.json_response(
        {
            "device": ref.key,
            "profile": profile.name,
            "description": profile.description,
            "joints": {
                j.name: {"min": j.minimum, "max": j.maximum, "max_speed": j.max_speed, "home": j.home}
                for j in profile.joints.values()
            },
            "coupled": [{"joint": c.joint, "on": c.on, "points": [list(p) for p in c.points]} for c in profile.coupled],
            "poses": {name: dict(pose) for name, pose in profile.poses.items()},
            "gripper": {"joint": profile.gripper, "open": profile.gripper_open, "closed": profile.gripper_closed}
            if profile.gripper
            else None,
            "pose": dict(arm.pose),
        }
    )


async def get_command(request: web.Request) -> web.Response:
    commands = deps_of(request).commands
    record = commands.command(request.match_info["id"])
    if record is None:
        raise error(web.HTTPNotFound, "no such command (or too old to remember)")
    readable(request, record.device)
    record = await commands.wait(record, wait_s(request))
    return web.json_response(record.as_json())


async def list_commands(request: web.Request) -> web.Response:
    ref, arm = arm_of(request)
    return web.json_response(
        {
            "device": ref.key,
            "profile": arm.profile.name,
            "pose": dict(arm.pose),
            "commands": [r.as_json() for r in reversed(arm.recent)],
        }
    )
