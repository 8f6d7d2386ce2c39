"""What a trainer keeps of a course, and how it comes back: `labhub backup DIR` and `labhub restore DIR`.

A backup folder holds the readings (influxd's portable backup of the lab's database, in `influx/`), a
consistent copy of the registry (SQLite's online backup, never a file copy of a live database), the lab's
secrets, the broker's accounts (`mosquitto/dynamic-security.json`), the small state files (the declared
devices' passwords, the hub's client id), the config used, and `MANIFEST.json`: what is inside, each file's
SHA-256, and the stored points per device, which restore checks against the database it rebuilt.

Facts of influxd 1.6 this is built on (tried, not assumed): a portable backup of one database restores only
that database, never users (SHOW USERS is empty after it), and refuses a database that exists ("DB metadata
not changed. database may already exist"). So restore runs influxd on the new state directory without auth
first (no database yet), restores, then starts it as `labhub up` does, which makes the admin and the hub's user
again with the restored passwords, and counts what came back.

The pure half (the manifest, its checks, the counts) is apart from the thin I/O below it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from hub.adapters.influx_admin import admin_query
from hub.config import CONFIG_NAME, INTERNAL_HOST, LabConfig, ServiceError
from hub.credentials import CREDENTIALS_FILE, private_dir
from hub.ops.influxd import start_influxd
from hub.ops.services import free_port, port_in_use, require_binary
from hub.ops.state import private_state_dir

MANIFEST = "MANIFEST.json"
FORMAT = 1
INFLUX = "influx"
REGISTRY = "registry.sqlite3"
SECRETS = "secrets"
TLS = "tls"  # LAN mode's lab CA and server certificate (hub.adapters.tls): boards trust this CA, keep it
PRIVATE_DIRS = (SECRETS, TLS)
DYNSEC = "mosquitto/dynamic-security.json"  # the broker's accounts, as in the state dir
STATE_FILES = (CREDENTIALS_FILE, "hub-client-id")  # small files of the state dir, kept as they are
REGISTRY_TABLES = ("cohorts", "learners", "devices", "tokens", "demo_sessions")
# Stored points per device and measurement: count(*) gives one count per field; a point has at least one.
COUNT_QUERY = "SELECT count(*) FROM {source} GROUP BY cohort, learner, device"

Say = Callable[[str], None]


class BackupError(RuntimeError):
    """A backup or restore that cannot go on as asked (the message says what to do)."""


# The manifest (pure) ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Manifest:
    labhub: str  # the version that wrote it
    created: str  # UTC, ISO 8601
    database: str
    online: bool  # taken from a running lab: readings that came later are not in it
    files: Mapping[str, str]  # path in the folder → SHA-256
    points: Mapping[str, int]  # "<measurement> <cohort>/<learner>/<device>" → stored points
    registry: Mapping[str, int] = field(default_factory=dict)  # table → rows
    format: int = FORMAT

    @property
    def parts(self) -> list[str]:
        """What is inside, in words a trainer reads."""
        names = {p.split("/")[0] for p in self.files}
        found = [INFLUX, REGISTRY, SECRETS, TLS, "mosquitto", *STATE_FILES, CONFIG_NAME]
        return [n for n in found if n in names]

    def to_json(self) -> str:
        body = {
            "format": self.format,
            "labhub": self.labhub,
            "created": self.created,
            "database": self.database,
            "online": self.online,
            "parts": self.parts,
            "registry": dict(self.registry),
            "points": dict(sorted(self.points.items())),
            "files": dict(sorted(self.files.items())),
        }
        return json.dumps(body, indent=2) + "\n"


def parse_manifest(text: str) -> Manifest:
    """A manifest as written by `to_json`; BackupError naming what is wrong otherwise."""
    try:
        data = json.loads(text)
    except ValueError as err:
        raise BackupError(f"{MANIFEST} is not JSON: {err}") from None
    if not isinstance(data, dict):
        raise BackupError(f"{MANIFEST}: expected an object")
    if data.get("format") != FORMAT:
        raise BackupError(f"{MANIFEST}: format {data.get('format')!r}; this labhub reads format {FORMAT}")
    files, points, registry = data.get("files"), data.get("points"), data.get("registry", {})
    for name, table, kind in (("files", files, str), ("points", points, int), ("registry", registry, int)):
        if not isinstance(table, dict) or not all(isinstance(v, kind) for v in table.values()):
            raise BackupError(f"{MANIFEST}: {name}: expected an object of {kind.__name__} values")
    for name in ("labhub", "created", "database"):
        if not isinstance(data.get(name), str):
            raise BackupError(f"{MANIFEST}: {name}: expected a string")
    assert isinstance(files, dict) and isinstance(points, dict) and isinstance(registry, dict)
    return Manifest(
        data["labhub"], data["created"], data["database"], bool(data.get("online")), files, points, registry
    )


def check_files(expected: Mapping[str, str], found: Mapping[str, str]) -> list[str]:
    """What differs between the manifest's checksums and the folder's: missing or changed files. Files the
    manifest does not name (a trainer's note) are not a problem."""
    missing = [f"missing: {p}" for p in sorted(expected) if p not in found]
    changed = [f"changed: {p}" for p in sorted(expected) if p in found and found[p] != expected[p]]
    return missing + changed


def points_from_series(series: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """COUNT_QUERY's answer as `"<measurement> <cohort>/<learner>/<device>"` → points (the largest of the
    fields' counts: every point has that field or fewer)."""
    points: dict[str, int] = {}
    for s in series:
        tags = s.get("tags") or {}
        key = f"{s.get('name', '')} {tags.get('cohort', '')}/{tags.get('learner', '')}/{tags.get('device', '')}"
        counts = [int(v) for row in s.get("values") or [] for v in row[1:] if isinstance(v, int)]
        if counts:
            points[key] = points.get(key, 0) + max(counts)
    return points


def compare_points(expected: Mapping[str, int], found: Mapping[str, int], exact: bool) -> list[str]:
    """Devices whose restored points differ from the manifest's (fewer ever; more only if `exact`)."""
    problems = []
    for key in sorted(expected.keys() | found.keys()):
        want, got = expected.get(key, 0), found.get(key, 0)
        if got < want or (exact and got != want):
            problems.append(f"{key}: {got} points, the backup has {want}")
    return problems


def source(database: str) -> str:
    """Every measurement of `database` (its default retention policy), as an InfluxQL FROM clause."""
    return '"' + database.replace("\\", "\\\\").replace('"', '\\"') + '"../.*/'


# Thin I/O ---------------------------------------------------------------------------------------------


def checksums(folder: Path) -> dict[str, str]:
    """SHA-256 of each file under `folder` but the manifest, by path relative to it."""
    sums = {}
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder).as_posix()
        if path.is_file() and rel != MANIFEST:
            digest = hashlib.sha256()
            with open(path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
            sums[rel] = digest.hexdigest()
    return sums


def backup(cfg: LabConfig, config_file: Path, out: Path, say: Say, now: str) -> Manifest:
    """Copy the lab to `out` (new or empty); works on a running lab and on a stopped one."""
    _check_influx(cfg)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupError(f"{out} is not an empty folder: give a new one (a backup never overwrites)")
    if not cfg.registry_path.is_file():
        raise BackupError(f"no registry at {cfg.registry_path}: is the state dir right (--state-dir)?")
    made = not out.exists()
    private_dir(out)
    try:
        return _write(cfg, config_file, out, say, now)
    except (BackupError, ServiceError, OSError, sqlite3.Error) as err:
        if made:
            with contextlib.suppress(OSError):
                out.rmdir()  # only if nothing was written in it yet
        left = f"\nthe backup in {out} is incomplete: remove it" if out.exists() else ""
        raise BackupError(f"{err}{left}") from None


def _write(cfg: LabConfig, config_file: Path, out: Path, say: Say, now: str) -> Manifest:
    with _influxd(cfg, say) as (url, rpc, online):
        say(f"counting the stored points per device ({'running lab' if online else 'lab stopped'})")
        points = reading_points(url, cfg)
        say(f"backing up InfluxDB database {cfg.influx.database} ({sum(points.values())} points, {len(points)} series)")
        _influxd_tool("backup", "-db", cfg.influx.database, "-host", f"{INTERNAL_HOST}:{rpc}", str(out / INFLUX))
    say(f"copying the registry {cfg.registry_path} (SQLite online backup)")
    copy_sqlite(cfg.registry_path, out / REGISTRY)
    say("copying the secrets, the broker's accounts and the config")
    for name in PRIVATE_DIRS:
        if (cfg.state_dir / name).is_dir():
            _copy_private(cfg.state_dir / name, out / name)
    if (cfg.state_dir / DYNSEC).is_file():
        _copy_file(cfg.state_dir / DYNSEC, out / DYNSEC, check_json=True)
    for name in STATE_FILES:
        if (cfg.state_dir / name).is_file():
            _copy_file(cfg.state_dir / name, out / name)
    _copy_file(config_file, out / CONFIG_NAME)
    manifest = Manifest(
        labhub=version("labhub"),
        created=now,
        database=cfg.influx.database,
        online=online,
        files=checksums(out),
        points=points,
        registry=registry_rows(out / REGISTRY),
    )
    (out / MANIFEST).write_text(manifest.to_json())
    return manifest


def restore(cfg: LabConfig, folder: Path, say: Say) -> Manifest:
    """Rebuild a lab's state in `cfg.state_dir` (absent or empty) from a backup folder."""
    _check_influx(cfg)
    try:
        manifest = parse_manifest((folder / MANIFEST).read_text())
    except OSError as err:
        raise BackupError(f"{folder / MANIFEST}: cannot read: {err.strerror} (is it a labhub backup?)") from None
    say(f"checking {len(manifest.files)} files against {MANIFEST} (backup of {manifest.created})")
    problems = check_files(manifest.files, checksums(folder))
    if problems:
        raise BackupError(f"{folder} does not match its manifest: " + "; ".join(problems[:10]))
    state = cfg.state_dir
    if state.exists() and (not state.is_dir() or any(state.iterdir())):
        raise BackupError(f"{state} is not empty: restore goes onto a fresh state dir only (--state-dir NEW)")
    if cfg.registry_path.exists():
        raise BackupError(f"{cfg.registry_path} exists: restore never overwrites a registry")
    private_state_dir(state)
    try:
        points = _rebuild(cfg, folder, manifest, say)
    except (BackupError, ServiceError, OSError, sqlite3.Error) as err:
        raise BackupError(f"{err}\nwhat was restored so far is in {state}: remove it before trying again") from None
    problems = compare_points(manifest.points, points, exact=not manifest.online)
    if problems:
        raise BackupError("restored readings differ from the backup's: " + "; ".join(problems[:10]))
    say(f"restored {sum(points.values())} points of {len(points)} series, as in the backup")
    return manifest


def _rebuild(cfg: LabConfig, folder: Path, manifest: Manifest, say: Say) -> dict[str, int]:
    """Copy the files, restore the database, start influxd as the lab would; the points it then holds."""
    state = cfg.state_dir
    say(f"copying the registry to {cfg.registry_path}, the secrets and the broker's accounts to {state}")
    cfg.registry_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    _copy_file(folder / REGISTRY, cfg.registry_path)
    for name in PRIVATE_DIRS:
        if (folder / name).is_dir():
            _copy_private(folder / name, state / name)
    if (folder / DYNSEC).is_file():
        _copy_file(folder / DYNSEC, state / DYNSEC)
    for name in STATE_FILES:
        if (folder / name).is_file():
            _copy_file(folder / name, state / name)
    database = cfg.influx.database
    say(f"restoring InfluxDB database {manifest.database} as {database} (influxd started on {state} for it)")
    rpc = free_port()
    service = start_influxd(state, INTERNAL_HOST, free_port(), rpc, database=database)  # no auth: no users yet
    try:
        host = f"{INTERNAL_HOST}:{rpc}"
        _influxd_tool("restore", "-db", manifest.database, "-newdb", database, "-host", host, str(folder / INFLUX))
    finally:
        service.stop()
    say("starting influxd as `labhub up` does (its admin and the hub's user) and counting what came back")
    port = free_port()
    service = start_influxd(state, INTERNAL_HOST, port, free_port(), auth=True, database=database)
    try:
        return reading_points(f"http://{INTERNAL_HOST}:{port}", cfg)
    finally:
        service.stop()


def reading_points(url: str, cfg: LabConfig) -> dict[str, int]:
    """Stored points per device and measurement, asked as the hub's user (the lab's influxd has auth on)."""
    password = cfg.influx_password()
    auth = (cfg.influx.username, password) if cfg.influx.username and password else None
    answer = admin_query(url, COUNT_QUERY.format(source=source(cfg.influx.database)), auth)
    if "error" in answer:
        raise BackupError(f"InfluxDB at {url} did not count the readings: {answer['error']}")
    results = answer.get("results")
    series = results[0].get("series", []) if isinstance(results, list) and results else []
    return points_from_series(series)


def copy_sqlite(src: Path, dst: Path) -> None:
    """A consistent copy of a database others may be writing (SQLite's backup API), private, one file."""
    os.close(os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    with contextlib.closing(sqlite3.connect(f"{src.resolve().as_uri()}?mode=ro", uri=True, timeout=10)) as live:
        with contextlib.closing(sqlite3.connect(dst)) as target:
            live.backup(target)
            target.execute("PRAGMA journal_mode=DELETE")  # no -wal beside it: the copy is the one file


def registry_rows(path: Path) -> dict[str, int]:
    """Rows per table of a registry copy (a summary for the manifest)."""
    with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
        return {t: int(db.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in REGISTRY_TABLES}


def _check_influx(cfg: LabConfig) -> None:
    if cfg.influx.backend != "v1":
        raise BackupError("labhub backup covers InfluxDB 1.x (influx.backend = 'v1'); back up 2.x with `influx backup`")


@contextlib.contextmanager
def _influxd(cfg: LabConfig, say: Say) -> Iterator[tuple[str, int, bool]]:
    """The lab's influxd: the running one (it answers on its backup port), or one started on the state dir
    for the backup (on free ports) and stopped after. (URL, backup port, whether the lab was running.)"""
    url = urlparse(cfg.influx.url)
    rpc = cfg.influx.rpc_port
    if port_in_use(INTERNAL_HOST, rpc):
        yield cfg.influx.url, rpc, True
        return
    if port_in_use(url.hostname or INTERNAL_HOST, url.port or 8086):
        raise BackupError(
            f"InfluxDB answers on {cfg.influx.url} but not on its backup port {INTERNAL_HOST}:{rpc}: "
            "give the lab's --influx-rpc-port"
        )
    if not cfg.influx.launch:
        raise BackupError(f"InfluxDB does not answer on {INTERNAL_HOST}:{rpc}: start it (influx.launch is off)")
    if not (cfg.state_dir / "influxdb").is_dir():
        raise BackupError(f"no InfluxDB data in {cfg.state_dir}: is the state dir right (--state-dir)?")
    say(f"the lab is stopped: starting influxd on {cfg.state_dir} for the backup")
    port, rpc = free_port(), free_port()
    service = start_influxd(cfg.state_dir, INTERNAL_HOST, port, rpc, auth=True, database=cfg.influx.database)
    try:
        yield f"http://{INTERNAL_HOST}:{port}", rpc, False
    finally:
        service.stop()


def _influxd_tool(action: str, *args: str) -> None:
    """`influxd backup|restore -portable …`; its own words if it fails."""
    argv = [require_binary("influxd", "influxdb"), action, "-portable", *args]
    done = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise BackupError(f"influxd {action} failed (code {done.returncode}):\n{tail}")


def _copy_file(src: Path, dst: Path, check_json: bool = False) -> None:
    """A private copy (0600, in a folder made 0700 if missing)."""
    data = src.read_bytes()
    if check_json:
        try:
            json.loads(data)
        except ValueError:
            raise BackupError(f"{src} is not JSON (written at this very moment?): run the backup again") from None
    if not dst.parent.exists():
        private_dir(dst.parent)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _copy_private(src: Path, dst: Path) -> None:
    """The regular files of a private folder (secrets, certificates), into a 0700 folder, each 0600; not
    half-written files (`.tmp`) nor lock files (`.lock`)."""
    private_dir(dst)
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.is_symlink() and not path.name.startswith(".") and path.suffix != ".tmp":
            _copy_file(path, dst / path.name)
