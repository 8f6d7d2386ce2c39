"""`labhub influx reader add|remove|list`: read-only users of the lab's InfluxDB 1.x database, for Grafana and
other readers (a notebook, a trainer's own scripts). A reader may SELECT and SHOW on that database only: it cannot
write, drop or see another database. Its password is printed once and kept nowhere (like API tokens).

Done as influxd's admin (`labhub up` keeps its password in the state dir). On 2.x/3.x readers are tokens made in
InfluxDB itself (a read token on the bucket), not here.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.adapters import influxql
from hub.adapters.influx_admin import admin_query
from hub.cli.options import configure, lab_command
from hub.config import ConfigError, LabConfig, ServiceError
from hub.credentials import new_password, read_secret, secret_path
from hub.ops.influxd import INFLUX_ADMIN, INFLUX_HUB

if TYPE_CHECKING:
    from hub.cli.options import Subparsers

READER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
RESERVED = frozenset({INFLUX_ADMIN, INFLUX_HUB})  # the lab's own users: never made or dropped as readers
READ = "READ"


def register(sub: Subparsers) -> None:
    influx = sub.add_parser("influx", help="the lab's InfluxDB: read-only users for Grafana and other readers")
    what = influx.add_subparsers(required=True, metavar="WHAT")
    reader = what.add_parser("reader", help="read-only users of the lab's database (InfluxDB 1.x)")
    actions = reader.add_subparsers(required=True, metavar="ACTION")
    add = lab_command(actions, "add", "a read-only user; prints its password once", cmd_reader, action="add")
    add.add_argument("name", help="the user's name, e.g. grafana")
    remove = lab_command(actions, "remove", "drop a read-only user", cmd_reader, action="remove")
    remove.add_argument("name")
    lab_command(actions, "list", "the database's users and their privilege on it", cmd_reader, action="list")


@dataclass(frozen=True, slots=True)
class Admin:
    """influxd's HTTP API as its admin (no auth where influxd runs without it)."""

    url: str
    database: str
    auth: tuple[str, str] | None

    def run(self, q: str, secret: str = "") -> list[list[Any]]:
        """One statement; the rows of its first series. An error stops the command (exit 2)."""
        answer = admin_query(self.url, q, self.auth)
        if "error" in answer:
            message = str(answer["error"])
            raise ServiceError(f"InfluxDB: {message.replace(secret, '***') if secret else message}")
        results = answer.get("results")
        first = results[0] if isinstance(results, list) and results else {}
        series = first.get("series", []) if isinstance(first, dict) else []
        return [row for s in series for row in s.get("values", [])]


def admin_of(cfg: LabConfig) -> Admin:
    if cfg.influx.backend != "v1":
        raise ConfigError(
            "InfluxDB 2.x/3.x: make a read token in InfluxDB itself (influx auth create --read-bucket <bucket id>)"
        )
    password = read_secret(secret_path(cfg.state_dir, "influx-admin"))
    return Admin(cfg.influx.url.rstrip("/"), cfg.influx.database, (INFLUX_ADMIN, password) if password else None)


def privileges(admin: Admin) -> dict[str, str]:
    """Each user that is not an InfluxDB admin, with its privilege on the lab's database."""
    found = {}
    for user, is_admin in admin.run(influxql.SHOW_USERS):
        if not is_admin:
            grants = {db: privilege for db, privilege in admin.run(influxql.show_grants_query(user))}
            found[user] = grants.get(admin.database, "NO PRIVILEGES")
    return found


def add_reader(admin: Admin, name: str) -> str:
    """A new user who may read the lab's database and nothing else; its password (shown once)."""
    if not READER_NAME.fullmatch(name) or name in RESERVED:
        raise ConfigError(f"reader name {name!r}: a letter, then letters, digits, '_' or '-'; not {sorted(RESERVED)}")
    if name in privileges(admin):
        raise ConfigError(f"InfluxDB user {name!r} exists already: `labhub influx reader remove {name}` first")
    password = new_password()
    admin.run(influxql.create_user_query(name, password), secret=password)
    admin.run(influxql.grant_read_query(admin.database, name))
    return password


def remove_reader(admin: Admin, name: str) -> None:
    """Drop a reader; users with more than READ (the hub's own, another tool's) are not readers to drop here."""
    privilege = privileges(admin).get(name)
    if name in RESERVED or privilege != READ:
        raise ConfigError(f"{name!r} is not a read-only user of {admin.database!r} (privilege: {privilege})")
    admin.run(influxql.drop_user_query(name))


def cmd_reader(args: argparse.Namespace) -> int:
    admin = admin_of(configure(args))
    if args.action == "add":
        password = add_reader(admin, args.name)
        print(f"InfluxDB user {args.name} may read database {admin.database} — password shown once:\n{password}")
    elif args.action == "remove":
        remove_reader(admin, args.name)
        print(f"InfluxDB user {args.name} removed")
    else:
        for user, privilege in sorted(privileges(admin).items()):
            print(f"{user:24} {privilege}")
    return 0
