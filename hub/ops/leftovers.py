"""What a killed lab left running. A lab stops its mosquitto, influxd and worker processes on the way out, but one
killed outright (SIGKILL, the kernel's OOM killer) cannot: they keep running with its ports, and the next `labhub up`
on the same state directory could only say that the ports are taken.

So a running lab keeps a record in its state directory (`lab.pids`): its own pid and those of the processes it
started, each with its start time (a pid is reused; a pid and a start time are not). A clean stop removes it.
The next lab finds it: if the recorded lab still runs, it is left alone (a second lab on one state directory then
fails on the ports, as it did before); otherwise the recorded processes still running are stopped. A process the
record does not name (a broker someone runs by hand from the same config, a backup's influxd) is never touched."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

RECORD = "lab.pids"
STOP_WAIT_S = 10.0  # after SIGTERM, before SIGKILL (influxd flushes its cache on the way out)
GONE_WAIT_S = 2.0  # after SIGKILL, for its ports to be free


@dataclass(frozen=True, slots=True)
class Started:
    pid: int
    start: int  # clock ticks after boot (/proc/<pid>/stat): the same pid later is another process
    name: str


@dataclass(frozen=True, slots=True)
class Record:
    lab: Started
    children: tuple[Started, ...]


def leftovers(record: Record, started_at: Callable[[int], int | None]) -> list[Started]:
    """The recorded children still running, unless the recorded lab itself still runs (then they are its). Pure:
    `started_at(pid)` is the start time of the process now running with that pid, None if there is none."""
    if started_at(record.lab.pid) == record.lab.start:
        return []
    return [child for child in record.children if started_at(child.pid) == child.start]


def started_at(pid: int) -> int | None:
    """When the process `pid` started (clock ticks after boot); None if none runs (a zombie counts as gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def runs(process: Started) -> bool:
    """Is that process still running (its pid not reused meanwhile)?"""
    return started_at(process.pid) == process.start


def me(name: str, pid: int | None = None) -> Started | None:
    """This process (or `pid`) as a record names it; None if it is gone already."""
    pid = os.getpid() if pid is None else pid
    start = started_at(pid)
    return None if start is None else Started(pid, start, name)


def write_record(state_dir: Path, lab: Started, children: Iterable[tuple[str, int]]) -> None:
    """Record the lab and its running children (name, pid); replaced whole (a restart changes a pid)."""
    named = [s for s in (me(name, pid) for name, pid in children) if s is not None]
    data = {"lab": [lab.pid, lab.start, lab.name], "children": [[s.pid, s.start, s.name] for s in named]}
    path = state_dir / RECORD
    tmp = path.with_name(RECORD + ".tmp")
    tmp.write_text(json.dumps(data))
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def read_record(state_dir: Path) -> Record | None:
    try:
        data = json.loads((state_dir / RECORD).read_text())
        return Record(Started(*data["lab"]), tuple(Started(*c) for c in data["children"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, TypeError, KeyError) as err:
        log.warning("ignoring %s, which is not a lab's record (%s)", state_dir / RECORD, err)
        return None


def forget(state_dir: Path) -> None:
    """A clean stop: nothing of this lab runs any more."""
    with contextlib.suppress(FileNotFoundError):
        (state_dir / RECORD).unlink()


def stop_leftovers(state_dir: Path, abort: threading.Event | None = None) -> list[int]:
    """Stop what a killed lab left running on `state_dir`: SIGTERM to all, SIGKILL to what still runs after
    STOP_WAIT_S (or at once when `abort` is set: the new lab is being stopped too). The pids, each logged."""
    record = read_record(state_dir)
    if record is None or runs(record.lab):
        return []  # no record, or that lab still runs: its children are its own
    left = leftovers(record, started_at)
    for child in left:
        log.warning("%s (pid %d) was left running by a lab that was killed; stopping it", child.name, child.pid)
        _signal(child, signal.SIGTERM)
    abort = abort or threading.Event()
    _wait_gone(left, STOP_WAIT_S, abort)
    for child in left:
        if _signal(child, signal.SIGKILL):
            log.warning("%s (pid %d) did not stop in time; killed it", child.name, child.pid)
    _wait_gone(left, GONE_WAIT_S, threading.Event())
    if not any(runs(child) for child in left):
        forget(state_dir)
    return [child.pid for child in left]


def _signal(child: Started, sig: int) -> bool:
    """Signal the child if it is still that process (its pid not reused meanwhile)."""
    if not runs(child):
        return False
    try:
        os.kill(child.pid, sig)
    except OSError as err:  # gone (ProcessLookupError), or not ours to signal
        if not isinstance(err, ProcessLookupError):
            log.warning("cannot stop %s (pid %d): %s", child.name, child.pid, err.strerror)
        return False
    return True


def _wait_gone(children: list[Started], timeout: float, abort: threading.Event) -> None:
    deadline = time.monotonic() + timeout
    while any(runs(child) for child in children) and time.monotonic() < deadline:
        if abort.wait(0.05):
            return
