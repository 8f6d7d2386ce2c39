"""For the whole suite: the unit/integration markers by directory, the session's log file (which the last test
greps for secrets), the fault tests' figures, scratch dirs and the fake InfluxDB 2.x endpoint. The services are
in integration/conftest.py, out of the unit tests' reach."""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from hub.ops.services import free_port
from tests.fakes import FakeV2

pytest_plugins = ["tests.sigterm"]  # SIGTERM stops the run as Ctrl-C does: services stopped, not orphaned

HERE = Path(__file__).resolve().parent
MARKERS = {HERE / "unit": pytest.mark.unit, HERE / "integration": pytest.mark.integration}


def make_state_dir(prefix: str) -> Path:
    """A temp dir the broker's unprivileged user can reach (pytest's own tmp dirs are private to root)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o755)
    return path


@pytest.fixture
def scratch() -> Iterator[Callable[[str], Path]]:
    """Make state dirs (see make_state_dir) that are removed after the test."""
    made: list[Path] = []

    def new(prefix: str) -> Path:
        made.append(make_state_dir(prefix))
        return made[-1]

    yield new
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def fake_v2() -> AsyncIterator[tuple[FakeV2, str]]:
    """InfluxDB 2.x's write API and `/query` as a local endpoint (tests/fakes.py): the fake and its URL."""
    fake = FakeV2()
    app = web.Application()
    fake.add_routes(app)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield fake, f"http://127.0.0.1:{port}"
    await runner.cleanup()


def unique(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


# Every log record of the run (INFO and up) also goes to one file, which the last test greps for secrets.
SESSION_LOG = Path(tempfile.gettempdir()) / f"labhub-test-log-{os.getpid()}.log"
LAST = "test_no_secret_appears_in_any_log"


def pytest_configure(config: Any) -> None:
    handler = logging.FileHandler(SESSION_LOG, mode="w")
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)


def pytest_unconfigure(config: Any) -> None:
    for handler in list(logging.getLogger().handlers):
        if isinstance(handler, logging.FileHandler) and handler.baseFilename == str(SESSION_LOG):
            logging.getLogger().removeHandler(handler)
            handler.close()
    SESSION_LOG.unlink(missing_ok=True)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[Any]) -> None:
    """Each test is marked by its directory (`-m unit`, `-m integration`); the secrets grep runs last, so it sees
    the logs of every other test."""
    for item in items:
        for directory, marker in MARKERS.items():
            if item.path.is_relative_to(directory):
                item.add_marker(marker)
    items.sort(key=lambda item: item.name == LAST)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """The fault tests' counts (published, stored, lost, duplicates), printed whatever the outcome."""
    faults = sys.modules.get("tests.integration.test_faults")  # imported only when collected
    if faults is not None and faults.REPORT:
        terminalreporter.section("fault tests")
        for line in faults.REPORT:
            terminalreporter.write_line(line)
