"""Both backends offer the same start-up steps and reads, so callers need no isinstance; 2.x's start-up steps
creates nothing."""

from __future__ import annotations

import asyncio

from hub.adapters.influx import InfluxV1, InfluxV2, make_backend
from hub.adapters.influx_read import InfluxQLReader
from hub.config import InfluxConfig


def test_both_backends_read_in_influxql() -> None:
    v1 = make_backend(InfluxConfig(backend="v1"))
    v2 = make_backend(InfluxConfig(backend="v2", url="http://127.0.0.1:1"))
    assert isinstance(v1, InfluxV1) and isinstance(v1, InfluxQLReader)
    assert isinstance(v2, InfluxV2) and isinstance(v2, InfluxQLReader)
    v1.check_readable()
    v2.check_readable()


def test_v2_creates_no_database() -> None:
    """The bucket is the operator's: nothing to create at start, no I/O (never started here: any would fail)."""
    v2 = InfluxV2(InfluxConfig(backend="v2", url="http://127.0.0.1:1"))
    assert asyncio.run(v2.ensure_database()) is False
