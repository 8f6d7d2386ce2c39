"""Secrets on disk: the lab's own passwords (broker admin, hub, InfluxDB) and the credentials handed to devices.

Each secret is a file readable by its owner only (0600, in a 0700 directory), created on first use. Nothing
here logs a secret; callers log file paths, never contents.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from pathlib import Path

CREDENTIALS_FILE = "lab-credentials.toml"


def new_password() -> str:
    """A random password a learner can still type into a sketch: 22 URL-safe characters (128 bits)."""
    return secrets.token_urlsafe(16)


def secret_path(state_dir: Path, name: str) -> Path:
    return state_dir / "secrets" / name


def private_dir(path: Path) -> Path:
    """`path` as a folder only its owner may enter (0700), made if missing, tightened if it was wider."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def write_private(path: Path, text: str, private_parent: bool = False) -> None:
    """Write a file its owner alone may read (0600), atomically; never through a link, never briefly wider.
    A missing folder is made 0700; `private_parent` tightens an existing one too (the secrets folder)."""
    if private_parent or not path.parent.exists():
        private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)  # a stale .tmp (or a link planted there) is not written through
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as fh:
        os.fchmod(fh.fileno(), 0o600)  # whatever the umask
        fh.write(text)
    os.replace(tmp, path)


def read_secret(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except FileNotFoundError:
        return None


def hub_client_id(configured: str, default: str, state_dir: Path) -> str:
    """The hub's MQTT client id, with a secret suffix kept in the state dir (Mosquitto lets any account take
    over a client id it can guess), unless the operator chose their own."""
    if not configured.startswith(default):
        return configured
    path = state_dir / "hub-client-id"
    suffix = read_secret(path)
    if suffix is None:
        suffix = secrets.token_hex(6)
        write_private(path, suffix + "\n")
    return f"{configured}-{suffix}"


def write_secret(path: Path, value: str) -> None:
    write_private(path, value + "\n", private_parent=True)


def ensure_secret(path: Path) -> str:
    """The secret in `path`, created (random) if the file does not exist yet."""
    existing = read_secret(path)
    if existing is not None:
        return existing
    value = new_password()
    write_secret(path, value)
    return value


def load_credentials(state_dir: Path) -> dict[str, str]:
    """Usernames → passwords of the accounts `labhub up` created for declared devices."""
    return load_credentials_file(state_dir / CREDENTIALS_FILE)


def load_credentials_file(path: Path) -> dict[str, str]:
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        return {}
    accounts = data.get("accounts", {})
    return {str(k): str(v) for k, v in accounts.items() if isinstance(v, str)}


def save_credentials(state_dir: Path, new: dict[str, str]) -> Path:
    """Add (or replace) accounts in the lab's credentials file; returns its path."""
    accounts = load_credentials(state_dir) | new
    lines = [
        "# MQTT accounts of the lab's declared devices (username = cohort/learner/device), written by labhub.",
        "# Keep this file private. `labhub device rotate ID` gives a device a new password.",
        "[accounts]",
        *(f'"{user}" = "{password}"' for user, password in sorted(accounts.items())),
    ]
    path = state_dir / CREDENTIALS_FILE
    write_private(path, "\n".join(lines) + "\n")
    return path
