"""influxd for the lab: its config, and on first start with auth, the admin, the database and the hub's own
least-privileged user."""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from pathlib import Path

from hub.adapters.influx_admin import admin_query, pings
from hub.adapters.influxql import (
    create_database_query,
    create_user_query,
    grant_all_query,
    retention_statements,
    set_password_query,
)
from hub.config import INTERNAL_HOST, ServiceError
from hub.credentials import ensure_secret, secret_path
from hub.ops.services import Service, prepare_data_dir, rendered, require_binary, set_up, spawn, wait_ready

log = logging.getLogger(__name__)


INFLUX_ADMIN = "labhub_admin"
DATABASE_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
INFLUX_HUB = "labhub_hub"


def start_influxd(
    state_dir: Path,
    host: str = "127.0.0.1",
    http_port: int = 8086,
    rpc_port: int = 8089,
    timeout: float = 60.0,
    auth: bool = False,
    database: str = "labhub",
    abort: threading.Event | None = None,
    retention: Mapping[str, str] = {},
) -> Service:
    """influxd (1.x) with its data in `state_dir/influxdb`.

    With `auth`, influxd refuses anonymous requests; an admin (password in `state_dir/secrets/influx-admin`,
    used only here) creates the database and the hub's own user, which may read and write that database
    and nothing else (password in `state_dir/secrets/influx-hub`).
    """
    binary = require_binary("influxd", "influxdb")
    advice = "another influxd? set influx.url, influx.rpc_port or --influx-port, or influx.launch = false"
    data_dir = prepare_data_dir(state_dir / "influxdb", host, [http_port], advice + " to use that database")
    prepare_data_dir(data_dir, INTERNAL_HOST, [rpc_port], advice)
    conf = state_dir / "influxdb.conf"
    conf.write_text(influxd_config(host, http_port, rpc_port, data_dir, auth))
    env = dict(os.environ, INFLUXDB_CONFIG_PATH=str(conf))
    service = spawn("influxd", [binary, "-config", str(conf)], state_dir / "influxd.log", f"{host}:{http_port}", env)
    wait_ready(service, lambda: pings(f"http://{host}:{http_port}/ping"), timeout, abort)
    if auth:
        set_up(
            service,
            lambda: _provision_influx(f"http://{host}:{http_port}", state_dir, database),
            (OSError, ValueError),  # urllib's errors are OSErrors
            lambda err: f"influxd: cannot set up its users: {type(err).__name__}",
        )
    if retention:  # cohorts' retention policies and rollups: an admin's statements (the hub's user may not)
        admin = (INFLUX_ADMIN, ensure_secret(secret_path(state_dir, "influx-admin"))) if auth else None
        set_up(
            service,
            lambda: apply_retention(f"http://{host}:{http_port}", database, retention, admin),
            (OSError, ValueError),
            lambda err: f"influxd: cannot set up cohorts' retention: {type(err).__name__}: {err}",
        )
    log.info(
        "influxd listening on http://%s:%d (data in %s%s)",
        host,
        http_port,
        data_dir,
        f"; auth on, the hub writes as {INFLUX_HUB}" if auth else "",
    )
    return service


def influxd_config(host: str, http_port: int, rpc_port: int, data_dir: Path, auth: bool) -> str:
    """influxd's config: HTTP on `host`; the backup/RPC port (no authentication at all) on loopback only."""
    return rendered(
        "influxdb.conf.in",
        host=host,
        http_port=http_port,
        rpc_host=INTERNAL_HOST,
        rpc_port=rpc_port,
        data_dir=data_dir,
        auth_enabled="true" if auth else "false",
    )


def _provision_influx(url: str, state_dir: Path, database: str) -> None:
    """The admin user (made while influxd has none), the database, and the hub's user with rights on it only."""
    if not DATABASE_RE.fullmatch(database):
        raise ServiceError(f"influx.database {database!r}: use letters, digits, '_' and '-'")
    admin = (INFLUX_ADMIN, ensure_secret(secret_path(state_dir, "influx-admin")))
    hub_password = ensure_secret(secret_path(state_dir, "influx-hub"))
    secrets = (admin[1], hub_password)
    answer = admin_query(url, create_user_query(INFLUX_ADMIN, admin[1], admin=True), None)
    if "error" in answer and answer.get("status") != 401:  # 401: an admin exists already (not the first start)
        raise ServiceError(f"influxd: cannot create its admin user: {_redact(answer['error'], secrets)}")
    steps = [
        ("create the database", create_database_query(database)),
        ("create the hub's user", create_user_query(INFLUX_HUB, hub_password)),
        ("set the hub user's password", set_password_query(INFLUX_HUB, hub_password)),
        ("grant the hub's user its database", grant_all_query(database, INFLUX_HUB)),
    ]
    for what, q in steps:
        answer = admin_query(url, q, admin)
        if "error" in answer and "already exists" not in str(answer["error"]):
            raise ServiceError(f"influxd: cannot {what}: {_redact(answer['error'], secrets)}")


def apply_retention(url: str, database: str, retention: Mapping[str, str], auth: tuple[str, str] | None) -> None:
    """Each cohort's retention policy (made, or changed to the configured duration) and its rollup query."""
    for cohort, duration in sorted(retention.items()):
        for q in retention_statements(database, cohort, duration):
            answer = admin_query(url, q, auth)
            if "error" in answer and "already exists" not in str(answer["error"]):
                raise ServiceError(f"influxd: {q.split(' ON ')[0]}: {answer['error']}")


def _redact(text: object, secrets: tuple[str, ...]) -> str:
    """A server's error text may quote the statement: never let a password through."""
    out = str(text)
    for secret in secrets:
        for piece in {secret, *(secret[i : i + 6] for i in range(0, max(1, len(secret) - 5)))}:
            out = out.replace(piece, "***")
    return out
