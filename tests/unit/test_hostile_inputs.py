"""Regression tests for what one device sent that once broke the whole lab (issue 11), the ones that need no
service: a corrupt spool record, the worst known invalid JSON, invented devices filling the device table, the
spool's file modes. The others drive the real lab (tests/integration/test_hostile_inputs.py)."""

from __future__ import annotations

import asyncio
import os
import time
import zlib
from pathlib import Path

import pytest

from devices.decode import decode_payload
from devices.problems import PayloadRejected
from devices.topics import DeviceRef
from hub.adapters.mqtt import Message
from hub.config import DeviceConfig
from hub.ingest import device_table
from hub.ingest.pipeline import Ingest
from hub.ingest.spool import Spool
from hub.ingest.spool_format import HEADER

# 3. One device stalled everyone's event loop --------------------------------------------------------------


def test_diagnosing_invalid_json_is_fast_on_the_worst_known_input() -> None:
    payload = ('"' + '\\"' * 8000).encode()  # 16 KB of escaped quotes: quadratic for a regex search
    started = time.perf_counter()
    with pytest.raises(PayloadRejected):
        decode_payload(payload, None, 16384)
    assert time.perf_counter() - started < 0.05  # was ~0.5 s


# 10. Device-controlled memory ---------------------------------------------------------------------------


def test_invented_devices_cannot_fill_the_device_table_for_good(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device_table, "MAX_DEVICES", 100)
    declared = DeviceRef("c", "trainer", "aq1")
    clock = iter(range(1, 10**9))
    ingest = Ingest(
        [DeviceConfig(declared, "air_quality")],
        enqueue=lambda *args: None,
        publish=lambda topic, payload: None,
        language=lambda cohort: "en",
        open_mode=True,
        max_payload_bytes=16384,
        errors_per_second=5.0,
        clock=lambda: next(clock) * 10**9,
    )
    for i in range(1000):
        ingest.handle(Message(f"lab/c/l{i}/dev/telemetry", b'{"n": 1}', 0, False))
        assert len(ingest.devices) <= 100
    assert declared in ingest.devices  # declared devices are never forgotten
    assert DeviceRef("c", "l999", "dev") in ingest.devices  # a new device is still welcome
    assert ingest.totals.devices_evicted >= 900


# 12. Smaller ones -----------------------------------------------------------------------------------------


def test_a_corrupt_record_in_the_last_segment_does_not_drop_the_records_after_it(tmp_path: Path) -> None:
    async def scenario() -> list[str]:
        spool: Spool[None] = Spool(tmp_path, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
        spool.open()
        for i in range(10):
            spool.append(time.time_ns(), 0, "c/l/d", f"m n={i} {i}", None)
            await spool.commit()
        spool.close()
        segment = next(tmp_path.glob("*.log"))
        data = bytearray(segment.read_bytes())
        size = len(data) // 10
        data[3 * size + HEADER.size + 2] ^= 0xFF  # one flipped bit-pattern in the 4th record's body
        segment.write_bytes(bytes(data))
        again: Spool[None] = Spool(tmp_path, 1 << 30, on_full=lambda: None, on_drained=lambda: None)
        again.open()
        batch = await again.take(100)
        assert again.corrupt_bytes == size
        again.close()
        return batch.lines

    lines = asyncio.run(scenario())
    assert lines == [f"m n={i} {i}" for i in range(10) if i != 3]


def test_spool_files_are_private(tmp_path: Path) -> None:
    async def scenario() -> None:
        spool: Spool[None] = Spool(tmp_path / "spool", 1 << 30, on_full=lambda: None, on_drained=lambda: None)
        spool.open()
        spool.append(time.time_ns(), zlib.crc32(b"x"), "c/l/d", "m n=1 1", None)
        await spool.commit()
        spool.close()

    asyncio.run(scenario())
    assert (os.stat(tmp_path / "spool").st_mode & 0o777) == 0o700
    for path in (tmp_path / "spool").iterdir():
        assert (path.stat().st_mode & 0o777) == 0o600, path.name


def test_the_adversarial_check_takes_the_doctors_findings_and_only_its_vocabulary() -> None:
    from tests.hostile import allowed_series, foreign_points

    ref = DeviceRef("c", "ana", "aq1")
    allowed = allowed_series([(ref, "air_quality")])
    ok = "diagnoses,code=too_fast,cohort=c,device=aq1,learner=ana,severity=warning"
    assert foreign_points([ok], {}, allowed) == []
    for bad in (
        "diagnoses,code=pwned,cohort=c,device=aq1,learner=ana,severity=warning",
        "diagnoses,code=too_fast,cohort=c,device=aq1,learner=ana,severity=fatal",
        "diagnoses,code=too_fast,cohort=c,device=aq1,learner=ana,severity=warning,x=y",
        "diagnoses,code=too_fast,cohort=c,device=aq2,learner=ana,severity=warning",
    ):
        assert foreign_points([bad], {}, allowed), bad
