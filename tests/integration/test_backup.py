"""`labhub backup DIR` and `labhub restore DIR` (the issue's acceptance): a closed lab as `labhub up` runs it
(its own mosquitto and influxd with auth, in a temp state dir) gets a cohort, tokens, readings and a graded demo;
it is backed up while it runs, and again once stopped; the state dir is deleted; the backup is restored onto a
new one and the lab started there. Reading counts per device, devices, learners, tokens (one still
authenticates), broker accounts (a device's password still connects) and grades are identical."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sys
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from devices.topics import DeviceRef
from hub.cli.main import parser
from hub.cli.options import configure
from hub.config import LabConfig
from hub.ops.services import free_port
from tests.conftest import unique
from tests.support import MqttPublisher, connack, http_json, influx_count, labhub, stop_lab, wait_until

BOUND_S = 60.0  # the brief: the whole round trip in under a minute


def lab_cfg(config: Path, state: Path) -> LabConfig:
    """The config `labhub` makes from these options (the hub's InfluxDB user included)."""
    return configure(parser().parse_args(["token", "list", "--config", str(config), "--state-dir", str(state)]))


@contextlib.asynccontextmanager
async def labhub_up(config: Path, state: Path, http_port: int, logs: Path) -> AsyncIterator[str]:
    """`labhub up` on a state dir, as a trainer runs it, until its API answers; SIGTERM on the way out. Its URL.
    Its output goes to a file in `logs`, outside the state dir (which the test wipes)."""
    log = open(logs / f"{state.name}-up.log", "wb")  # closed below, after the process
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "hub.cli", "up", "--no-sim", "--config", str(config), "--state-dir", str(state)),
        *("--http-port", str(http_port)),
        stdout=log,
        stderr=log,
    )
    url = f"http://127.0.0.1:{http_port}"
    try:

        async def healthy() -> bool:
            assert proc.returncode is None, "labhub up exited"
            try:
                return (await http_json(f"{url}/healthz"))[0] == 200
            except OSError:  # not listening yet (urllib's errors are OSErrors)
                return False

        await wait_until(healthy, timeout=30, what="labhub up to answer")
        yield url
    finally:
        await stop_lab(proc)
        log.close()


def device_counts(cfg: LabConfig, refs: list[DeviceRef]) -> dict[str, int]:
    """pm2_5 values stored per device, asked as the hub's InfluxDB user (independent of the backup's own count)."""
    port = int(cfg.influx.url.rsplit(":", 1)[1])
    auth = (cfg.influx.username, cfg.influx_password() or "")
    where = "cohort = '{}' AND learner = '{}' AND device = '{}'"
    return {
        r.key: influx_count(port, cfg.influx.database, "air_quality", "pm2_5", where.format(*r.tags.values()), auth)
        for r in refs
    }


async def snapshot(config: Path, state: Path, cohort: str, reports: Path) -> dict[str, str]:
    """What must survive: the CLI's lists and the grades `labhub grade` computes."""
    opts = ("--config", str(config), "--state-dir", str(state))
    await labhub("grade", "--cohort", cohort, "--out", str(reports), *opts)
    return {
        "devices": await labhub("device", "list", *opts),
        "learners": await labhub("learner", "list", *opts),
        "tokens": await labhub("token", "list", *opts),
        "grades": json.dumps(json.loads((reports / "grades.json").read_text()), sort_keys=True),
    }


async def test_backup_wipe_restore_keeps_readings_accounts_tokens_and_grades(
    scratch: Callable[[str], Path], tmp_path: Path
) -> None:
    began = time.monotonic()
    old, new = scratch("labhub-old-"), scratch("labhub-new-")
    config = tmp_path / "labhub.toml"
    mqtt_port, http_port = free_port(), free_port()
    config.write_text(
        f'state_dir = "{old}"\n[mqtt]\nport = {mqtt_port}\ninternal_port = {free_port()}\n'
        f'[influx]\nurl = "http://127.0.0.1:{free_port()}"\nrpc_port = {free_port()}\n'
    )
    cfg = lab_cfg(config, old)
    opts = ("--config", str(config), "--state-dir", str(old))
    cohort = unique("c")
    refs = [DeviceRef(cohort, learner, "aq1") for learner in ("ana", "ben", "cleo")]
    want = {ref.key: 4 + i for i, ref in enumerate(refs)}  # 4, 5 and 6 readings: counts swapped would show
    async with labhub_up(config, old, http_port, tmp_path):
        csv = tmp_path / "cohort.csv"
        csv.write_text(
            "cohort,learner,device,kind\n" + "".join(f"{r.key.replace('/', ',')},air_quality\n" for r in refs)
        )
        made = await labhub("cohort", "import", str(csv), *opts)
        passwords = dict(line.split(",", 1) for line in made.splitlines() if line.startswith(cohort))
        token = (await labhub("token", "add", "--role", "trainer", "--scope", cohort, *opts)).splitlines()[-1]
        await labhub("demo", "start", f"{cohort}/ana", "--trainer", "Mme Martin", *opts)
        for i, ref in enumerate(refs):
            pub = MqttPublisher(mqtt_port, client_id=ref.key, auth=(ref.key, passwords[ref.key]))
            try:
                for n in range(4 + i):
                    await pub.publish(ref.topic("telemetry"), json.dumps({"pm2_5": 10.0 + n, "pm10": 20.0 + n}))
            finally:
                pub.close()
        await wait_until(lambda: device_counts(cfg, refs) == want, timeout=10, what="the readings stored")
        await labhub("demo", "stop", f"{cohort}/ana", *opts)
        before = await snapshot(config, old, cohort, tmp_path / "grades-old")
        online = await labhub("backup", str(tmp_path / "online"), *opts)  # the lab runs
    assert "counting the stored points per device (running lab)" in online and "backup written to" in online, online
    offline = await labhub("backup", str(tmp_path / "offline"), *opts)  # the lab is stopped
    assert "the lab is stopped: starting influxd" in offline, offline
    manifests = [json.loads((tmp_path / d / "MANIFEST.json").read_text()) for d in ("online", "offline")]
    assert [m["online"] for m in manifests] == [True, False]
    assert manifests[0]["points"] == manifests[1]["points"]
    assert {f"air_quality {k}": n for k, n in want.items()}.items() <= manifests[0]["points"].items()
    assert manifests[0]["registry"]["devices"] == 3 and manifests[0]["registry"]["demo_sessions"] == 1
    secrets = tmp_path / "online" / "secrets"
    assert secrets.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in secrets.iterdir()} == {0o600}
    refused = await labhub("backup", str(tmp_path / "online"), *opts, ok=False)
    assert "is not an empty folder" in refused

    shutil.rmtree(old)
    backup = tmp_path / "online"
    restored = await labhub("restore", str(backup), "--state-dir", str(new))
    print(online, offline, restored, sep="\n")
    assert "as in the backup" in restored and f"labhub up --config {backup / 'labhub.toml'}" in restored, restored
    again = await labhub("restore", str(backup), "--state-dir", str(new), ok=False)
    assert "is not empty: restore goes onto a fresh state dir only" in again

    config = backup / "labhub.toml"
    async with labhub_up(config, new, http_port, tmp_path) as url:
        assert device_counts(lab_cfg(config, new), refs) == want
        after = await snapshot(config, new, cohort, tmp_path / "grades-new")
        assert after == before
        for ref in refs:
            assert await asyncio.to_thread(connack, mqtt_port, ref.key, passwords[ref.key]) == 0
        assert await asyncio.to_thread(connack, mqtt_port, refs[0].key, passwords[refs[1].key]) != 0
        status, body = await http_json(f"{url}/api/whoami", token)
        assert status == 200 and body["role"] == "trainer", body
        assert (await http_json(f"{url}/api/whoami", token[:-2] + "xx"))[0] == 401
    assert time.monotonic() - began < BOUND_S


async def test_restore_refuses_a_backup_whose_files_changed(scratch: Callable[[str], Path], tmp_path: Path) -> None:
    folder = tmp_path / "bk"
    folder.mkdir()
    (folder / "registry.sqlite3").write_bytes(b"changed")
    (folder / "MANIFEST.json").write_text(
        json.dumps(
            {
                "format": 1,
                "labhub": "0",
                "created": "2026-01-01T00:00:00Z",
                "database": "labhub",
                "online": False,
                "files": {"registry.sqlite3": "0" * 64, "secrets/mqtt-admin": "0" * 64},
                "points": {},
            }
        )
    )
    state = scratch("labhub-fresh-")
    (folder / "labhub.toml").write_text(f'state_dir = "{state}"\n')
    out = await labhub("restore", str(folder), ok=False)
    assert "missing: secrets/mqtt-admin" in out and "changed: registry.sqlite3" in out, out
    assert not any(state.iterdir())  # nothing written
