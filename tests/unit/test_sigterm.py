"""A test run stopped with SIGTERM stops what its fixtures started (it used to leave mosquitto and influxd running)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

INNER = """
import subprocess, time
from pathlib import Path
import pytest

@pytest.fixture
def service(tmp_path_factory):
    proc = subprocess.Popen(["sleep", "600"])
    yield proc
    proc.terminate()
    proc.wait()

def test_runs_until_stopped(service):
    Path({ready!r} + ".tmp").write_text(str(service.pid))
    Path({ready!r} + ".tmp").rename({ready!r})  # whole, or not there
    time.sleep(600)
"""


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"


def test_sigterm_runs_the_fixtures_finalizers(tmp_path: Path) -> None:
    ready = tmp_path / "ready"
    (tmp_path / "test_inner.py").write_text(INNER.format(ready=str(ready)))
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "tests.sigterm",
            "--rootdir",
            str(tmp_path),
            "-c",
            os.devnull,
            str(tmp_path / "test_inner.py"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():  # the inner test writes it once its fixture's process runs
            assert run.poll() is None, run.stdout.read().decode() if run.stdout else ""
            assert time.monotonic() < deadline, "the inner test never started"
            time.sleep(0.02)
        pid = int(ready.read_text())
        run.send_signal(signal.SIGTERM)
        out = run.communicate(timeout=60)[0].decode()
        assert not alive(pid), f"the fixture's process {pid} outlived the run:\n{out}"
        assert "KeyboardInterrupt" in out
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        if ready.exists():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(ready.read_text()), signal.SIGKILL)
