"""LabHub as a trainer installs it: the wheel, built from this checkout, into a clean virtualenv outside it;
`labhub init` writes the config; `labhub up` runs the demo lab and its readings are stored."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

from hub.credentials import read_secret
from hub.ops.services import free_port
from tests.conftest import make_state_dir
from tests.support import influx_count, stop_lab, wait_until

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCES = shutil.ignore_patterns(".*", "*.egg-info", "__pycache__", "build", "bench-results", "tests")


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    done = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{argv} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def installed(tmp: Path) -> Path:
    """The wheel of a copy of this checkout's sources, installed alone into a new virtualenv; its bin dir."""
    sources = tmp / "sources"
    shutil.copytree(ROOT, sources, ignore=NOT_SOURCES)
    run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(sources)], tmp)
    [wheel] = (tmp / "dist").glob("labhub-*.whl")
    run([sys.executable, "-m", "venv", str(tmp / "venv")], tmp)
    run([str(tmp / "venv" / "bin" / "python"), "-m", "pip", "install", "-q", str(wheel)], tmp)
    return tmp / "venv" / "bin"


async def test_the_wheel_installed_elsewhere_runs_the_demo_lab(tmp_path: Path) -> None:
    bin_dir = await asyncio.to_thread(installed, tmp_path)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "LABHUB_CONFIG")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    where = run(
        [str(bin_dir / "python"), "-c", "import hub, labhub_config; print(hub.__file__, labhub_config.__file__)"],
        tmp_path,
        env,
    )
    assert str(ROOT) not in where and str(tmp_path / "venv") in where  # the installed copy, not this checkout
    assert run(["labhub", "--version"], tmp_path, env).startswith("labhub ")
    config = tmp_path / "labhub.toml"
    assert "wrote" in run(["labhub", "init", "--to", str(config)], tmp_path, env)
    run(["labhub", "device", "list", "--config", str(config)], tmp_path, env)  # an installed wheel exited 2 here

    state = make_state_dir("labhub-installed-")
    influx = free_port()
    env |= {
        "LABHUB_CONFIG": str(config),
        "LABHUB_STATE_DIR": str(state),
        "LABHUB_MQTT_PORT": str(free_port()),
        "LABHUB_INFLUX_PORT": str(influx),
        "LABHUB_INFLUX_RPC_PORT": str(free_port()),
        "LABHUB_HTTP_PORT": str(free_port()),
    }
    proc = await asyncio.create_subprocess_exec(
        "labhub", "up", "--sim-count", "0", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    seen: list[str] = []
    try:
        async with asyncio.timeout(120):  # the banner: everything is up
            while "Ctrl-C stops everything" not in (line := (await proc.stdout.readline()).decode()):
                assert line, "labhub up ended early:\n" + "".join(seen)
                seen.append(line)
        output = asyncio.create_task(proc.stdout.read())  # keep the pipe flowing
        auth = ("labhub_hub", read_secret(state / "secrets" / "influx-hub") or "")

        def stored() -> int:
            return influx_count(influx, "labhub", "air_quality", "pm2_5", "cohort = 'demo'", auth)

        await wait_until(lambda: asyncio.to_thread(stored), timeout=30, what="the demo fleet's readings stored")
        proc.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            code = await proc.wait()
        rest = (await output).decode()
        assert code == 0 and "lab stopped" in rest, rest
        assert "demo/ana/arm1" in run(["labhub", "device", "list"], tmp_path, env)  # with its packaged arm profile
    finally:
        await stop_lab(proc)
        shutil.rmtree(state, ignore_errors=True)
