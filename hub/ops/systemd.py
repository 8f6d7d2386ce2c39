"""The lab as a systemd service: the unit's text (pure, from a `UnitSpec`), where it goes, and thin `systemctl` calls.

The unit runs `labhub up --no-sim` with the config and the state dir written out, so it does not depend on the
environment of whoever installed it. Stopping: systemd sends SIGTERM to `labhub` alone (KillMode=mixed), which stops
the hub first (it drains), then its workers, then influxd and mosquitto, the last started first; only what is left
after TimeoutStopSec gets SIGKILL. The default KillMode would signal the whole cgroup at once, and the broker and the
database would go while the hub still drains into them.

A dedicated `labhub` account runs it where that account can read the interpreter, the code and the config (a
virtualenv or an interpreter under a private home, such as /root, cannot be read: then the unit runs as root, and
mosquitto drops to its own user as `labhub up` does as root). As `labhub`, every port is above 1024 and mosquitto
needs no `user` line (it only switches users when started as root); root's admin commands (`labhub device add`…)
may leave root-owned files in the state dir, so each start hands the state dir back to `labhub` first.
"""

from __future__ import annotations

import grp
import os
import pwd
import shlex
import shutil
import stat
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hub.ops.lab import WORKER_STOP_S

UNIT_NAME = "labhub.service"
SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
SERVICE_ACCOUNT = "labhub"
SERIAL_GROUP = "dialout"  # Debian's owner group of /dev/ttyUSB*, /dev/ttyACM*: the config's [[serial]] boards
RESTART_S = 5
HUB_DRAIN_S = 10.0  # the hub's writer drains into InfluxDB for at most this long when it stops (hub.runtime)
SERVICE_STOP_S = 10.0  # Service.stop's timeout: influxd, then mosquitto, each
STOP_MARGIN_S = 30.0  # the hub's own commit and close, interpreter exit, a slow disk
STOP_TIMEOUT_S = round(HUB_DRAIN_S + WORKER_STOP_S + 2 * SERVICE_STOP_S + STOP_MARGIN_S)
START_LIMIT = (300, 5)  # a lab that fails 5 starts within 300 s stays down (a config error does not heal by itself)
SUCCESS_EXIT = 143  # 128 + SIGTERM: `labhub up` stopped before the hub had started


@dataclass(frozen=True, slots=True)
class UnitSpec:
    """What the unit runs and as whom."""

    command: tuple[str, ...]  # the `labhub` executable, or (python, "-m", "hub.cli")
    config: Path
    state_dir: Path
    user_unit: bool = False  # a `systemctl --user` unit: runs as the user who installed it, no system hardening
    account: str = ""  # the dedicated account (system units); "" runs as root
    groups: tuple[str, ...] = ()  # the account's extra groups (SERIAL_GROUP where it exists)
    chown: str = "/bin/chown"
    mkdir: str = "/bin/mkdir"


def quote(arg: str, dollars: bool = False) -> str:
    """One word of a unit file's setting: systemd expands `%` specifiers everywhere (doubled here), `$` variables
    in a command's arguments (doubled when `dollars`; never in the command's own path), and splits on blanks (a
    word with a blank, a quote or a backslash is quoted)."""
    word = arg.replace("%", "%%")
    if dollars:
        word = word.replace("$", "$$")
    if word and not any(c.isspace() or c in "\"'\\;" for c in word):
        return word
    return '"' + word.replace("\\", "\\\\").replace('"', '\\"') + '"'


def command_line(words: Sequence[str]) -> str:
    return " ".join(quote(w, dollars=i > 0) for i, w in enumerate(words))


def exec_start(spec: UnitSpec) -> tuple[str, ...]:
    """`labhub up` for a classroom: no simulated fleet, and nothing left to the environment's defaults."""
    return (*spec.command, "up", "--no-sim", "--config", str(spec.config), "--state-dir", str(spec.state_dir))


def unit_text(spec: UnitSpec) -> str:
    """The unit file: restarted on failure, stopped in order, sandboxed as far as the lab allows."""
    unit = [
        "[Unit]",
        "Description=LabHub: an IoT lab's broker, database, hub and dashboard",
        f"StartLimitIntervalSec={START_LIMIT[0]}",
        f"StartLimitBurst={START_LIMIT[1]}",
    ]
    if not spec.user_unit:  # a user manager cannot order itself after the system's network
        unit += ["Wants=network-online.target", "After=network-online.target"]
    service = ["", "[Service]", "Type=exec"]
    if spec.account:
        service += [f"User={spec.account}", f"Group={spec.account}"]
        if spec.groups:
            service.append("SupplementaryGroups=" + " ".join(spec.groups))
        owner = f"{spec.account}:{spec.account}"
        service += [  # `+`: with full privileges, before the switch to the account
            "ExecStartPre=+" + command_line((spec.mkdir, "-p", str(spec.state_dir))),
            "ExecStartPre=+" + command_line((spec.chown, "-R", owner, str(spec.state_dir))),
        ]
    service += [
        "Environment=PYTHONUNBUFFERED=1",
        "ExecStart=" + command_line(exec_start(spec)),
        "Restart=on-failure",
        f"RestartSec={RESTART_S}",
        f"SuccessExitStatus={SUCCESS_EXIT}",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        f"TimeoutStopSec={STOP_TIMEOUT_S}",
        "NoNewPrivileges=yes",
    ]
    if not spec.user_unit:  # these need privileges a user manager does not have
        service += ["ProtectSystem=full", "ReadWritePaths=" + quote(str(spec.state_dir))]
        if not any(in_tmp(p) for p in (Path(spec.command[0]), spec.config, spec.state_dir)):
            service.append("PrivateTmp=yes")  # the service's own /tmp would hide these
        service += [
            "ProtectKernelTunables=yes",
            "ProtectKernelModules=yes",
            "ProtectControlGroups=yes",
            "RestrictSUIDSGID=yes",
        ]
    install = ["", "[Install]", "WantedBy=" + wanted_by(spec.user_unit)]
    return "\n".join(unit + service + install) + "\n"


def in_tmp(path: Path) -> bool:
    return any(path.is_relative_to(tmp) for tmp in (Path("/tmp"), Path("/var/tmp")))


def wanted_by(user_unit: bool) -> str:
    return "default.target" if user_unit else "multi-user.target"


def wants_link(directory: Path, user_unit: bool) -> Path:
    """The link `systemctl enable` makes: uninstall removes it too where systemd cannot be asked to."""
    return directory / f"{wanted_by(user_unit)}.wants" / UNIT_NAME


def unit_dir(user_unit: bool, env: Mapping[str, str] = os.environ) -> Path:
    """Where systemd reads the administrator's units: /etc/systemd/system, or the user's ~/.config/systemd/user."""
    if not user_unit:
        return SYSTEM_UNIT_DIR
    base = env.get("XDG_CONFIG_HOME") or str(Path(env.get("HOME") or Path.home()) / ".config")
    return Path(base) / "systemd" / "user"


def unreadable_by_others(paths: Iterable[Path]) -> list[Path]:
    """The paths that an account other than their owner cannot read: a folder on the way without the others' x
    bit, or the file itself without their r bit (a folder also needs x). Symlinks are checked on both ends."""
    bad = []
    for path in paths:
        for target in dict.fromkeys((path.absolute(), path.resolve())):
            try:
                mode = target.stat().st_mode
                blocked = any(not parent.stat().st_mode & stat.S_IXOTH for parent in target.parents)
            except OSError:
                blocked = True
                mode = 0
            need = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
            if blocked or mode & need != need:
                bad.append(target)
                break
    return bad


def account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def create_account(name: str, home: Path) -> str | None:
    """A system account with its own group, no login and no home made; None once it exists, else why not."""
    useradd = shutil.which("useradd") or ("/usr/sbin/useradd" if os.path.exists("/usr/sbin/useradd") else None)
    if useradd is None:
        return "useradd not found"
    argv = [useradd, "--system", "--user-group", "--home-dir", str(home), "--no-create-home"]
    done = subprocess.run([*argv, "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True, check=False)
    return None if done.returncode == 0 else done.stderr.strip() or f"useradd exited with {done.returncode}"


def write_unit(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(0o644)
    os.replace(tmp, path)


def manager_missing(user_unit: bool) -> str | None:
    """Why `systemctl` cannot be asked here (no systemctl, systemd not PID 1: CI, containers), or None."""
    if shutil.which("systemctl") is None:
        return "systemctl is not installed here"
    if not Path("/run/systemd/system").is_dir():
        return "systemd is not running here"
    if user_unit and not os.environ.get("XDG_RUNTIME_DIR"):
        return "no user session here (XDG_RUNTIME_DIR is not set): log in as that user, or run `loginctl enable-linger`"
    return None


def systemctl_argv(user_unit: bool, *args: str) -> list[str]:
    return ["systemctl", *(["--user"] if user_unit else []), *args]


def systemctl(user_unit: bool, *args: str, capture: bool = True) -> subprocess.CompletedProcess[str]:
    """One `systemctl` call; its output captured (to report a failure) unless shown as it comes (`status`)."""
    return subprocess.run(systemctl_argv(user_unit, *args), capture_output=capture, text=True, check=False)


def later(user_unit: bool, steps: Sequence[Sequence[str]]) -> str:
    """The commands to run once systemd is there, as one shell line."""
    return " && ".join(shlex.join(systemctl_argv(user_unit, *step)) for step in steps)
