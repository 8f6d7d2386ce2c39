"""What a lab takes for the processes a killed lab left running (hub.ops.leftovers): only those its record names,
still the same processes (pid and start time), and only when the recorded lab itself is gone."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from hub.ops.leftovers import RECORD, Record, Started, forget, leftovers, me, read_record, started_at, write_record

LAB, BROKER, DATABASE = Started(100, 5000, "labhub"), Started(101, 5010, "mosquitto"), Started(102, 5020, "influxd")
RECORDED = Record(LAB, (BROKER, DATABASE))


def running(*procs: Started) -> dict[int, int]:
    return {p.pid: p.start for p in procs}


def test_a_dead_lab_s_children_still_running_are_leftovers() -> None:
    assert leftovers(RECORDED, running(BROKER, DATABASE).get) == [BROKER, DATABASE]
    assert leftovers(RECORDED, running(DATABASE).get) == [DATABASE]  # the broker had stopped by itself


def test_a_live_lab_s_children_are_its_own() -> None:
    """A second `labhub up` on the same state dir: the first still runs, and keeps its broker and database."""
    assert leftovers(RECORDED, running(LAB, BROKER, DATABASE).get) == []


def test_a_reused_pid_is_another_process() -> None:
    """The lab's pid, or a child's, now runs something else (another start time): the lab is gone; that child too."""
    again = {LAB.pid: LAB.start + 1, BROKER.pid: BROKER.start + 7, DATABASE.pid: DATABASE.start}
    assert leftovers(RECORDED, again.get) == [DATABASE]


def test_the_record_round_trips_names_only_running_children_and_is_forgotten(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        lab = me("labhub")
        assert lab is not None and lab.pid == os.getpid() and started_at(os.getpid()) == lab.start
        write_record(tmp_path, lab, [("sleep", child.pid), ("gone", 2**22 + 1)])  # no such pid: not recorded
        record = read_record(tmp_path)
        assert record == Record(lab, (Started(child.pid, started_at(child.pid) or -1, "sleep"),))
        assert (tmp_path / RECORD).stat().st_mode & 0o777 == 0o600
        forget(tmp_path)
        assert read_record(tmp_path) is None
    finally:
        child.kill()
        child.wait()


def test_a_damaged_record_is_ignored(tmp_path: Path) -> None:
    (tmp_path / RECORD).write_text('{"lab": [1, 2]}')
    assert read_record(tmp_path) is None
