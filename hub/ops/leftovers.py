"""Services a killed lab left running. A lab stops its mosquitto and influxd on the way out, but one killed outright
(SIGKILL, the kernel's OOM killer) cannot: they keep running, orphaned, with its ports, and the next `labhub up`
on the same state directory could only say that the ports are taken. So before it starts its services, a lab
stops any service still running with its state directory's config files whose parent is gone. A service that a
live `labhub` (another lab, a backup) runs has that process for a parent, and is left alone."""

from __future__ import annotations

import logging
import os
import signal
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CONFIG_FLAGS = {"mosquitto": "-c", "influxd": "-config"}  # how the lab starts each: `<binary> <flag> <config>`
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL (influxd flushes its cache on the way out)


@dataclass(frozen=True, slots=True)
class Proc:
    pid: int
    argv: tuple[str, ...]
    parent_exe: str  # the parent's executable, "" when unknown (gone, or not readable)


def config_files(state_dir: Path) -> set[str]:
    """The config files the lab's services are started with (hub.ops.mosquitto, hub.ops.influxd), as real paths."""
    return {os.path.realpath(state_dir / "mosquitto.conf"), os.path.realpath(state_dir / "influxdb.conf")}


def leftovers(procs: Iterable[Proc], configs: Collection[str]) -> list[Proc]:
    """The services started with one of `configs` whose parent is no Python process: orphaned (adopted by init or
    a subreaper) when the lab that started them died. Pure."""
    found = []
    for proc in procs:
        if len(proc.argv) != 3 or proc.argv[2] not in configs:
            continue
        if CONFIG_FLAGS.get(Path(proc.argv[0]).name) != proc.argv[1]:
            continue
        if Path(proc.parent_exe).name.startswith("python"):
            continue  # a live labhub (a lab, a backup) or a test run owns it
        found.append(proc)
    return found


def running() -> Iterator[Proc]:
    """Every process this user can see (Linux /proc); a three-word command line's last word (a config file, maybe
    relative to the process's directory) as a real path."""
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            argv = [os.fsdecode(a) for a in Path(entry.path, "cmdline").read_bytes().split(b"\0")[:-1]]
            ppid = int(Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()[1])
            if len(argv) == 3:
                argv[2] = os.path.realpath(os.path.join(os.readlink(f"{entry.path}/cwd"), argv[2]))
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read
        try:
            parent_exe = os.readlink(f"/proc/{ppid}/exe")
        except OSError:
            parent_exe = ""
        yield Proc(int(entry.name), tuple(argv), parent_exe)


def stop_leftovers(state_dir: Path) -> list[int]:
    """Stop what a killed lab left running on `state_dir` (SIGTERM, then SIGKILL); the pids, each logged."""
    stopped = []
    for proc in leftovers(running(), config_files(state_dir)):
        name = Path(proc.argv[0]).name
        log.warning("%s (pid %d) was left running by a lab that was killed; stopping it", name, proc.pid)
        try:
            os.kill(proc.pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_WAIT_S
            while _alive(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(proc.pid):
                log.warning("%s (pid %d) did not stop within %.0f s; killing it", name, proc.pid, STOP_WAIT_S)
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass  # gone by itself
        stopped.append(proc.pid)
    return stopped


def _alive(pid: int) -> bool:
    """Still running (an orphan's new parent reaps it: no zombie is left to see)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"
