"""A kit's settings work as they are, against the real broker, hub and InfluxDB: the generated MicroPython main.py,
run on CPython over stand-ins for umqtt.simple/network/ntptime (tests/kit_shims/micropython, real MQTT on a
socket), stores readings, says online, prints what the hub sends on errors and leaves its will; the Uno sketch,
compiled by g++ with a stand-in Serial, prints lines that a serial bridge behind a pty stores."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from devices.topics import DeviceRef
from firmware_sim.serial import PtyPort
from hub.kits.settings import Broker, KitSource
from hub.kits.writer import UNO_SKETCH, device_files, write_kit
from tests.conftest import unique
from tests.integration.conftest import HubFactory, Services
from tests.integration.test_serial import bridged
from tests.support import MqttListener, MqttPublisher, count_when_stable, influx_count, influx_query, wait_until
from tests.unit.test_kit_firmware import compile_sketch, run

RUNNER = Path(__file__).resolve().parents[1] / "kit_shims" / "micropython" / "run_main.py"
SPEEDUP = "5"  # the board's clock runs 5x: a 5 s period passes in 1 s (its `ts`, in real seconds, stay distinct)


async def read_until(stream: asyncio.StreamReader, text: str, seen: list[str], timeout: float = 10) -> None:
    """Lines of the board's console until one holds `text` (all kept in `seen`, for the failure message)."""
    deadline = time.monotonic() + timeout
    while not any(text in line for line in seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"the board never printed {text!r}: {seen}")
        line = await asyncio.wait_for(stream.readline(), left)
        if not line:
            raise AssertionError(f"the board stopped before printing {text!r}: {seen}")
        seen.append(line.decode(errors="replace"))


async def test_the_micropython_kit_runs_as_generated_and_its_readings_are_stored(
    services: Services, start_hub: HubFactory, tmp_path: Path
) -> None:
    hub = await start_hub()
    cohort = unique("k")
    ref = DeviceRef(cohort, "ana", "aq1")
    made = await hub.accounts.add_device(ref.key, "air_quality")
    hub.apply_registry()
    source = KitSource(Broker("127.0.0.1", services.mqtt_port), tmp_path / "no-credentials.toml", {})
    settings = source.settings(ref, "air_quality", True, {ref.key: made.password})  # as `labhub kit --passwords`
    write_kit(tmp_path / "kit", device_files(settings))
    status = await MqttListener(services.mqtt_port, ref.topic("status")).ready()
    board = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RUNNER),
        str(tmp_path / "kit" / "micropython"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "KIT_SPEEDUP": SPEEDUP},
    )
    console: list[str] = []
    try:
        assert board.stdout is not None
        await read_until(board.stdout, "MQTT connected", console)
        assert (await status.next(timeout=5))[1] == b"online"
        db, where = hub.cfg.influx.database, f"cohort = '{cohort}'"

        async def stored() -> bool:
            return await asyncio.to_thread(influx_count, services.influx_port, db, "air_quality", "pm2_5", where) >= 3

        await wait_until(stored, timeout=20, what="3 readings of the MicroPython kit stored")
        rows = influx_query(services.influx_port, db, f"SELECT pm2_5, humidity FROM air_quality WHERE {where}")
        for _, pm2_5, humidity in rows[0]["values"]:
            assert 12.4 <= pm2_5 < 13.4 and 40 <= humidity < 41  # the kit's demo values
        assert hub.ingest.devices[ref].online
        hub_says = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
        try:
            await hub_says.publish(ref.topic("errors"), b'{"code": "from-the-test"}')
        finally:
            hub_says.close()
        await read_until(board.stdout, 'hub says: {"code": "from-the-test"}', console)
    finally:
        with contextlib.suppress(ProcessLookupError):
            board.kill()  # the board loses power: no DISCONNECT, so the broker sends its will
        await board.wait()
    try:
        assert (await status.next(timeout=10))[1] == b"offline"
    finally:
        status.close()


async def test_the_uno_kits_printed_lines_are_stored_through_the_serial_bridge(
    services: Services, start_hub: HubFactory, tmp_path: Path, running: Callable[..., asyncio.Task[Any]]
) -> None:
    hub = await start_hub()
    cohort = unique("k")
    ref = DeviceRef(cohort, "ana", "uno")
    source = KitSource(Broker("127.0.0.1", services.mqtt_port), tmp_path / "no-credentials.toml", {})
    settings = source.settings(ref, "air_quality", True)
    write_kit(tmp_path / "kit", device_files(settings))
    binary = await asyncio.to_thread(compile_sketch, tmp_path / "kit", UNO_SKETCH, tmp_path / "uno")
    printed, _ = await asyncio.to_thread(run, binary, 160)  # 16 s of the board's time: 4 lines
    lines = printed.encode().splitlines(keepends=True)
    assert len(lines) == 4
    port = PtyPort(tmp_path / "ttyACM0")
    port.plug()
    errors = await MqttListener(services.mqtt_port, ref.topic("errors")).ready()
    try:
        bridge = await bridged(hub, services, ref.key, "air_quality", port.path, "lines")
        running(bridge.run())
        await bridge.port_open.wait()
        for line in lines:
            assert port.write(line) == len(line)
        db, where = hub.cfg.influx.database, f"cohort = '{cohort}'"
        assert await count_when_stable(services.influx_port, db, "air_quality", "pm2_5", where, 4) == 4
        rows = influx_query(services.influx_port, db, f"SELECT pm2_5, pm10, temperature FROM air_quality WHERE {where}")
        printed_values = [
            [float(pair.split("=")[1]) for pair in line.decode().strip().split(",")][:3] for line in lines
        ]
        assert [row[1:] for row in rows[0]["values"]] == printed_values
        assert errors.pending() == 0  # nothing the bridge or the hub found wrong
    finally:
        errors.close()
        port.unplug()
