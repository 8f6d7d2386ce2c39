"""Start the lab's real services, Mosquitto and influxd, as child processes on loopback.

Used by `labhub up` and by the test fixtures alike, so the tests run the very configs users get.
Each service gets its config written from a template in `config/`, a data directory, and a log file;
startup waits until the port answers, and a service that exits early reports its log's tail.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import json
import logging
import os
import pwd
import random
import re
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from string import Template

from hub.access.credentials import ensure_secret, secret_path
from hub.access.dynsec import Dynsec, DynsecError, initial_config
from hub.config import CONFIG_DIR, INTERNAL_HOST, MqttConfig, ServiceError

log = logging.getLogger(__name__)


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log_path: Path
    address: str

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.warning("%s did not stop in %.0f s; killing it", self.name, timeout)
            self.proc.kill()
            self.proc.wait()


_handed_out: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing uses now, that this process has not handed out before, below the ephemeral range.

    Two things go wrong with the usual bind-to-port-0 trick: the kernel may return the same port to two
    calls in a row (so two services of one test get one port), and an ephemeral port can be taken as the
    local end of some client connection before the service binds it (or binds it again after a restart).
    Ports 20000–32767 are below Linux's ephemeral range (32768–60999), so clients never take them.
    A port's neighbours are not handed out either: a broker's internal listener is on its port + 1.
    """
    rng = random.Random()
    for _ in range(1000):
        port = rng.randrange(20000, 32767)
        if not _handed_out.isdisjoint((port - 1, port, port + 1)):
            continue
        with socket.socket() as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise ServiceError("no free port found in 20000–32767")


def port_in_use(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _require(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package '{package}' (the README's setup does)")
    return path


def _rendered(template: str, **values: object) -> str:
    return Template((CONFIG_DIR / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def _render(template: str, target: Path, **values: object) -> None:
    target.write_text(_rendered(template, **values))


def _spawn(name: str, argv: list[str], log_path: Path, address: str, env: dict[str, str] | None = None) -> Service:
    log_file = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    finally:
        log_file.close()
    return Service(name, proc, log_path, address)


def _wait(service: Service, ready: object, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            raise ServiceError(f"{service.name} exited with code {service.proc.returncode}:\n{service.log_tail()}")
        if callable(ready) and ready():
            return
        time.sleep(0.05)
    service.stop()
    raise ServiceError(
        f"{service.name} did not answer on {service.address} within {timeout:.0f} s:\n{service.log_tail()}"
    )


def _prepare(data_dir: Path, host: str, ports: list[int], advice: str) -> Path:
    """Refuse ports already taken (with what to do about it); create the data directory."""
    for port in ports:
        if port_in_use(host, port):
            raise ServiceError(f"port {host}:{port} is already in use ({advice})")
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir


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


def start_mosquitto(
    state_dir: Path,
    host: str = "127.0.0.1",
    port: int = 1883,
    open_mode: bool = False,
    timeout: float = 15.0,
    internal_port: int = 0,
    max_connections: int = MqttConfig().max_connections,
) -> Service:
    """Mosquitto with persistence in `state_dir/mosquitto`; as root it drops to the `mosquitto` user.

    Two listeners: the lab's on `host:port` (at most `max_connections` clients; in a closed lab each
    client id is the account's username, so no account can take over another's session), and the internal
    one on 127.0.0.1:`internal_port` (0: port + 1, as `MqttConfig.hub_port`) for the hub and the admin.
    Security: the dynamic security plugin, seeded on first start with the admin and hub accounts (their
    passwords in `state_dir/secrets`); open mode lets anonymous clients in with the classroom role.
    """
    binary = _require("mosquitto", "mosquitto")
    plugin = dynsec_plugin()
    internal_port = internal_port or port + 1
    if internal_port == port:
        raise ServiceError(f"mqtt.internal_port must differ from mqtt.port ({port}) for the broker labhub launches")
    data_dir = _prepare(
        state_dir / "mosquitto",
        host,
        [port],
        "another broker? set mqtt.port or --mqtt-port, or mqtt.launch = false to use that broker",
    )
    _prepare(data_dir, INTERNAL_HOST, [internal_port], "set mqtt.internal_port to a free port")
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
    _render(
        "mosquitto.conf.in",
        conf,
        host=host,
        port=port,
        max_connections=max_connections,
        bind_client_ids="false" if open_mode else "true",
        internal_port=internal_port,
        internal_max_connections=INTERNAL_MAX_CONNECTIONS,
        data_dir=data_dir,
        user_line=user_line,
        allow_anonymous="true" if open_mode else "false",
        dynsec_plugin=plugin,
    )
    service = _spawn("mosquitto", [binary, "-c", str(conf)], state_dir / "mosquitto.log", f"{host}:{port}")
    # Only the internal port is probed: mosquitto 2.0.11 counts every closed connection twice against its
    # listener's max_connections (each probe would raise the lab listener's limit by one). It opens all its
    # listeners before it serves any, so the lab's is open once the internal one answers.
    _wait(service, lambda: port_in_use(INTERNAL_HOST, internal_port), timeout)
    try:
        asyncio.run(_configure_security(INTERNAL_HOST, internal_port, admin_password, open_mode))
    except DynsecError as err:
        service.stop()
        raise ServiceError(f"mosquitto's security plugin did not take our settings: {err}") from None
    except BaseException:
        service.stop()
        raise
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
    return service


async def _configure_security(host: str, port: int, admin_password: str, open_mode: bool) -> None:
    async with Dynsec(host, port, admin_password) as sec:
        await sec.configure_lab(open_mode)


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
) -> Service:
    """influxd (1.x) with its data in `state_dir/influxdb`.

    With `auth`, influxd refuses anonymous requests; an admin (password in `state_dir/secrets/influx-admin`,
    used only here) creates the database and the hub's own user, which may read and write that database
    and nothing else (password in `state_dir/secrets/influx-hub`).
    """
    binary = _require("influxd", "influxdb")
    advice = "another influxd? set influx.url, influx.rpc_port or --influx-port, or influx.launch = false"
    data_dir = _prepare(state_dir / "influxdb", host, [http_port], advice + " to use that database")
    _prepare(data_dir, INTERNAL_HOST, [rpc_port], advice)
    conf = state_dir / "influxdb.conf"
    conf.write_text(influxd_config(host, http_port, rpc_port, data_dir, auth))
    env = dict(os.environ, INFLUXDB_CONFIG_PATH=str(conf))
    service = _spawn("influxd", [binary, "-config", str(conf)], state_dir / "influxd.log", f"{host}:{http_port}", env)
    _wait(service, lambda: _pings(f"http://{host}:{http_port}/ping"), timeout)
    if auth:
        try:
            _provision_influx(f"http://{host}:{http_port}", state_dir, database)
        except (OSError, ValueError) as err:  # urllib's errors are OSErrors
            service.stop()
            raise ServiceError(f"influxd: cannot set up its users: {type(err).__name__}") from None
        except BaseException:
            service.stop()
            raise
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
    return _rendered(
        "influxdb.conf.in",
        host=host,
        http_port=http_port,
        rpc_host=INTERNAL_HOST,
        rpc_port=rpc_port,
        data_dir=data_dir,
        auth_enabled="true" if auth else "false",
    )


def _influxql(url: str, q: str, auth: tuple[str, str] | None) -> dict[str, object]:
    """One InfluxQL statement, POSTed (the statement, which may hold a password, stays out of URLs)."""
    request = urllib.request.Request(f"{url}/query", data=urllib.parse.urlencode({"q": q}).encode(), method="POST")
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            body: dict[str, object] = json.load(resp)
    except urllib.error.HTTPError as err:
        body = {"error": _json_error(err.read()), "status": err.code}
    results = body.get("results")
    if isinstance(results, list) and results and isinstance(results[0], dict) and "error" in results[0]:
        body["error"] = results[0]["error"]
    return body


def _json_error(raw: bytes) -> str:
    try:
        return str(json.loads(raw).get("error", ""))
    except (ValueError, AttributeError):
        return raw.decode(errors="replace")[:200]


def _quoted(secret: str) -> str:
    """An InfluxQL string literal."""
    return "'" + secret.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _provision_influx(url: str, state_dir: Path, database: str) -> None:
    """The admin user (made while influxd has none), the database, and the hub's user with rights on it only."""
    if not DATABASE_RE.fullmatch(database):
        raise ServiceError(f"influx.database {database!r}: use letters, digits, '_' and '-'")
    admin = (INFLUX_ADMIN, ensure_secret(secret_path(state_dir, "influx-admin")))
    hub_password = ensure_secret(secret_path(state_dir, "influx-hub"))
    secrets = (admin[1], hub_password)
    answer = _influxql(url, f"CREATE USER {INFLUX_ADMIN} WITH PASSWORD {_quoted(admin[1])} WITH ALL PRIVILEGES", None)
    if "error" in answer and answer.get("status") != 401:  # 401: an admin exists already (not the first start)
        raise ServiceError(f"influxd: cannot create its admin user: {_redact(answer['error'], secrets)}")
    steps = [
        ("create the database", f'CREATE DATABASE "{database}"'),
        ("create the hub's user", f"CREATE USER {INFLUX_HUB} WITH PASSWORD {_quoted(hub_password)}"),
        ("set the hub user's password", f"SET PASSWORD FOR {INFLUX_HUB} = {_quoted(hub_password)}"),
        ("grant the hub's user its database", f'GRANT ALL ON "{database}" TO {INFLUX_HUB}'),
    ]
    for what, q in steps:
        answer = _influxql(url, q, admin)
        if "error" in answer and "already exists" not in str(answer["error"]):
            raise ServiceError(f"influxd: cannot {what}: {_redact(answer['error'], secrets)}")


def _redact(text: object, secrets: tuple[str, ...]) -> str:
    """A server's error text may quote the statement: never let a password through."""
    out = str(text)
    for secret in secrets:
        for piece in {secret, *(secret[i : i + 6] for i in range(0, max(1, len(secret) - 5)))}:
            out = out.replace(piece, "***")
    return out


def _pings(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as resp:
            return bool(resp.status == 204)
    except (urllib.error.URLError, OSError):
        return False
