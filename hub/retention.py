"""Retention per cohort, as the config says it: `[cohorts.<c>] retention = "90d"`. Pure.

A cohort with a retention keeps its raw points in its own InfluxDB 1.x retention policy for that long, and
1-minute means of them for ever (the statements: `hub.adapters.influxql.retention_statements`). Kept apart from
`hub.config` only for size; `hub.config` calls `cohort_retention` while it parses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from devices.topics import TopicError, check_segment

DURATION = re.compile(r"0*[1-9][0-9]{0,5}[hdw]")  # InfluxDB's units of a policy's duration; at least 1h, its minimum


def cohort_retention(data: Mapping[str, Any], where: str, error: type[ValueError]) -> dict[str, str]:
    """cohort → duration for each `[cohorts.<c>]` that sets `retention`; `error` (the config's) names what is wrong."""
    cohorts = data.get("cohorts", {})
    found: dict[str, str] = {}
    for cohort, table in cohorts.items() if isinstance(cohorts, dict) else ():
        if not isinstance(table, dict) or "retention" not in table:
            continue
        value = table["retention"]
        if not isinstance(value, str) or not DURATION.fullmatch(value):
            raise error(f'{where}: cohorts.{cohort}.retention: expected a duration such as "90d", "12w" or "48h"')
        try:
            check_segment(cohort)
        except TopicError as err:
            raise error(f"{where}: cohorts.{cohort}: {err}") from None
        found[cohort] = value
    influx = data.get("influx", {})
    if found and isinstance(influx, dict) and influx.get("backend") == "v2":
        raise error(f"{where}: cohorts: retention needs the InfluxDB 1.x backend (a 2.x/3.x bucket has its own)")
    return found
