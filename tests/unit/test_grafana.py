"""config/grafana: the datasource provisioning file Grafana reads (valid YAML, the read-only user the README makes,
its password from the environment, the lab's database) and the cohort dashboard (JSON whose variables are the
cohort/learner/device tags, and whose every query is narrowed by all three)."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from hub.config import CONFIG_DIR, InfluxConfig

GRAFANA = CONFIG_DIR / "grafana"
TAGS = ("cohort", "learner", "device")
READER = "grafana"  # the name the README's `labhub influx reader add` makes


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((GRAFANA / "labhub-cohort.json").read_text())
    return data


def test_the_datasource_reads_the_labs_database_as_the_read_only_user() -> None:
    provisioning = yaml.safe_load((GRAFANA / "datasource.yaml").read_text())
    assert provisioning["apiVersion"] == 1
    [source] = provisioning["datasources"]
    assert (source["type"], source["user"], source["jsonData"]["dbName"]) == (
        "influxdb",
        READER,
        InfluxConfig().database,
    )
    assert source["secureJsonData"]["password"] == "${LABHUB_INFLUX_READER_PASSWORD}"  # never a password in the file
    assert source["uid"] == dashboard()["panels"][0]["datasource"]["uid"]


def test_the_dashboard_uses_the_three_tags_as_variables_and_in_every_query() -> None:
    board = dashboard()
    variables = {v["name"]: v["query"] for v in board["templating"]["list"]}
    for tag in TAGS:
        assert re.match(rf'SHOW TAG VALUES WITH KEY = "{tag}"', variables[tag])
    assert "/^$cohort$/" in variables["learner"] and "/^$learner$/" in variables["device"]
    queries = [t["query"] for p in board["panels"] for t in p["targets"]]
    assert queries
    for query in queries:
        assert all(f'"{tag}" =~ /^${tag}$/' in query for tag in TAGS), query
        assert "$timeFilter" in query
