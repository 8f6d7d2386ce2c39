"""`labhub influx reader` against a real influxd run as `labhub up` runs it (auth on, its admin and the hub's own
user): a reader may SELECT the lab's database and cannot write, drop or create; `list` and `remove` see only it."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from functools import reduce
from pathlib import Path

import pytest

from hub.cli.main import main
from hub.config import CONFIG_DIR
from hub.ops.influxd import INFLUX_HUB, start_influxd
from hub.ops.services import Service, free_port
from tests.support import influx_query


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    """influxd with auth, and a lab config pointing at it: (the config, influxd's port)."""
    state, port = tmp_path / "state", free_port()
    influxd: Service = start_influxd(state, http_port=port, rpc_port=free_port(), auth=True)
    config = tmp_path / "lab.toml"
    config.write_text(f'state_dir = "{state}"\n[influx]\nurl = "http://127.0.0.1:{port}"\nlaunch = false\n')
    try:
        yield config, port
    finally:
        influxd.stop()


def post(port: int, path: str, params: dict[str, str], body: str, auth: tuple[str, str]) -> tuple[int, str]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}", data=body.encode(), method="POST"
    )
    request.add_header("Authorization", "Basic " + base64.b64encode(":".join(auth).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def labhub(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, "--config", str(config)])
    return code, capsys.readouterr().out


def test_a_reader_can_select_and_cannot_write_or_drop(
    lab: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    config, port = lab
    hub = (INFLUX_HUB, (config.parent / "state" / "secrets" / "influx-hub").read_text().strip())
    assert post(port, "/write", {"db": "labhub"}, "air_quality,cohort=c1 pm2_5=4.5 1", hub)[0] == 204

    code, out = labhub(config, capsys, "influx", "reader", "add", "grafana")
    assert code == 0 and "password shown once" in out
    reader = ("grafana", out.strip().splitlines()[-1])

    assert influx_query(port, "labhub", "SELECT pm2_5 FROM air_quality", reader)[0]["values"] == [[1, 4.5]]
    status, text = post(port, "/write", {"db": "labhub"}, "air_quality,cohort=c1 pm2_5=9 2", reader)
    assert status == 403 and "not authorized" in text
    for statement in ("DROP MEASUREMENT air_quality", "DROP DATABASE labhub", "CREATE DATABASE other"):
        status, text = post(port, "/query", {"db": "labhub", "q": statement}, "", reader)
        assert "not authorized" in text or "requires admin privilege" in text, (statement, status, text)
    assert influx_query(port, "labhub", "SELECT count(pm2_5) FROM air_quality", hub)[0]["values"][0][1] == 1

    code, out = labhub(config, capsys, "influx", "reader", "list")
    assert code == 0 and out.split() == ["grafana", "READ", INFLUX_HUB, "ALL", "PRIVILEGES"]
    assert labhub(config, capsys, "influx", "reader", "add", "grafana")[0] == 2  # exists already
    assert labhub(config, capsys, "influx", "reader", "remove", INFLUX_HUB)[0] == 2  # the hub's own user: not a reader
    assert labhub(config, capsys, "influx", "reader", "remove", "grafana") == (0, "InfluxDB user grafana removed\n")
    status, _ = post(port, "/query", {"db": "labhub", "q": "SELECT * FROM air_quality"}, "", reader)
    assert status == 401


def test_the_grafana_dashboards_queries_run_as_the_reader(
    lab: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    """Every query of config/grafana/labhub-cohort.json, its variables filled in as Grafana does, answers the
    read-only user without an error, and the panels find the points of the cohort chosen."""
    config, port = lab
    hub = (INFLUX_HUB, (config.parent / "state" / "secrets" / "influx-hub").read_text().strip())
    now = time.time_ns()
    tags = "cohort=c1,learner=ana,device=aq1"
    lines = [f"air_quality,{tags} pm2_5=4.5,co2=420 {now}", f"presence,{tags} online=true {now}"]
    lines.append(f'rejections,{tags},code=unknown_field message="x" {now}')
    assert post(port, "/write", {"db": "labhub"}, "\n".join(lines), hub)[0] == 204
    reader = ("grafana", labhub(config, capsys, "influx", "reader", "add", "grafana")[1].strip().splitlines()[-1])
    board = json.loads((CONFIG_DIR / "grafana" / "labhub-cohort.json").read_text())
    filled = {"$cohort": "c1", "$learner": "(ana|bob)", "$device": ".*", "$measurement": "air_quality"}
    filled |= {"$timeFilter": "time > now() - 1h", "$__interval": "1m"}
    for variable in board["templating"]["list"]:
        query = reduce(lambda q, kv: q.replace(*kv), filled.items(), variable["query"])
        assert influx_query(port, "labhub", query, reader), variable["name"]
    for panel in board["panels"]:
        for target in panel["targets"]:
            query = reduce(lambda q, kv: q.replace(*kv), filled.items(), target["query"])
            assert influx_query(port, "labhub", query, reader), panel["title"]
