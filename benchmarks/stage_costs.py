"""Where the hub's time goes per reading: py-spy samples of the hub under a steady open-loop load, each sample
put in the stage of its innermost recognised frame, scaled to the hub's CPU time in the same window.

    .venv/bin/python benchmarks/stage_costs.py                    # 20,000 readings/s from 500 devices, 10 s
    .venv/bin/python benchmarks/stage_costs.py --rate 30000 --seconds 15

It starts the lab as bench_open.py does (closed, 500 declared devices), offers the rate with the C publisher,
attaches `py-spy record` (`.venv/bin/pip install py-spy` first) to the hub for the middle of the run, and
prints µs of hub CPU per stored reading for each stage:

- receive: the MQTT adapter and paho (socket reads, frames → messages);
- decode: payload → values (`devices/decode.py`); validate: values → a checked reading (`devices/validate.py`);
- encode: the line protocol (`hub/ingest/lineproto.py`);
- spool: group commit, fsync thread hand-off, acknowledgements (`hub/ingest/spool*.py`, `durability.py`);
- write: the InfluxDB writer and its HTTP client (`hub/ingest/writer.py`, `hub/adapters/influx.py`, aiohttp);
- route: the rest of the hot path (device table, inspector, counters: `hub/ingest/pipeline.py`, `runtime.py`);
- doctor: the lab doctor (`hub/doctor/`): each reading's traffic check and the broker's event log it follows;
- event loop and other: asyncio itself, timers, the HTTP API, background tasks.

Samples are taken at 250 Hz; those of a thread only waiting (the fsync thread between commits or in
fdatasync, the loop in epoll) are left out, and the shares are scaled to the CPU time the kernel counted for the hub, so the column
adds up to the hub's µs per reading. Profiling costs the hub a little.
"""

from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bench_ingest import hub_stats
from benchmarks.openload import Lab, Publisher
from benchmarks.spawned import clean_up

# (stage, path fragments): a sample belongs to the stage of the innermost frame whose file matches.
STAGES = (
    ("doctor", ("hub/doctor/",)),
    ("decode", ("devices/decode.py", "orjson")),
    ("validate", ("devices/validate.py",)),
    ("encode", ("hub/ingest/lineproto.py",)),
    ("spool", ("hub/ingest/spool", "hub/ingest/durability.py", "concurrent/futures/thread.py", "asyncio/threads.py")),
    ("write", ("hub/ingest/writer.py", "hub/adapters/influx.py", "aiohttp/", "multidict", "yarl/")),
    ("receive", ("hub/adapters/paho_fastpath.py", "hub/adapters/mqtt.py", "paho/mqtt/")),
    ("route", ("hub/ingest/pipeline.py", "hub/ingest/device_table.py", "hub/runtime.py", "hub/pace.py", "devices/")),
)
ORDER = [name for name, _ in STAGES] + ["event loop and other"]
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:]*):\d+\)$")


# Waiting, not working, as (file, function) of the innermost frame: a pool thread waiting for work, a thread on a
# lock, the fsync thread in fdatasync (the kernel writes), the loop in epoll. py-spy 0.4 names methods with their
# class ("EpollSelector.select"), so only the function's own name is compared.
IDLE = (
    ("concurrent/futures/thread.py", "_worker"),
    ("threading.py", "wait"),
    ("selectors.py", "select"),
    ("hub/ingest/spool_files.py", "sync"),
)


def waits(frame: str) -> bool:
    match = FRAME.match(frame)
    if match is None:
        return False
    func = match.group("func").rsplit(".", 1)[-1]
    return any(func == name and match.group("file").endswith(file) for file, name in IDLE)


def stage_of(stack: str) -> str | None:
    """The stage of one collapsed py-spy stack (outermost first, `;`-separated); None when it only waits
    (py-spy takes a thread blocked on a lock or in epoll for a running one)."""
    frames = stack.split(";")
    if waits(frames[-1]):
        return None
    for frame in reversed(frames):
        match = FRAME.match(frame)
        where = match.group("file") if match else frame
        for name, fragments in STAGES:
            if any(fragment in where for fragment in fragments):
                return name
    return "event loop and other"


def shares(raw: str) -> dict[str, int]:
    """Samples per stage from py-spy's raw (collapsed) output."""
    counts: collections.Counter[str] = collections.Counter()
    for line in raw.splitlines():
        stack, _, n = line.rpartition(" ")
        stage = stage_of(stack) if stack and n.isdigit() else None
        if stage is not None:
            counts[stage] += int(n)
    return dict(counts)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=20_000)
    ap.add_argument("--seconds", type=float, default=10.0, help="of profiling (the load runs 4 s longer)")
    ap.add_argument("--devices", type=int, default=500)
    args = ap.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy).exists():
        raise SystemExit("py-spy not found: .venv/bin/pip install py-spy")
    lab = Lab(args.devices, open_mode=False, workers=1)
    out = Path(tempfile.mkdtemp(prefix="labhub-stages-")) / "hub.txt"
    pub = None
    finished = False
    try:
        lab.start_services()
        lab.start_hub()
        hub = psutil.Process(lab.hubs[0].pid)
        pub = Publisher(lab.device_lines(), args.rate, args.seconds + 4)
        pub.start()
        pub.started.wait(30)
        time.sleep(2)  # past the start
        stored0, cpu0 = int(hub_stats(lab.http_ports[0])["stored"]), hub.cpu_times()
        record = ["record", "--pid", str(hub.pid), "--duration", str(int(args.seconds)), "--rate", "250"]
        subprocess.run(
            [spy, *record, "--format", "raw", "--nonblocking", "-o", str(out)], check=True, capture_output=True
        )
        stored1, cpu1 = int(hub_stats(lab.http_ports[0])["stored"]), hub.cpu_times()
        pub.wait()
        raw = out.read_text()
        finished = True
    finally:
        if pub is not None:
            pub.stop()
        lab.stop()
        shutil.rmtree(out.parent, ignore_errors=True)
        clean_up(lab.state, finished)
    readings = stored1 - stored0
    cpu_s = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    counts = shares(raw)
    total = sum(counts.values()) or 1
    per_reading_us = cpu_s / readings * 1e6
    print(f"\n{readings:,} readings stored in the profiled window at {args.rate:,.0f}/s offered;")
    print(f"hub CPU {cpu_s:.2f} s = {per_reading_us:.1f} µs per reading ({total:,} samples)\n")
    print("| stage | µs per reading | share |\n|---|---:|---:|")
    for name in ORDER:
        share = counts.get(name, 0) / total
        print(f"| {name} | {share * per_reading_us:.1f} | {share:.0%} |")
    print(f"| **all** | **{per_reading_us:.1f}** | 100% |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
