"""Mosquitto for the lab: two listeners (the lab's, the hub's internal one) and dynamic security seeded on
first start with the admin and hub accounts."""

from __future__ import annotations

import asyncio
import glob
import json
import logging
import os
import pwd
import threading
from collections.abc import Sequence
from pathlib import Path

from hub.access.dynsec import Dynsec, DynsecError, initial_config
from hub.adapters.tls import NO_LAN, SERVER_CERT, SERVER_KEY, Listener, ensure_tls, listeners
from hub.config import INTERNAL_HOST, LanConfig, MqttConfig, ServiceError
from hub.credentials import ensure_secret, secret_path, write_private
from hub.ops.services import Service, port_in_use, prepare_data_dir, render, require_binary, set_up, spawn, wait_ready

log = logging.getLogger(__name__)


def _mosquitto_can_reach(path: Path) -> bool:
    """Can the unprivileged `mosquitto` user traverse every parent of `path`?"""
    for parent in path.resolve().parents:
        if not os.stat(parent).st_mode & 0o001:
            return False
    return True


def dynsec_plugin() -> str:
    """Where Debian's mosquitto package puts its dynamic security plugin."""
    found = sorted(
        glob.glob("/usr/lib/*/mosquitto_dynamic_security.so") + glob.glob("/usr/lib/mosquitto_dynamic_security.so")
    )
    if not found:
        raise ServiceError("mosquitto's dynamic security plugin is missing: install the Debian package 'mosquitto'")
    return found[0]


INTERNAL_MAX_CONNECTIONS = 64  # the hub's workers and the security admin's short sessions (CLI, API)


def lan_listener_lines(lan: Sequence[Listener], max_connections: int, bind_client_ids: str, data_dir: Path) -> str:
    """The config lines of LAN mode's listeners (none without it), with the lab listener's limits."""
    lines: list[str] = []
    for listener in lan:
        lines += [
            "",
            "# LAN mode: MQTT over TLS, with the lab CA's server certificate."
            if listener.tls
            else "# LAN mode, plain MQTT (lan.plain): passwords cross the classroom network in clear.",
            f"listener {listener.port} {listener.host}",
            f"max_connections {max_connections}",
            f"use_username_as_clientid {bind_client_ids}",
        ]
        if listener.tls:
            lines += [f"certfile {data_dir / SERVER_CERT}", f"keyfile {data_dir / SERVER_KEY}"]
    return "\n".join(["", *lines]) if lines else ""  # after the lab listener, a blank line apart


def start_mosquitto(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 1883,
    open_mode: bool = False,
    timeout: float = 15.0,
    internal_port: int = 0,
    max_connections: int = MqttConfig().max_connections,
    abort: threading.Event | None = None,
    lan: LanConfig = NO_LAN,
) -> Service:
    """Mosquitto with persistence in `state_dir/mosquitto`; as root it drops to the `mosquitto` user.

    Two listeners: the lab's on `host:port` (at most `max_connections` clients; in a closed lab each
    client id is the account's username, so no account can take over another's session), and the internal
    one on 127.0.0.1:`internal_port` (0: port + 1, as `MqttConfig.hub_port`) for the hub and the admin.
    Security: the dynamic security plugin, seeded on first start with the admin and hub accounts (their
    passwords in `state_dir/secrets`); open mode lets anonymous clients in with the classroom role.
    LAN mode (`lan.enabled`) adds MQTT over TLS on lan.host:mqtts_port (the lab CA's server certificate, copied
    to the data dir for the `mosquitto` user), and with lan.plain plain MQTT on lan.host:`port`.
    """
    binary = require_binary("mosquitto", "mosquitto")
    plugin = dynsec_plugin()
    internal_port = internal_port or port + 1
    if internal_port == port:
        raise ServiceError(f"mqtt.internal_port must differ from mqtt.port ({port}) for the broker labhub launches")
    lab, *lan_listeners = listeners(host, port, lan.mqtts_port, lan)
    host = lab.host  # a wildcard lan.host with lan.plain: one plain listener takes loopback and the LAN
    data_dir = prepare_data_dir(
        state_dir / "mosquitto",
        host,
        [port],
        "another broker? set mqtt.port or --mqtt-port, or mqtt.launch = false to use that broker",
    )
    prepare_data_dir(data_dir, INTERNAL_HOST, [internal_port], "set mqtt.internal_port to a free port")
    for listener in lan_listeners:
        prepare_data_dir(data_dir, listener.host, [listener.port], "set lan.mqtts_port, or lan.host")
    if lan.enabled:  # the broker's own copy: it reads its key as the `mosquitto` user
        tls = ensure_tls(state_dir, lan)
        write_private(data_dir / SERVER_CERT, tls.cert.read_text())
        write_private(data_dir / SERVER_KEY, tls.key.read_text())
    security = data_dir / "dynamic-security.json"
    admin_password = ensure_secret(secret_path(state_dir, "mqtt-admin"))
    hub_password = ensure_secret(secret_path(state_dir, "mqtt-hub"))
    if not security.exists():
        fd = os.open(security, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(initial_config(admin_password, hub_password), fh, indent=2)
    user_line = ""
    if os.geteuid() == 0:
        try:
            account = pwd.getpwnam("mosquitto")
        except KeyError:
            account = None
        if account is not None and _mosquitto_can_reach(data_dir):
            os.chown(data_dir, account.pw_uid, account.pw_gid)
            for item in data_dir.iterdir():
                os.chown(item, account.pw_uid, account.pw_gid)
            user_line = "user mosquitto"
        else:
            log.warning("mosquitto keeps root: its user cannot reach %s", data_dir)
            user_line = "user root"
    conf = state_dir / "mosquitto.conf"
    render(
        "mosquitto.conf.in",
        conf,
        host=host,
        port=port,
        max_connections=max_connections,
        bind_client_ids="false" if open_mode else "true",
        lan_listeners=lan_listener_lines(lan_listeners, max_connections, "false" if open_mode else "true", data_dir),
        internal_port=internal_port,
        internal_max_connections=INTERNAL_MAX_CONNECTIONS,
        data_dir=data_dir,
        user_line=user_line,
        allow_anonymous="true" if open_mode else "false",
        dynsec_plugin=plugin,
    )
    service = spawn("mosquitto", [binary, "-c", str(conf)], state_dir / "mosquitto.log", f"{host}:{port}")
    # Only the internal port is probed: mosquitto 2.0.11 counts every closed connection twice against its
    # listener's max_connections (each probe would raise the lab listener's limit by one). It opens all its
    # listeners before it serves any, so the lab's is open once the internal one answers.
    wait_ready(service, lambda: port_in_use(INTERNAL_HOST, internal_port), timeout, abort)
    set_up(
        service,
        lambda: asyncio.run(_configure_security(INTERNAL_HOST, internal_port, admin_password, open_mode)),
        (DynsecError,),
        lambda err: f"mosquitto's security plugin did not take our settings: {err}",
    )
    log.info(
        "mosquitto listening on %s:%d for the lab (at most %d clients), on %s:%d for the hub (data in %s; %s)",
        host,
        port,
        max_connections,
        INTERNAL_HOST,
        internal_port,
        data_dir,
        "open mode: anonymous clients allowed" if open_mode else "anonymous clients refused",
    )
    for listener in lan_listeners:
        if listener.tls:
            log.info("mosquitto listening on %s:%d for the LAN, over TLS", listener.host, listener.port)
        else:
            log.warning(
                "WARNING: plain MQTT on the LAN at %s:%d (lan.plain): passwords cross the network in clear",
                listener.host,
                listener.port,
            )
    return service


async def _configure_security(host: str, port: int, admin_password: str, open_mode: bool) -> None:
    async with Dynsec(host, port, admin_password) as sec:
        await sec.configure_lab(open_mode)
