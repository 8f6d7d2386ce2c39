"""Is this the password of this broker account? Answered from the broker's own store, never a copy of ours.

Mosquitto's dynamic security plugin keeps its accounts in `dynamic-security.json` (its data dir, which the
hub already reads for the lab doctor) and writes the file after every change: a password set, rotated, a
client disabled or deleted. Each password is PBKDF2-HMAC-SHA512 with its salt and iteration count, as
`hub.access.dynsec.password_record` writes them. So a board posting over HTTP is checked exactly as its MQTT
CONNECT would be (a disabled or deleted account is refused the moment the broker's is), at the cost of a stat
per check (the file is parsed again, in a thread, only when it changed) and one PBKDF2 of 101 rounds (~40 µs).

Why not a real CONNECT to the broker with the board's credentials: in a closed lab the broker binds client ids
to usernames, so the check would take over (disconnect) the board's own MQTT session, and the lab doctor,
which reads the broker's log, would see each check as the board logging in without a last will.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

ACCOUNTS_FILE = "dynamic-security.json"
MAX_FILE_BYTES = 256 * 1024 * 1024  # 10,000 accounts with their roles are a few MiB
MAX_ITERATIONS = 1_000_000  # a hand-edited file cannot make each check cost seconds
MAX_PASSWORD = 1024


def accounts_file(state_dir: Path) -> Path:
    """The broker `labhub up` launches keeps its accounts here (`hub.ops.mosquitto`)."""
    return state_dir / "mosquitto" / ACCOUNTS_FILE


@dataclass(frozen=True, slots=True)
class StoredPassword:
    digest: bytes
    salt: bytes
    iterations: int
    enabled: bool = True


def parse_accounts(text: str) -> dict[str, StoredPassword]:
    """The plugin's file → username → stored password. Accounts without a usable password are left out
    (nobody can log in with a password to them). ValueError if the file is not the plugin's JSON."""
    data = json.loads(text)
    clients = data.get("clients") if isinstance(data, dict) else None
    if not isinstance(clients, list):
        raise ValueError("no 'clients' list")
    accounts = {}
    for client in clients:
        if not isinstance(client, dict) or not isinstance(client.get("username"), str):
            continue
        try:
            digest = base64.b64decode(client["password"], validate=True)
            salt = base64.b64decode(client["salt"], validate=True)
            iterations = int(client["iterations"])
        except (KeyError, TypeError, ValueError, binascii.Error):
            continue
        if not digest or not 0 < iterations <= MAX_ITERATIONS:
            continue
        accounts[client["username"]] = StoredPassword(digest, salt, iterations, client.get("disabled") is not True)
    return accounts


def verify(stored: StoredPassword | None, password: str) -> bool:
    """What the broker checks at CONNECT: the account exists, is enabled, and the password hashes to its digest."""
    if stored is None or not stored.enabled or len(password) > MAX_PASSWORD:
        return False
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), stored.salt, stored.iterations, len(stored.digest))
    return hmac.compare_digest(digest, stored.digest)


class AccountsUnavailable(RuntimeError):
    """The broker's accounts cannot be read (another machine's broker, or no broker launched yet)."""


class BrokerAccounts:
    """The broker's accounts file, read again whenever it changed (size, time or inode)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._accounts: dict[str, StoredPassword] | None = None
        self._version: tuple[int, int, int] | None = None
        self._lock = asyncio.Lock()
        self.reloads = 0

    async def check(self, username: str, password: str) -> bool:
        """Whether the broker would let `username` log in with `password`. AccountsUnavailable if unknown."""
        return verify((await self.current()).get(username), password)

    async def current(self) -> dict[str, StoredPassword]:
        try:
            st = os.stat(self.path)
        except OSError as err:
            if self._accounts is None:
                raise AccountsUnavailable(f"the broker's accounts cannot be read: {err.strerror}") from None
            return self._accounts  # replaced a moment ago: the last good copy
        version = (st.st_mtime_ns, st.st_size, st.st_ino)
        if version != self._version or self._accounts is None:
            async with self._lock:
                if version != self._version or self._accounts is None:
                    await self._reload(version)
        if self._accounts is None:
            raise AccountsUnavailable("the broker's accounts file is not readable yet")
        return self._accounts

    async def _reload(self, version: tuple[int, int, int]) -> None:
        try:
            self._accounts = await asyncio.to_thread(self._read)
        except (OSError, ValueError) as err:  # a half-written file: keep the last good copy, read it again later
            log.warning("the broker's accounts file %s could not be read: %s", self.path.name, err)
            return
        self._version = version
        self.reloads += 1

    def _read(self) -> dict[str, StoredPassword]:
        with open(self.path, "rb") as fh:
            raw = fh.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise ValueError(f"over {MAX_FILE_BYTES} bytes")
        return parse_accounts(raw.decode("utf-8"))
