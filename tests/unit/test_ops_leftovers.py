"""What a lab takes for the processes a killed lab left running (hub.ops.leftovers): only those its record names,
still the same processes (pid and start time), and only when the recorded lab itself is gone."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hub.ops.leftovers as leftovers_module
from hub.ops.leftovers import (
    RECORD,
    Record,
    Started,
    forget,
    leftovers,
    me,
    read_record,
    started_at,
    stop_leftovers,
    write_record,
)

IGNORES_SIGTERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(30)"
)

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


def test_what_a_dead_lab_left_is_stopped_and_one_deaf_to_sigterm_killed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(leftovers_module, "STOP_WAIT_S", 0.3)
    polite = subprocess.Popen(["sleep", "30"])
    deaf = subprocess.Popen([sys.executable, "-c", IGNORES_SIGTERM], stdout=subprocess.PIPE)
    try:
        assert deaf.stdout is not None and deaf.stdout.readline() == b"ready\n"  # its handler is in place
        dead_lab = Started(2**22 + 1, 1, "labhub")  # no such pid: the lab that recorded them is gone
        write_record(tmp_path, dead_lab, [("mosquitto", polite.pid), ("influxd", deaf.pid)])
        with caplog.at_level(logging.WARNING, logger="hub.ops.leftovers"):
            assert stop_leftovers(tmp_path) == [polite.pid, deaf.pid]
        assert polite.wait(5) == -signal.SIGTERM and deaf.wait(5) == -signal.SIGKILL
        said = caplog.text
        assert f"mosquitto (pid {polite.pid}) was left running by a lab that was killed" in said
        assert f"influxd (pid {deaf.pid}) did not stop in time; killed it" in said
        assert read_record(tmp_path) is None  # nothing of it runs any more
    finally:
        for proc in (polite, deaf):
            proc.kill()
            proc.wait()
        if deaf.stdout is not None:
            deaf.stdout.close()


def test_a_live_lab_s_record_is_left_alone(tmp_path: Path) -> None:
    child = subprocess.Popen(["sleep", "30"])
    try:
        lab = me("labhub")  # this process: alive
        assert lab is not None
        write_record(tmp_path, lab, [("mosquitto", child.pid)])
        assert stop_leftovers(tmp_path) == [] and child.poll() is None and read_record(tmp_path) is not None
    finally:
        child.kill()
        child.wait()


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(["lab", "children", "x"]), inner),
    max_leaves=12,
)


PIDS = st.sampled_from([os.getpid(), os.getppid(), 1]) | st.integers(-5, 2**23)  # real processes among them
ENTRY = st.tuples(PIDS, st.integers(-1, 2**40) | st.sampled_from([started_at(os.getppid()) or 0]), st.text(max_size=4))
RECORDS = st.fixed_dictionaries({"lab": ENTRY, "children": st.lists(ENTRY, max_size=4)})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    content=st.one_of(
        RECORDS.map(json.dumps), JSONISH.map(json.dumps), st.binary(max_size=64).map(lambda b: b.decode("latin-1"))
    )
)
def test_any_record_is_read_without_an_error_and_signals_only_live_named_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str
) -> None:
    """`lab.pids` is in the lab's private state dir, but a crash can leave it cut short or a hand edit broken:
    whatever it holds, the next lab starts, and signals no process but one it names with its own start time."""
    signalled: list[int] = []
    monkeypatch.setattr(leftovers_module.os, "kill", lambda pid, sig: signalled.append(pid))
    monkeypatch.setattr(leftovers_module, "STOP_WAIT_S", 0.0)
    monkeypatch.setattr(leftovers_module, "GONE_WAIT_S", 0.0)
    (tmp_path / RECORD).write_text(content)
    record = read_record(tmp_path)
    stop_leftovers(tmp_path)
    named = {(c.pid, c.start) for c in record.children} if record is not None else set()
    assert all((pid, started_at(pid)) in named for pid in signalled)
