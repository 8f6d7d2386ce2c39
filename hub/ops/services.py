"""The lab's real services as child processes: what Mosquitto (`hub.ops.mosquitto`) and influxd
(`hub.ops.influxd`) share — spawning, waiting for the port, stopping, free ports, config templates.

Used by `labhub up` and by the test fixtures alike, so the tests run the very configs users get.
Each service gets its config written from a template in `config/`, a data directory, and a log file;
startup waits until the port answers, and a service that exits early reports its log's tail.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from hub.config import CONFIG_DIR, ServiceError

log = logging.getLogger(__name__)


class StartAborted(ServiceError):
    """A start given up because the lab is stopping; the process it spawned is stopped."""


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
        if stop_processes([self.proc], timeout):
            log.warning("%s did not stop in %.0f s; killed it", self.name, timeout)


def stop_processes(procs: Iterable[subprocess.Popen[bytes]], timeout: float) -> list[subprocess.Popen[bytes]]:
    """SIGTERM to every one still running, all at once, then wait for them; those still running after `timeout`
    are killed. Returns the killed ones."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        proc.terminate()
    deadline = time.monotonic() + timeout
    killed = []
    for proc in running:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            killed.append(proc)
    return killed


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


def require_binary(binary: str, package: str) -> str:
    path = shutil.which(binary) or (f"/usr/sbin/{binary}" if os.path.exists(f"/usr/sbin/{binary}") else None)
    if path is None:
        raise ServiceError(f"{binary} not found: install the Debian package '{package}' (the README's setup does)")
    return path


def rendered(template: str, **values: object) -> str:
    return Template((CONFIG_DIR / template).read_text()).substitute({k: str(v) for k, v in values.items()})


def render(template: str, target: Path, **values: object) -> None:
    target.write_text(rendered(template, **values))


def spawn(name: str, argv: list[str], log_path: Path, address: str, env: dict[str, str] | None = None) -> Service:
    log_file = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True
        )
    finally:
        log_file.close()
    return Service(name, proc, log_path, address)


def set_up(
    service: Service,
    step: Callable[[], object],
    expected: tuple[type[Exception], ...],
    explain: Callable[[Exception], str],
) -> None:
    """A set-up step of a started service; if it fails in any way, the service is stopped (no orphan process)."""
    try:
        step()
    except expected as err:
        service.stop()
        raise ServiceError(explain(err)) from None
    except BaseException:
        service.stop()
        raise


def wait_ready(service: Service, ready: object, timeout: float, abort: threading.Event | None = None) -> None:
    """Wait until `ready()`; on a timeout, or when `abort` is set (the lab is stopping: a Ctrl-C must not wait up
    to a minute for a service the lab will stop anyway), the service is stopped (no orphan process)."""
    abort = abort or threading.Event()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if abort.is_set():
            service.stop()
            raise StartAborted(f"{service.name}: start given up, the lab is stopping")
        if not service.alive():
            raise ServiceError(f"{service.name} exited with code {service.proc.returncode}:\n{service.log_tail()}")
        if callable(ready) and ready():
            return
        abort.wait(0.05)
    service.stop()
    raise ServiceError(
        f"{service.name} did not answer on {service.address} within {timeout:.0f} s:\n{service.log_tail()}"
    )


def prepare_data_dir(data_dir: Path, host: str, ports: list[int], advice: str) -> Path:
    """Refuse ports already taken (with what to do about it); create the data directory."""
    for port in ports:
        if port_in_use(host, port):
            raise ServiceError(f"port {host}:{port} is already in use ({advice})")
    data_dir.mkdir(parents=True, exist_ok=True)
    return data_dir
