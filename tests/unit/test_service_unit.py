"""`labhub service`: the unit it writes passes systemd's own check (`systemd-analyze verify`, from the Debian package
`systemd` that ./lab test installs; no systemd needs to run), says what the lab needs, and install, status and
uninstall do what they say with systemctl absent, failing, or answering (a stand-in on PATH)."""

from __future__ import annotations

import inspect
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.cli import service
from hub.cli.main import main
from hub.ops import systemd
from hub.ops.lab import WORKER_STOP_S
from hub.ops.services import Service
from hub.ops.systemd import (
    STOP_TIMEOUT_S,
    UNIT_NAME,
    UnitSpec,
    command_line,
    quote,
    unit_text,
    unreadable_by_others,
)

PYTHON = (sys.executable, "-m", "hub.cli")  # a real executable: verify refuses a unit whose command is missing
INSTALLED = ("/opt/labhub/bin/labhub",)  # where the checkout is (CI may clone under /tmp) changes no field below
CONFIG = Path("/etc/labhub/labhub.toml")
STATE = Path("/var/lib/labhub")


def verify(unit: Path, user: bool = False) -> str:
    """systemd-analyze's complaints about `unit` (it exits 0 on an unknown key: its output is what counts)."""
    analyze = shutil.which("systemd-analyze")
    assert analyze, "systemd-analyze is missing: install the Debian package 'systemd' (./lab test does)"
    env = dict(os.environ, XDG_RUNTIME_DIR=str(unit.parent)) if user else None
    done = subprocess.run(
        [analyze, *(["--user"] if user else []), "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
        check=False,
    )
    return (
        f"exit {done.returncode}: {done.stdout}{done.stderr}" if done.returncode or done.stdout or done.stderr else ""
    )


def fields(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            out.setdefault(key, []).append(value)
    return out


SPECS = {
    "root": UnitSpec(PYTHON, CONFIG, STATE),
    "account": UnitSpec(PYTHON, CONFIG, STATE, account="labhub", groups=("dialout",)),
    "user": UnitSpec(PYTHON, Path("/home/ana/.config/labhub/labhub.toml"), Path("/home/ana/.local/state/labhub"), True),
}


@pytest.mark.parametrize("name", SPECS)
def test_systemd_accepts_the_unit(name: str, tmp_path: Path) -> None:
    spec = SPECS[name]
    unit = tmp_path / UNIT_NAME
    unit.write_text(unit_text(spec))
    assert verify(unit, user=spec.user_unit) == ""


def test_the_unit_runs_the_classroom_lab_and_restarts_it_on_failure() -> None:
    got = fields(unit_text(UnitSpec(INSTALLED, CONFIG, STATE)))
    assert got["ExecStart"] == [f"/opt/labhub/bin/labhub up --no-sim --config {CONFIG} --state-dir {STATE}"]
    assert got["Restart"] == ["on-failure"] and got["RestartSec"] == ["5"]
    assert got["KillMode"] == ["mixed"]  # SIGTERM to labhub alone: it stops the hub before the broker and database
    assert got["ReadWritePaths"] == [str(STATE)] and got["ProtectSystem"] == ["full"]
    assert got["NoNewPrivileges"] == ["yes"] and got["PrivateTmp"] == ["yes"]
    assert got["Wants"] == got["After"] == ["network-online.target"]
    assert got["WantedBy"] == ["multi-user.target"]
    assert "User" not in got  # root: mosquitto drops to its own user, as under `labhub up`
    # A clean stop: the hub drains (10 s), a worker drains (WORKER_STOP_S), influxd and mosquitto stop in turn.
    service_stop = inspect.signature(Service.stop).parameters["timeout"].default
    assert int(got["TimeoutStopSec"][0]) == STOP_TIMEOUT_S >= 10 + WORKER_STOP_S + 2 * service_stop + 10


def test_a_dedicated_account_gets_the_state_dir_back_at_each_start() -> None:
    got = fields(unit_text(SPECS["account"]))
    assert got["User"] == got["Group"] == ["labhub"] and got["SupplementaryGroups"] == ["dialout"]
    assert got["ExecStartPre"] == [f"+/bin/mkdir -p {STATE}", f"+/bin/chown -R labhub:labhub {STATE}"]


def test_a_user_unit_leaves_out_what_needs_a_system_manager() -> None:
    got = fields(unit_text(SPECS["user"]))
    assert got["WantedBy"] == ["default.target"]
    assert not {"User", "ProtectSystem", "PrivateTmp", "After", "ExecStartPre"} & got.keys()
    assert got["Restart"] == ["on-failure"] and got["NoNewPrivileges"] == ["yes"]


def test_paths_under_tmp_keep_the_shared_tmp() -> None:
    text = unit_text(UnitSpec(PYTHON, CONFIG, Path(tempfile.gettempdir()) / "lab"))
    assert "PrivateTmp" not in text  # the service's private /tmp would hide its own state dir


@pytest.mark.parametrize(
    ("word", "quoted"),
    [
        ("/usr/bin/labhub", "/usr/bin/labhub"),
        ("/srv/my lab/labhub", '"/srv/my lab/labhub"'),
        ("/srv/100%/x", "/srv/100%%/x"),
        ("/srv/$HOME", "/srv/$HOME"),  # a command's path: systemd expands no variable there
        ('/srv/a"b', '"/srv/a\\"b"'),
        ("a\\b", '"a\\\\b"'),
        ("", '""'),
    ],
)
def test_words_are_quoted_for_systemd(word: str, quoted: str) -> None:
    assert quote(word) == quoted


def test_a_commands_arguments_keep_their_dollars() -> None:
    assert command_line(["/srv/$x/labhub", "--state-dir", "/srv/$x"]) == "/srv/$x/labhub --state-dir /srv/$$x"


def test_systemd_finds_a_command_whose_path_has_blanks_percents_and_dollars(tmp_path: Path) -> None:
    odd = tmp_path / "my lab 100% $HOME"
    odd.mkdir()
    labhub = odd / "labhub"
    labhub.write_text("#!/bin/sh\n")
    labhub.chmod(0o755)
    unit = tmp_path / UNIT_NAME
    unit.write_text(unit_text(UnitSpec((str(labhub),), CONFIG, odd / "state")))
    assert verify(unit) == ""  # a word split or expanded would name a command that does not exist


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder every account can pass through (pytest's own tmp_path is under a private folder)."""
    with tempfile.TemporaryDirectory() as name:
        os.chmod(name, 0o755)
        yield Path(name)


def test_what_other_accounts_cannot_read_is_named(open_dir: Path) -> None:
    readable = open_dir / "labhub.toml"
    readable.write_text("")
    readable.chmod(0o644)
    private = open_dir / "secret.toml"
    private.write_text("")
    private.chmod(0o600)
    closed = open_dir / "closed"
    closed.mkdir(mode=0o700)
    inside = closed / "labhub.toml"
    inside.write_text("")
    inside.chmod(0o644)
    passable = open_dir / "passable"
    passable.mkdir()
    passable.chmod(0o711)
    through = passable / "labhub.toml"
    through.write_text("")
    through.chmod(0o644)
    link = open_dir / "link.toml"
    link.symlink_to(inside)
    assert unreadable_by_others([readable, through, Path("/bin/sh")]) == []
    assert unreadable_by_others([private, inside, link, closed, open_dir / "missing"]) == [
        private,
        inside,
        inside,
        closed,
        open_dir / "missing",
    ]
    assert stat.S_IMODE(closed.stat().st_mode) == 0o700


def test_the_command_is_this_labhub(tmp_path: Path) -> None:
    script = tmp_path / "labhub"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    assert service.labhub_command(str(script), "/x/python") == (str(script),)
    assert service.labhub_command("hub/cli/__main__.py", "/venv/bin/python") == ("/venv/bin/python", "-m", "hub.cli")


def lab_config(tmp_path: Path) -> Path:
    config = tmp_path / "labhub.toml"
    assert main(["init", "--to", str(config)]) == 0
    return config


def test_install_writes_a_unit_systemd_accepts_and_uninstall_removes_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, units, state = lab_config(tmp_path), tmp_path / "units", tmp_path / "state"
    argv = ["--config", str(config), "--state-dir", str(state), "--unit-dir", str(units), "--no-enable"]
    assert main(["service", "install", *argv, "--run-as", "root"]) == 0
    unit = units / UNIT_NAME
    got = fields(unit.read_text())
    assert got["ExecStart"] == [f"{sys.executable} -m hub.cli up --no-sim --config {config} --state-dir {state}"]
    assert got["Restart"] == ["on-failure"]
    assert verify(unit) == ""
    assert f"wrote {unit}" in capsys.readouterr().out
    assert main(["service", "status", "--unit-dir", str(units)]) == 0
    assert main(["service", "uninstall", "--unit-dir", str(units)]) == 0
    assert not unit.exists()
    out = capsys.readouterr().out
    assert f"removed {unit}" in out and f"kept: the lab's data in {state}" in out
    assert main(["service", "status", "--unit-dir", str(units)]) == 1
    assert main(["service", "uninstall", "--unit-dir", str(units)]) == 0
    assert "not installed" in capsys.readouterr().out


def test_the_dedicated_account_where_it_can_read_the_lab(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, units = lab_config(tmp_path), tmp_path / "units"
    monkeypatch.setattr(service, "create_account", lambda *a: pytest.fail("--unit-dir must not make an account"))
    monkeypatch.setattr(service, "unreadable_by_others", lambda paths: [])
    assert main(["service", "install", "--config", str(config), "--unit-dir", str(units)]) == 0
    assert fields((units / UNIT_NAME).read_text())["User"] == ["labhub"]
    monkeypatch.setattr(service, "unreadable_by_others", lambda paths: [Path("/root/.venv/bin/python")])
    assert main(["service", "install", "--config", str(config), "--unit-dir", str(units)]) == 0
    assert "User" not in fields((units / UNIT_NAME).read_text())
    assert "runs as root: another account than root cannot read /root/.venv/bin/python" in capsys.readouterr().out


def fake_systemctl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int = 0) -> Path:
    """A `systemctl` first on PATH that logs its arguments, one call a line, and exits with `code`."""
    bin_dir, calls = tmp_path / "bin", tmp_path / "calls"
    bin_dir.mkdir()
    fake = bin_dir / "systemctl"
    fake.write_text(f'#!/bin/sh\necho "$*" >> {calls}\necho "Failed: no bus" >&2\nexit {code}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    return calls


def test_without_systemd_install_writes_the_unit_and_says_what_to_run_later(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = lab_config(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no systemctl at all
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home-config"))
    assert main(["service", "install", "--user", "--config", str(config)]) == 0
    unit = tmp_path / "home-config" / "systemd" / "user" / UNIT_NAME
    assert unit.is_file()
    out = capsys.readouterr().out
    assert "systemctl is not installed here, so nothing was started" in out
    later = "systemctl --user daemon-reload && systemctl --user enable labhub.service && systemctl --user restart"
    assert later in out and "Traceback" not in out
    assert main(["service", "status", "--user"]) == 1
    assert "systemctl is not installed here" in capsys.readouterr().out
    link = unit.parent / "default.target.wants" / UNIT_NAME  # enabled once by a systemd that is not here now
    link.parent.mkdir()
    link.symlink_to(unit)
    assert main(["service", "uninstall", "--user"]) == 0
    assert not unit.exists() and not link.is_symlink()


def test_with_systemd_install_enables_and_starts_and_uninstall_disables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config, calls = lab_config(tmp_path), fake_systemctl(tmp_path, monkeypatch)
    monkeypatch.setattr(service, "manager_missing", lambda user_unit: None)
    assert main(["service", "install", "--user", "--config", str(config)]) == 0
    assert main(["service", "status", "--user"]) == 0
    assert main(["service", "uninstall", "--user"]) == 0
    assert calls.read_text().splitlines() == [
        "--user daemon-reload",
        "--user enable labhub.service",
        "--user restart labhub.service",
        "--user status --no-pager labhub.service",
        "--user disable --now labhub.service",
        "--user daemon-reload",
    ]
    assert not (tmp_path / "home-config" / "systemd" / "user" / UNIT_NAME).exists()


def test_a_failing_systemctl_is_reported_not_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config, calls = lab_config(tmp_path), fake_systemctl(tmp_path, monkeypatch, code=1)
    monkeypatch.setattr(service, "manager_missing", lambda user_unit: None)
    assert main(["service", "install", "--user", "--config", str(config)]) == 1
    assert "`systemctl --user daemon-reload` failed: Failed: no bus" in capsys.readouterr().out
    assert calls.read_text().splitlines() == ["--user daemon-reload"]  # nothing enabled after a failed reload


def test_a_system_install_needs_root(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert main(["service", "install"]) == 1
    assert "a system service needs root" in capsys.readouterr().out
    assert systemd.unit_dir(False) == Path("/etc/systemd/system")
