"""The OpenAPI description of the hub's HTTP API, served at /api/openapi.json.

A test checks it against the routes the app really has, both ways, so it cannot drift.
"""

from __future__ import annotations

from typing import Any

from hub.web.exports import openapi_paths as export_paths
from hub.web.packs import openapi_paths as pack_paths
from hub.web.replay import openapi_paths as replay_paths
from hub.web.showcase_doc import openapi_paths as showcase_paths

DEVICE = [
    {
        "name": name,
        "in": "path",
        "required": True,
        "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$"},
    }
    for name in ("cohort", "learner", "device")
]
WAIT = {
    "name": "wait",
    "in": "query",
    "required": False,
    "description": "long-poll: wait up to this many seconds (at most 30) for the command to finish",
    "schema": {"type": "number", "minimum": 0, "maximum": 30},
}
JSON = {"application/json": {"schema": {"type": "object"}}}
SESSION = {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}
COHORT = {"name": "cohort", "in": "query", "required": False, "schema": {"type": "string"}}
ACTION = {"name": "action", "in": "path", "required": True, "schema": {"enum": ["disable", "enable", "rotate"]}}
NEW_DEVICE = {
    "type": "object",
    "required": ["id"],
    "properties": {
        "id": {"type": "string", "description": "cohort/learner/device"},
        "kind": {"enum": ["air_quality", "arm", "generic"]},
        "profile": {"type": "string", "description": "arms: a profile from config/arms"},
        "description": {"type": "string"},
    },
}
NEW_TOKEN = {
    "type": "object",
    "required": ["role", "scope"],
    "properties": {
        "role": {"enum": ["trainer", "learner", "viewer"]},
        "scope": {"type": "string", "description": "trainer/viewer: a cohort or '*'; learner: cohort/learner"},
        "label": {"type": "string"},
    },
}


def _op(
    summary: str,
    params: list[dict[str, Any]] | None = None,
    responses: dict[str, str] | None = None,
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "summary": summary,
        "parameters": params or [],
        "responses": {
            code: {"description": text, "content": JSON} for code, text in (responses or {"200": "OK"}).items()
        },
    }
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


COMMAND = {
    "type": "object",
    "required": ["type"],
    "properties": {
        "type": {"enum": ["move", "pose", "gripper", "home", "stop"]},
        "targets": {"type": "object", "additionalProperties": {"type": "number"}, "description": "joint → degrees"},
        "speed": {"type": "number", "exclusiveMinimum": 0, "description": "degrees per second"},
        "name": {"type": "string", "description": "a pose of the arm's profile"},
        "action": {"enum": ["open", "close", "angle"]},
        "angle": {"type": "number"},
        "idempotency_key": {"type": "string", "description": "or the Idempotency-Key header"},
    },
}


PUBLIC = (
    "/",
    "/healthz",
    "/ca.crt",
    "/phone",
    "/board",
    "/board/showcases",
    "/dashboard",
    "/dashboard/device",
    "/dashboard/replay",
    "/mqtt",  # the broker authenticates the MQTT account
)  # no token: health, and page shells that log in with one


DEVICE_AUTH = (
    "/api/devices/{cohort}/{learner}/{device}/telemetry",
    "/api/devices/{cohort}/{learner}/{device}/telemetry/{field}",
)  # a board's own broker account (HTTP Basic), never an API token
READING = {
    "required": True,
    "content": {
        media: {"schema": {"type": "string"}}
        for media in ("application/json", "text/plain")  # JSON, line protocol, or a bare value on …/{field}
    },
}
TELEMETRY_ANSWERS = {
    "204": "on disk (as an MQTT reading is acknowledged)",
    "202": "taken, not yet on disk (a stalled disk): do not send it again",
    "401": "no or wrong device credentials",
    "403": "a valid account, but not this device's",
    "404": "no such field topic",
    "413": "over hub.max_payload_bytes",
    "422": "refused: the JSON message the device's errors topic gets (code, field, hint, problems)",
    "429": "too many posts for this device, or failed logins on its path (Retry-After)",
    "503": "intake paused, or the broker's accounts unreadable (Retry-After)",
}


def _telemetry(summary: str, params: list[dict[str, Any]]) -> dict[str, Any]:
    op = _op(summary, params, TELEMETRY_ANSWERS)
    op["requestBody"] = READING
    op["security"] = [{"device": []}]
    return op


def spec() -> dict[str, Any]:
    document = _spec()
    for path in document["paths"]:
        if path in PUBLIC or path.startswith("/static/"):  # pages and their scripts hold no data
            document["paths"][path]["get"]["security"] = []
    schemes = document["components"]["securitySchemes"]
    schemes["device"] = {"type": "http", "scheme": "basic", "description": "the device's MQTT username and password"}
    field = {"name": "field", "in": "path", "required": True, "schema": {"type": "string"}}
    document["paths"][DEVICE_AUTH[0]] = {"post": _telemetry("A device's reading, as on its telemetry topic", DEVICE)}
    document["paths"][DEVICE_AUTH[1]] = {"post": _telemetry("One field's bare value", [*DEVICE, field])}
    document["paths"] |= export_paths()
    document["paths"] |= pack_paths()
    document["paths"] |= showcase_paths()
    document["paths"] |= replay_paths()
    return document


def _spec() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "LabHub", "version": "0.1.0", "description": "The hub of an IoT maker lab."},
        "paths": {
            "/": {"get": _op("A short index page", responses={"200": "HTML"})},
            "/healthz": {
                "get": _op(
                    "ok or degraded; the reasons only with a trainer's or viewer's token",
                    responses={"200": "ok", "503": "degraded"},
                )
            },
            "/ca.crt": {
                "get": _op(
                    "LAN mode: the lab CA's certificate (PEM) that boards and phones trust",
                    responses={"200": "application/x-x509-ca-cert", "404": "not in LAN mode"},
                )
            },
            "/metrics": {"get": _op("Prometheus metrics", responses={"200": "text exposition format"})},
            "/api/openapi.json": {"get": _op("This description")},
            "/api/stats": {"get": _op("Counters: received, stored, rejected, spool, writer, MQTT")},
            "/api/devices": {
                "get": _op(
                    "Every known device",
                    [{"name": "cohort", "in": "query", "required": False, "schema": {"type": "string"}}],
                )
            },
            "/api/devices/{cohort}/{learner}/{device}": {
                "get": _op("One device", DEVICE, {"200": "OK", "404": "unknown device"})
            },
            "/api/devices/{cohort}/{learner}/{device}/inspector": {
                "get": _op("The last raw messages with their verdicts", DEVICE, {"200": "OK", "404": "unknown device"})
            },
            "/api/devices/{cohort}/{learner}/{device}/kit": {
                "get": _op(
                    "The device's ready kit (sheet, sketches, MicroPython, config.json) as a zip; ?file= one file",
                    [*DEVICE, {"name": "file", "in": "query", "required": False, "schema": {"type": "string"}}],
                    {"200": "application/zip, or the file", "404": "unknown device or file"},
                )
            },
            "/api/devices/{cohort}/{learner}/{device}/diagnosis": {
                "get": _op(
                    "The lab doctor's connection checklist and findings (code, severity, message, hint, fixes, "
                    "evidence, first/last seen, resolved) for one device",
                    DEVICE,
                    {"200": "OK", "404": "unknown device"},
                )
            },
            "/api/devices/{cohort}/{learner}/{device}/arm": {
                "get": _op(
                    "An arm's joints, limits, speeds, poses and current pose",
                    DEVICE,
                    {"200": "OK", "404": "not an arm"},
                )
            },
            "/api/devices/{cohort}/{learner}/{device}/commands": {
                "post": _op(
                    "Send a command to an arm",
                    [
                        *DEVICE,
                        WAIT,
                        {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string"}},
                    ],
                    {
                        "200": "finished (with wait)",
                        "202": "queued or in progress",
                        "404": "not an arm",
                        "409": "the arm is offline: failed at once",
                        "422": "unsafe or malformed: nothing was sent",
                    },
                    COMMAND,
                ),
                "get": _op("An arm's recent commands and its pose", DEVICE, {"200": "OK", "404": "not an arm"}),
            },
            "/api/commands/{id}": {
                "get": _op(
                    "One command",
                    [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}, WAIT],
                    {"200": "OK", "404": "unknown command"},
                )
            },
            "/api/live": {
                "get": _op(
                    "WebSocket: readings, presence and command events of the named devices",
                    [
                        {
                            "name": "device",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "array", "items": {"type": "string"}},
                            "explode": True,
                        }
                    ],
                    {"101": "switching to WebSocket", "400": "no or bad device"},
                )
            },
            "/mqtt": {
                "get": _op(
                    "WebSocket (subprotocol mqtt): MQTT to the lab's broker, which checks the account and its ACL",
                    responses={"101": "switching to WebSocket", "429": "too many from this address", "503": "full"},
                )
            },
            "/phone": {"get": _op("The phone control page", responses={"200": "HTML"})},
            "/board": {
                "get": _op("My board: a learner's connection checklist and findings", responses={"200": "HTML"})
            },
            "/board/showcases": {
                "get": _op(
                    "Showcases: a learner publishes a project (form), a trainer approves, makes public or revokes",
                    responses={"200": "HTML"},
                )
            },
            "/dashboard": {"get": _op("The live cohort dashboard (logs in with a token)", responses={"200": "HTML"})},
            "/dashboard/device": {
                "get": _op("A device's history plots, inspector and commands", responses={"200": "HTML"})
            },
            "/dashboard/replay": {
                "get": _op(
                    "A demo (?session=) or a device window (?device=c/l/d&from=&to=) replayed: plots with a cursor, "
                    "cards, command log, arm drawing; ?t= seconds in, ?speed= 1, 2, 5 or 10",
                    responses={"200": "HTML"},
                )
            },
            "/static/vendor/uplot/{name}": {
                "get": _op(
                    "The charting library the pages use (uPlot, MIT)",
                    [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
                    {"200": "file", "404": "no such file"},
                )
            },
            "/static/labhub.js": {"get": _op("The pages' shared script (token, API calls)", responses={"200": "file"})},
            "/static/diagnosis.js": {
                "get": _op("The pages' diagnosis view (checklist, findings)", responses={"200": "file"})
            },
            "/static/replay.js": {"get": _op("The replay page's player (timeline, views)", responses={"200": "file"})},
            "/api/kinds": {"get": _op("Device kinds: fields, units, ranges")},
            "/api/whoami": {"get": _op("The token's role and scope")},
            "/api/cohorts/{cohort}/overview": {
                "get": _op(
                    "A cohort's devices with their state, last reading and a sparkline (one call per dashboard)",
                    [
                        {"name": "cohort", "in": "path", "required": True, "schema": {"type": "string"}},
                        {"name": "spark_s", "in": "query", "required": False, "schema": {"type": "integer"}},
                    ],
                )
            },
            "/api/devices/{cohort}/{learner}/{device}/latest": {
                "get": _op("The device's last stored reading", DEVICE, {"200": "OK", "404": "unknown device"})
            },
            "/api/devices/{cohort}/{learner}/{device}/history": {
                "get": _op(
                    "One field over a range, downsampled in InfluxDB (mean/min/max per interval)",
                    [
                        *DEVICE,
                        {"name": "field", "in": "query", "required": True, "schema": {"type": "string"}},
                        {"name": "from", "in": "query", "required": False, "schema": {"type": "number"}},
                        {"name": "to", "in": "query", "required": False, "schema": {"type": "number"}},
                        {"name": "points", "in": "query", "required": False, "schema": {"type": "integer"}},
                    ],
                    {"200": "OK", "400": "bad field or range", "404": "unknown device"},
                )
            },
            "/api/sessions": {
                "get": _op("Demo sessions (newest first)", [COHORT]),
                "post": _op(
                    "Start a learner's demo",
                    responses={"201": "started", "409": "one is running already"},
                    body={"type": "object", "required": ["learner"], "properties": {"learner": {"type": "string"}}},
                ),
            },
            "/api/sessions/{id}/stop": {
                "post": _op("Stop a demo", [SESSION], {"200": "stopped", "404": "unknown", "409": "stopped already"})
            },
            "/api/sessions/{id}/grade": {
                "get": _op("The demo's grade: scores and evidence from InfluxDB", [SESSION], {"200": "OK"})
            },
            "/api/registry/devices": {
                "get": _op("Registered devices (trainers)", [COHORT]),
                "post": _op(
                    "Register a device; its broker password is in the answer, once",
                    responses={"201": "registered", "409": "already registered", "503": "broker unreachable"},
                    body=NEW_DEVICE,
                ),
            },
            "/api/registry/devices/{cohort}/{learner}/{device}": {
                "delete": _op("Remove a device and its broker account", DEVICE, {"200": "OK", "404": "unknown"})
            },
            "/api/registry/devices/{cohort}/{learner}/{device}/{action}": {
                "post": _op(
                    "disable (cut off at once), enable, or rotate (new password, in the answer once)",
                    [*DEVICE, ACTION],
                    {"200": "OK", "404": "unknown device or action"},
                )
            },
            "/api/registry/learners": {
                "get": _op("Registered learners (trainers)", [COHORT]),
                "post": _op(
                    "Give a learner an MQTT account (for an MQTT app); its password in the answer, once",
                    responses={"201": "created", "409": "already has one"},
                    body={"type": "object", "required": ["id"], "properties": {"id": {"type": "string"}}},
                ),
            },
            "/api/registry/learners/{cohort}/{learner}/{action}": {
                "post": _op(
                    "disable (the learner and their devices), enable, or rotate the learner's password",
                    [*DEVICE[:2], ACTION],
                    {"200": "OK", "404": "unknown learner or action"},
                )
            },
            "/api/registry/import": {
                "post": _op(
                    "Import a cohort CSV (text/csv: cohort,learner,device,kind,profile,description)",
                    responses={"201": "the new accounts with their passwords, once", "400": "bad CSV"},
                )
            },
            "/api/tokens": {
                "get": _op("API tokens, without their secrets (trainers)"),
                "post": _op(
                    "A new API token; its secret is in the answer, once",
                    responses={"201": "created", "403": "not yours to grant"},
                    body=NEW_TOKEN,
                ),
            },
            "/api/tokens/{id}": {
                "delete": _op(
                    "Revoke a token",
                    [{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}],
                    {"200": "revoked", "404": "unknown"},
                )
            },
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
    }
