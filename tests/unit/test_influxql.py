"""Every InfluxQL statement the hub sends, as exact text; names escaped whatever they hold."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from devices.kinds import KINDS, DeviceKind
from devices.topics import DeviceRef
from hub.adapters import influxql as q

REF = DeviceRef("c1", "ana", "aq1")
DEV = "cohort = 'c1' AND learner = 'ana' AND device = 'aq1'"
WIN = f"{DEV} AND time >= 100 AND time < 200"
AIR, GENERIC = KINDS["air_quality"], KINDS["generic"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (lambda: q.readings_query("air_quality", REF, 100, 200), f'SELECT * FROM "air_quality" WHERE {WIN}'),
        (lambda: q.readings_query("generic.c1.ana", REF, 100, 200), f'SELECT * FROM "generic.c1.ana" WHERE {WIN}'),
        (lambda: q.rejections_query(REF, 100, 200), f'SELECT "message", "code" FROM "rejections" WHERE {WIN}'),
        (
            lambda: q.presence_before_query(REF, 100),
            f'SELECT last("online") FROM "presence" WHERE {DEV} AND time < 100',
        ),
        (lambda: q.presence_query(REF, 100, 200), f'SELECT "online" FROM "presence" WHERE {WIN}'),
        (lambda: q.commands_query(REF, 100, 200), f'SELECT * FROM "commands" WHERE {WIN}'),
        (
            lambda: q.latest_query("air_quality", REF, 5),
            f'SELECT * FROM "air_quality" WHERE {DEV} AND time > now() - 30d AND time >= 5 ORDER BY time DESC LIMIT 1',
        ),
        (
            lambda: q.history_query("air_quality", REF, "pm2_5", 100, 200, 12),
            f'SELECT mean("pm2_5"), min("pm2_5"), max("pm2_5") FROM "air_quality" WHERE {DEV} '
            "AND time >= 100 AND time < 200 GROUP BY time(12s) fill(null)",
        ),
        (
            lambda: q.latest_by_device_query('"air_quality"', "c1"),
            "SELECT * FROM \"air_quality\" WHERE cohort = 'c1' AND time > now() - 30d "
            "GROUP BY learner, device ORDER BY time DESC LIMIT 1",
        ),
        (
            lambda: q.latest_by_device_query("/^generic\\.c1\\./", "c1", "ana"),
            "SELECT * FROM /^generic\\.c1\\./ WHERE cohort = 'c1' AND learner = 'ana' AND time > now() - 30d "
            "GROUP BY learner, device ORDER BY time DESC LIMIT 1",
        ),
        (
            lambda: q.sparkline_query('"air_quality"', "c1", "pm2_5", 300, 5),
            'SELECT mean("pm2_5") FROM "air_quality" WHERE cohort = \'c1\' AND time > now() - 300s '
            "GROUP BY time(5s), learner, device fill(none)",
        ),
        (lambda: q.create_database_query("labhub"), 'CREATE DATABASE "labhub"'),
        (lambda: q.FIELD_KEYS, "SHOW FIELD KEYS"),
        (lambda: q.create_user_query("hub", "pw"), "CREATE USER \"hub\" WITH PASSWORD 'pw'"),
        (
            lambda: q.create_user_query("root", "p'w", admin=True),
            "CREATE USER \"root\" WITH PASSWORD 'p\\'w' WITH ALL PRIVILEGES",
        ),
        (lambda: q.set_password_query("hub", "pw"), "SET PASSWORD FOR \"hub\" = 'pw'"),
        (lambda: q.grant_all_query("labhub", "hub"), 'GRANT ALL ON "labhub" TO "hub"'),
    ],
)
def test_queries_are_exactly_these(query: Callable[[], str], expected: str) -> None:
    assert query() == expected  # built in the test, not at import: mutation testing must see the call


@pytest.mark.parametrize(
    ("kind", "cohort", "expected"),
    [
        (AIR, "c1", '"air_quality"'),
        (GENERIC, "c1", "/^generic\\.c1\\./"),
        (GENERIC, "my-cohort_2", "/^generic\\.my-cohort_2\\./"),
        (GENERIC, "a.b/c", "/^generic\\.a\\.b\\/c\\./"),  # never reaches here (checked names), escaped anyway
    ],
)
def test_a_kind_reads_from_its_measurement_or_its_learners_by_regex(
    kind: DeviceKind, cohort: str, expected: str
) -> None:
    assert q.kind_source(kind, cohort) == expected


@pytest.mark.parametrize(
    ("name", "ident", "string"),
    [
        ("pm2_5", '"pm2_5"', "'pm2_5'"),
        ('a"b', '"a\\"b"', "'a\"b'"),
        ("a'b", '"a\'b"', "'a\\'b'"),
        ("a\\b", '"a\\\\b"', "'a\\\\b'"),
        ("a\nb", '"a\\nb"', "'a\\nb'"),
        ("\\'", '"\\\\\'"', "'\\\\\\''"),  # a backslash before the quote cannot unescape it
    ],
)
def test_identifiers_and_strings_are_escaped(name: str, ident: str, string: str) -> None:
    assert (q.ident(name), q.string(name)) == (ident, string)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("generic", "generic"),
        ("a-b_c9", "a-b_c9"),
        ("a.b", "a\\.b"),
        ("x/y", "x\\/y"),
        ("^$*+?()[]{}|\\", "\\^\\$\\*\\+\\?\\(\\)\\[\\]\\{\\}\\|\\\\"),
        ("a\nb", "a\\nb"),  # a newline would end the statement
    ],
)
def test_regex_text_matches_literally(text: str, expected: str) -> None:
    assert q.regex_text(text) == expected


def test_hostile_names_stay_inside_their_quotes() -> None:
    ref = DeviceRef("c' OR 1=1 --", "ana", 'x"y')
    assert q.device_clause(ref) == "cohort = 'c\\' OR 1=1 --' AND learner = 'ana' AND device = 'x\"y'"
    assert q.history_query('m"; DROP', ref, 'f")', 0, 1, 1).startswith(
        'SELECT mean("f\\")"), min("f\\")"), max("f\\")") FROM "m\\"; DROP" WHERE '
    )
