"""Every InfluxQL statement the hub sends (its reads, and the database and users `labhub up` provisions), built
here as text by pure functions. No I/O.

Names go into queries escaped, whatever they hold: identifiers in double quotes, values in single quotes, regex
text with its metacharacters and `/` escaped (InfluxQL's own escapes: backslash, the quote, newline). Names the
hub chose or checked (`[A-Za-z0-9_-]` segments, field names) come out exactly as written, so the queries read
as one would type them.
"""

from __future__ import annotations

from devices.kinds import DeviceKind
from devices.topics import DeviceRef

TAG_COLUMNS = frozenset({"time", "cohort", "learner", "device"})  # columns of a row that are not fields
LATEST_WITHIN = "30d"  # "last values" older than this are not looked for (InfluxDB would scan every shard)
FIELD_KEYS = "SHOW FIELD KEYS"
_REGEX_SPECIAL = frozenset("\\.^$*+?()[]{}|/")


def _escape(text: str, quote: str) -> str:
    return text.replace("\\", "\\\\").replace(quote, "\\" + quote).replace("\n", "\\n")


def ident(name: str) -> str:
    """A measurement or field name as an InfluxQL identifier."""
    return f'"{_escape(name, chr(34))}"'


def string(value: str) -> str:
    """A tag value as an InfluxQL string literal."""
    return f"'{_escape(value, chr(39))}'"


def regex_text(text: str) -> str:
    """`text` matched literally inside an InfluxQL regex `/…/`."""
    return "".join("\\" + c if c in _REGEX_SPECIAL else c for c in text).replace("\n", "\\n")


def kind_source(kind: DeviceKind, cohort: str) -> str:
    """A FROM clause for a kind's readings in one cohort: a fixed kind's measurement, or an open kind's
    per-learner measurements (`<kind>.<cohort>.<learner>`) by regex."""
    if not kind.open_fields:
        return ident(kind.name)
    return f"/^{regex_text(kind.name)}\\.{regex_text(cohort)}\\./"


def device_clause(ref: DeviceRef) -> str:
    """The condition selecting one device's series."""
    return " AND ".join(f"{tag} = {string(value)}" for tag, value in ref.tags.items())


def create_database_query(database: str) -> str:
    return f"CREATE DATABASE {ident(database)}"


def create_user_query(user: str, password: str, admin: bool = False) -> str:
    """A user (an admin has every privilege); the statement holds the password: POST it, never log it."""
    return f"CREATE USER {ident(user)} WITH PASSWORD {string(password)}" + (" WITH ALL PRIVILEGES" if admin else "")


def set_password_query(user: str, password: str) -> str:
    return f"SET PASSWORD FOR {ident(user)} = {string(password)}"


def grant_all_query(database: str, user: str) -> str:
    """Read and write on one database, nothing else."""
    return f"GRANT ALL ON {ident(database)} TO {ident(user)}"


# Retention per cohort (`[cohorts.<c>] retention`) and the end of a course ------------------------------------

ROLLUP_POLICY = "rollup_1m"  # kept forever: 1-minute means of every cohort whose raw readings expire


def policy_name(cohort: str) -> str:
    """The retention policy holding a cohort's points when the cohort has a retention."""
    return f"rp_{cohort}"


def in_policy(query: str, policy: str) -> str:
    """A query built here, reading from `policy` instead of the default one (each has exactly one FROM, before
    which only quoted field names come, and those are checked names)."""
    return query.replace(" FROM ", f" FROM {ident(policy)}.", 1)


def retention_statements(database: str, cohort: str, duration: str) -> list[str]:
    """The cohort's policy (kept `duration`), the forever rollup policy, and the continuous query that keeps
    1-minute means (`mean_<field>`, tags kept) of everything the cohort's policy holds."""
    db, rp, rollup = ident(database), ident(policy_name(cohort)), ident(ROLLUP_POLICY)
    cq = ident(f"{ROLLUP_POLICY}_{cohort}")
    return [
        f"CREATE RETENTION POLICY {rp} ON {db} DURATION {duration} REPLICATION 1",
        f"ALTER RETENTION POLICY {rp} ON {db} DURATION {duration}",  # one made earlier follows the config
        f"CREATE RETENTION POLICY {rollup} ON {db} DURATION INF REPLICATION 1",
        f"CREATE CONTINUOUS QUERY {cq} ON {db} BEGIN SELECT mean(*) INTO {db}.{rollup}.:MEASUREMENT "
        f"FROM {db}.{rp}./.*/ GROUP BY time(1m), * END",
    ]


def purge_statements(database: str, cohort: str) -> list[str]:
    """Every point of a cohort, in every measurement and policy, then its policy and continuous query."""
    db = ident(database)
    return [
        f"DROP SERIES FROM /.*/ WHERE cohort = {string(cohort)}",
        f"DROP CONTINUOUS QUERY {ident(f'{ROLLUP_POLICY}_{cohort}')} ON {db}",
        f"DROP RETENTION POLICY {ident(policy_name(cohort))} ON {db}",
    ]


def _window(ref: DeviceRef, start_ns: int, end_ns: int) -> str:
    return f"{device_clause(ref)} AND time >= {int(start_ns)} AND time < {int(end_ns)}"


# Grading evidence: one device over [start_ns, end_ns) --------------------------------------------------------


def readings_query(measurement: str, ref: DeviceRef, start_ns: int, end_ns: int) -> str:
    return f"SELECT * FROM {ident(measurement)} WHERE {_window(ref, start_ns, end_ns)}"


def rejections_query(ref: DeviceRef, start_ns: int, end_ns: int) -> str:
    return f'SELECT "message", "code" FROM "rejections" WHERE {_window(ref, start_ns, end_ns)}'


def presence_before_query(ref: DeviceRef, start_ns: int) -> str:
    """The device's last presence status before the window (it says whether the window starts online)."""
    return f'SELECT last("online") FROM "presence" WHERE {device_clause(ref)} AND time < {int(start_ns)}'


def presence_query(ref: DeviceRef, start_ns: int, end_ns: int) -> str:
    return f'SELECT "online" FROM "presence" WHERE {_window(ref, start_ns, end_ns)}'


def commands_query(ref: DeviceRef, start_ns: int, end_ns: int) -> str:
    return f'SELECT * FROM "commands" WHERE {_window(ref, start_ns, end_ns)}'


# The dashboard ---------------------------------------------------------------------------------------------


def latest_query(measurement: str, ref: DeviceRef, since_ns: int) -> str:
    """One device's last reading (at or after `since_ns`, within LATEST_WITHIN)."""
    return (
        f"SELECT * FROM {ident(measurement)} WHERE {device_clause(ref)} AND time > now() - {LATEST_WITHIN} "
        f"AND time >= {int(since_ns)} ORDER BY time DESC LIMIT 1"
    )


def history_query(measurement: str, ref: DeviceRef, field: str, since_ns: int, end_ns: int, interval_s: int) -> str:
    """One field's mean, min and max per `interval_s` over [since_ns, end_ns); an empty interval is null."""
    name = ident(field)
    return (
        f"SELECT mean({name}), min({name}), max({name}) FROM {ident(measurement)} WHERE {device_clause(ref)} "
        f"AND time >= {int(since_ns)} AND time < {int(end_ns)} GROUP BY time({int(interval_s)}s) fill(null)"
    )


def latest_by_device_query(source: str, cohort: str, learner: str | None = None) -> str:
    """Each device's last reading in `source` (a kind_source) for a cohort, or one learner of it."""
    narrow = f" AND learner = {string(learner)}" if learner is not None else ""
    return (
        f"SELECT * FROM {source} WHERE cohort = {string(cohort)}{narrow} AND time > now() - {LATEST_WITHIN} "
        "GROUP BY learner, device ORDER BY time DESC LIMIT 1"
    )


def sparkline_query(source: str, cohort: str, field: str, seconds: int, interval_s: int) -> str:
    """One field's mean per `interval_s` over the last `seconds`, for each device of a cohort in `source`."""
    return (
        f"SELECT mean({ident(field)}) FROM {source} WHERE cohort = {string(cohort)} AND time > now() - "
        f"{int(seconds)}s GROUP BY time({int(interval_s)}s), learner, device fill(none)"
    )


# Read-only users (`labhub influx reader`): Grafana and other readers of the lab's database -----------------------

SHOW_USERS = "SHOW USERS"


def grant_read_query(database: str, user: str) -> str:
    """Read (SELECT, SHOW) on one database: no writes, no DROP, no other database."""
    return f"GRANT READ ON {ident(database)} TO {ident(user)}"


def show_grants_query(user: str) -> str:
    return f"SHOW GRANTS FOR {ident(user)}"


def drop_user_query(user: str) -> str:
    return f"DROP USER {ident(user)}"
