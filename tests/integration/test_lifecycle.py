"""The end of a course against the real services, run as `labhub up` runs them (a closed broker with dynamic
security, influxd with auth): `labhub cohort archive` then `labhub cohort purge` of one cohort, another untouched."""

from __future__ import annotations

import base64
import hashlib
import json
import time
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hub.access.records import token_digest
from hub.access.registry import Registry
from hub.adapters.influxql import ROLLUP_POLICY, policy_name
from hub.cli.main import main
from hub.credentials import read_secret
from hub.ops.influxd import INFLUX_ADMIN, INFLUX_HUB, start_influxd
from hub.ops.mosquitto import start_mosquitto
from hub.ops.services import free_port
from tests.support import MqttV5

POLICIES = ("autogen", policy_name("A"), ROLLUP_POLICY)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Path, int, int]]:
    """(the lab's config, broker port, influxd port); cohort A keeps its raw points in its own policy."""
    state, mqtt_port, influx_port = tmp_path / "state", free_port(), free_port()
    broker = start_mosquitto(state, port=mqtt_port, open_mode=False)
    try:
        influxd = start_influxd(state, http_port=influx_port, rpc_port=free_port(), auth=True, retention={"A": "2d"})
    except BaseException:
        broker.stop()
        raise
    config = tmp_path / "lab.toml"
    config.write_text(
        f'state_dir = "{state}"\n[mqtt]\nport = {mqtt_port}\nlaunch = false\n'
        f'[influx]\nurl = "http://127.0.0.1:{influx_port}"\nlaunch = false\nusername = "{INFLUX_HUB}"\n'
        '[cohorts.A]\nretention = "2d"\n'
    )
    try:
        yield config, mqtt_port, influx_port
    finally:
        influxd.stop()
        broker.stop()


def labhub(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    capsys.readouterr()
    code = main([*args, "--config", str(config)])
    return code, capsys.readouterr().out


def influx(port: int, path: str, params: dict[str, str], body: str, state: Path) -> dict[str, object]:
    auth = f"{INFLUX_ADMIN}:{read_secret(state / 'secrets' / 'influx-admin')}"
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}?{urllib.parse.urlencode(params)}", data=body.encode(), method="POST"
    )
    request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    with urllib.request.urlopen(request, timeout=10) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else {}


def points(port: int, state: Path, cohort: str) -> dict[str, int]:
    """count(*) of the cohort's points, by policy (each point counted by its largest field count)."""
    found = {}
    for policy in POLICIES:
        q = f"SELECT count(*) FROM \"{policy}\"./.*/ WHERE cohort = '{cohort}'"
        answer = influx(port, "/query", {"db": "labhub", "q": q}, "", state)
        series = answer["results"][0].get("series", [])  # type: ignore[index]
        found[policy] = sum(max(v for v in s["values"][0][1:] if v is not None) for s in series)
    return found


def test_archive_then_purge_removes_one_cohort_and_leaves_the_other(
    lab: tuple[Path, int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config, mqtt_port, influx_port = lab
    state = config.parent / "state"
    passwords: dict[str, str] = {}
    tokens: dict[str, str] = {}
    for cohort in ("A", "B"):
        for learner in ("ann", "bob"):
            key = f"{cohort}/{learner}"
            code, out = labhub(config, capsys, "learner", "add", key)
            assert code == 0, out
            passwords[key] = out.split("password: ")[1].strip()
            code, out = labhub(config, capsys, "device", "add", f"{key}/d1")
            assert code == 0, out
            passwords[f"{key}/d1"] = out.split("password: ")[1].strip()
            code, out = labhub(config, capsys, "token", "add", "--role", "learner", "--scope", key)
            tokens[key] = out.strip().splitlines()[-1]
        code, out = labhub(config, capsys, "token", "add", "--role", "trainer", "--scope", cohort)
        tokens[cohort] = out.strip().splitlines()[-1]
        assert labhub(config, capsys, "demo", "start", f"{cohort}/ann")[0] == 0
        now = time.time_ns()
        lines = "\n".join(
            f"generic.{cohort}.{learner},cohort={cohort},device=d1,learner={learner} x={i}.5 {now + i * 1_000_000}"
            for learner in ("ann", "bob")
            for i in range(5)
        )
        policy = {"rp": policy_name("A")} if cohort == "A" else {}
        influx(influx_port, "/write", {"db": "labhub", **policy}, lines, state)
        # Evidence in the default policy, a rollup as the continuous query writes it: the purge finds both.
        evidence = f'rejections,cohort={cohort},device=d1,learner=ann code="bad_json" {now}'
        influx(influx_port, "/write", {"db": "labhub"}, evidence, state)
        rollup = f"generic.{cohort}.ann,cohort={cohort},device=d1,learner=ann mean_x=2.5 {now}"
        influx(influx_port, "/write", {"db": "labhub", "rp": ROLLUP_POLICY}, rollup, state)
        assert labhub(config, capsys, "demo", "stop", f"{cohort}/ann")[0] == 0
    before_b = points(influx_port, state, "B")
    assert points(influx_port, state, "A") == {"autogen": 1, policy_name("A"): 10, ROLLUP_POLICY: 1}
    assert before_b == {"autogen": 11, policy_name("A"): 0, ROLLUP_POLICY: 1}

    # No archive yet: the purge refuses and removes nothing.
    assert labhub(config, capsys, "cohort", "purge", "A", "--yes")[0] == 2
    assert MqttV5(mqtt_port, "A/ann/d1", passwords["A/ann/d1"]).wait_connect()

    archive = tmp_path / "archive-A"
    code, out = labhub(config, capsys, "cohort", "archive", "A", str(archive))
    assert code == 0, out
    assert labhub(config, capsys, "cohort", "archive", "A", str(archive))[0] == 2  # not an empty folder
    packs = sorted(p.name for p in (archive / "packs").iterdir())
    assert packs == ["pack-A-ann.zip", "pack-A-bob.zip"]
    for learner in ("ann", "bob"):
        with zipfile.ZipFile(archive / "packs" / f"pack-A-{learner}.zip") as zf:
            csv = zf.read(f"pack-A-{learner}/readings/d1.csv").decode().splitlines()
            assert len(csv) == 1 + 5  # the header, then every reading of the learner's device
            grades = [n for n in zf.namelist() if "/grades/" in n]
            assert bool(grades) == (learner == "ann")  # ann had a demo
    rows = json.loads((archive / "registry.json").read_text())
    assert sorted(r["learner"] for r in rows["learners"]) == ["ann", "bob"]
    assert sorted(d["id"] for d in rows["devices"]) == ["A/ann/d1", "A/bob/d1"]
    assert len(rows["demo_sessions"]) == 1 and len(rows["tokens"]) == 3
    assert all(secret not in (archive / "registry.json").read_text() for secret in tokens.values())
    assert "digest" not in (archive / "registry.json").read_text()
    assert json.loads((archive / "grades" / "grades.json").read_text())["learners"][0]["learner"] == "A/ann"
    for line in (archive / "MANIFEST.sha256").read_text().splitlines():
        digest, name = line.split("  ", 1)
        assert hashlib.sha256((archive / name).read_bytes()).hexdigest() == digest

    # A tampered archive is no archive: refused again.
    registry_json = (archive / "registry.json").read_bytes()
    (archive / "registry.json").write_bytes(registry_json + b" ")
    assert labhub(config, capsys, "cohort", "purge", "A", "--yes")[0] == 2
    (archive / "registry.json").write_bytes(registry_json)
    assert labhub(config, capsys, "cohort", "purge", "A")[0] == 1  # without --yes: says what would go, does nothing

    code, out = labhub(config, capsys, "cohort", "purge", "A", "--yes")
    assert code == 0, out
    assert "12 points" in out and "6 accounts" in out, out  # 2 devices, 2 bridges, 2 learners (+0 readers)

    assert points(influx_port, state, "A") == dict.fromkeys(POLICIES, 0)
    assert points(influx_port, state, "B") == before_b
    answer = influx(influx_port, "/query", {"db": "labhub", "q": "SHOW RETENTION POLICIES"}, "", state)
    policies = [row[0] for row in answer["results"][0]["series"][0]["values"]]  # type: ignore[index]
    assert policy_name("A") not in policies
    for user in ("A/ann", "A/ann/d1", "A/bob", "A/bob/d1"):
        assert not MqttV5(mqtt_port, user, passwords[user]).wait_connect(), user  # CONNACK: not authorized
    for user in ("B/ann", "B/ann/d1", "B/bob", "B/bob/d1"):
        assert MqttV5(mqtt_port, user, passwords[user]).wait_connect(), user
    registry = Registry(state / "registry.sqlite3")
    try:
        assert [
            token_digest(tokens[k]) for k in ("A", "A/ann", "A/bob") if registry.token_for(token_digest(tokens[k]))
        ] == []
        assert all(registry.token_for(token_digest(tokens[k])) for k in ("B", "B/ann", "B/bob"))
        assert "A" not in registry.cohorts() and registry.learners("A") == [] and registry.devices("A") == []
        assert registry.sessions("A") == [] and registry.cohort_tokens("A") == []
        assert len(registry.learners("B")) == 2 and len(registry.devices("B")) == 2 and len(registry.sessions("B")) == 1
    finally:
        registry.close()
