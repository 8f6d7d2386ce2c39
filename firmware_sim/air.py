"""Simulated air-quality station firmware (SDS011/PMS5003 particulates, SCD4x CO2, SGP30 VOC, BME280).

The value model is pure (`AirModel.sample`), the payload encoding with a beginner's mistakes is pure
(`encode`), and `AirSensor` is the thin MQTT part: one client per device, a last will on `…/status`,
`online` published retained on connect.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from dataclasses import dataclass, field

from devices.topics import DeviceRef
from firmware_sim.faults import (
    DOCTOR_FAULTS,
    behaviour,
    clock_stamp,
    command_request,
    cut_256,
    foreign_ref,
    login,
)
from hub.adapters.mqtt import MqttClient, Will

log = logging.getLogger(__name__)

PAYLOAD_FAULTS = (
    "invalid_json",
    "unquoted_keys",
    "wrong_names",
    "strings",
    "nan",
    "out_of_range",
    "type_flip",
    "flood",
)
FAULTS = (*PAYLOAD_FAULTS, *DOCTOR_FAULTS)  # the doctor's: firmware_sim/faults.py
WARMUP_S = 15.0  # SGP30 reports 400 ppm eCO2 / 0 ppb TVOC while its baseline settles
DAY_S = 86400.0


@dataclass
class AirModel:
    """Slow diurnal drift, sensor noise, quantisation, occasional spikes and warm-up artefacts."""

    seed: int
    boot_s: float
    rng: random.Random = field(init=False)
    spike: float = 0.0

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.phase = self.rng.uniform(0, 2 * math.pi)
        self.base_pm = self.rng.uniform(5, 15)
        self.base_co2 = self.rng.uniform(420, 700)

    def sample(self, now_s: float) -> dict[str, float]:
        rng = self.rng
        day = math.sin(2 * math.pi * now_s / DAY_S + self.phase)
        if rng.random() < 0.01:
            self.spike = rng.uniform(20, 80)  # someone walked by / cooked / opened a window
        self.spike *= 0.9
        pm2_5 = max(0.0, self.base_pm + 4 * day + self.spike + rng.gauss(0, 0.8))
        pm10 = pm2_5 * 1.35 + abs(rng.gauss(0, 1.0))
        co2 = self.base_co2 + 150 * (day + 1) + rng.gauss(0, 8)
        warm = now_s - self.boot_s < WARMUP_S
        return {
            "pm1": float(round(pm2_5 * 0.7)),  # PMS5003 reports whole µg/m³
            "pm2_5": round(pm2_5, 1),  # SDS011: 0.1 µg/m³ steps
            "pm10": round(min(pm10, 999.9), 1),
            "co2": float(round(co2)),  # SCD4x: whole ppm
            "eco2": 400.0 if warm else float(round(co2 * 1.1 + rng.gauss(0, 15))),
            "tvoc": 0.0 if warm else float(max(0, round(60 + 40 * day + rng.gauss(0, 10)))),
            "temperature": round(21 + 2 * day + rng.gauss(0, 0.05), 2),
            "humidity": round(min(100.0, max(0.0, 45 - 8 * day + rng.gauss(0, 0.3))), 2),
            "pressure": round(1013.25 + 3 * day + rng.gauss(0, 0.05), 2),
        }


def encode(values: dict[str, float], fault: str | None, count: int) -> bytes:
    """The payload a firmware would publish, with the chosen beginner's mistake."""
    if fault is None or fault in DOCTOR_FAULTS or fault == "flood":
        return json.dumps(values).encode()
    if fault == "invalid_json":
        text = json.dumps(values)
        return text[: len(text) // 2].encode()  # a buffer too small for the message
    if fault == "unquoted_keys":
        return ("{" + ", ".join(f"{k}: {v}" for k, v in values.items()) + "}").encode()
    if fault == "wrong_names":
        renamed = {"pm25": values["pm2_5"], "temp": values["temperature"], "pm10": values["pm10"]}
        return json.dumps(renamed).encode()
    if fault == "strings":
        return json.dumps({k: str(v) for k, v in values.items()}).encode()
    if fault == "nan":
        return json.dumps(dict(values, pm2_5=float("nan"))).encode()  # json writes NaN, as ArduinoJson does
    if fault == "out_of_range":
        return json.dumps(dict(values, temperature=-127.0)).encode()  # a disconnected DS18B20 reads -127
    if fault == "type_flip":
        # int on even counts, float on odd: harmless here, numbers are numbers (see the README).
        flipped = {k: (int(v) if count % 2 == 0 else v) for k, v in values.items()}
        return json.dumps(flipped).encode()
    raise ValueError(f"unknown fault mode {fault!r} (known: {', '.join(FAULTS)})")


class AirSensor:
    """One simulated station with its own MQTT connection (two, for a `client_id_collision` twin)."""

    def __init__(
        self,
        ref: DeviceRef,
        host: str,
        port: int,
        period_s: float,
        fault: str | None = None,
        seed: int = 0,
        readings: int | None = None,
        password: str | None = None,
        app_password: str | None = None,
    ) -> None:
        """`password`: the device's broker account (username = its id); None connects anonymously.
        `app_password`: the learner's own account, for the app of the `retained_command` fault (None: anonymous)."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault mode {fault!r} (known: {', '.join(FAULTS)})")
        self.ref = ref
        self.how = behaviour(fault)
        self.period_s = period_s / 100 if fault == "flood" else self.how.period_s or period_s
        self.fault = fault
        self.readings = readings
        self.sent = 0
        self.booted = time.monotonic()
        self.model = AirModel(seed, time.time())
        self.blocked = False  # keepalive_timeout: loop() is in delay()
        self._stuck = b""  # stuck_sensor: the first payload, for ever
        self.host, self.port, self.password, self.app_password = host, port, password, app_password
        self.client = self._board(None if self.how.typo_after_s else fault)
        self.twin = self._board(fault) if self.how.twin else None
        self.done = asyncio.Event()

    def _board(self, fault: str | None) -> MqttClient:
        username, secret = login(self.ref, self.password, fault)

        def connected() -> None:
            self._on_connect(client)

        client = MqttClient(
            self.host,
            self.port,
            f"sim-{self.ref.cohort}-{self.ref.learner}-{self.ref.device}",
            will=Will(self.ref.topic("status"), b"offline") if self.how.will else None,
            keepalive=self.how.keepalive,
            on_connect=connected,
            backoff=self.how.reconnect,
            username=username,
            password=secret,
        )
        return client

    def _on_connect(self, client: MqttClient) -> None:
        client.publish(self.ref.topic("status"), b"online", qos=1, retain=True)
        loop = asyncio.get_running_loop()
        if self.how.drop_after_s is not None:  # a reset, or the Wi-Fi gone: no DISCONNECT reaches the broker
            loop.call_later(self.how.drop_after_s, client.drop)
        if self.how.block_after_s is not None:
            loop.call_later(self.how.block_after_s, self._block, client, True)
            loop.call_later(self.how.block_after_s + self.how.block_for_s, self._block, client, False)

    def _block(self, client: MqttClient, blocked: bool) -> None:
        self.blocked = blocked
        client.hold(blocked)

    def _payload(self) -> bytes:
        if self.how.stuck and self.sent:
            return self._stuck
        values = self.model.sample(time.time())
        if self.fault == "payload_cut_256":
            return cut_256(values)
        stamp = clock_stamp(self.fault, time.monotonic() - self.booted)
        payload = encode(values if stamp is None else {**values, "ts": stamp}, self.fault, self.sent)
        self._stuck = payload
        return payload

    async def run(self) -> None:
        """Publish until `readings` are sent (then stay online) or until cancelled."""
        conns = [asyncio.create_task(c.run()) for c in (self.client, self.twin) if c is not None]
        try:
            await self.client.wait_connected(30)
            if self.how.typo_after_s is not None:
                await self._flashed_with_a_typo(self.how.typo_after_s, conns)
            if self.how.retained_command:
                await self._app_publishes(command_request())
            target = foreign_ref(self.ref) if self.how.foreign_topic else self.ref
            topic = target.topic("telemetry")
            next_at = time.monotonic()
            while self.readings is None or self.sent < self.readings:
                if not self.blocked and self.client.publish(
                    topic, self._payload(), qos=1, retain=self.how.retain_telemetry
                ):
                    self.sent += 1
                next_at += self.period_s
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            self.done.set()
            await asyncio.Event().wait()
        finally:
            for client in (self.client, self.twin):
                if client is not None:
                    client.publish(self.ref.topic("status"), b"offline", qos=1, retain=True)
                    await client.stop()
            for conn in conns:
                conn.cancel()
            if self.how.retained_command:
                await self._app_publishes(b"")  # the simulation leaves no retained message behind

    async def _flashed_with_a_typo(self, after_s: float, conns: list[asyncio.Task[None]]) -> None:
        """wrong_password: the board worked (the broker saw it log in from its address), then it is flashed again
        with a typo in its password: refused at each try, it never publishes again."""
        await asyncio.sleep(after_s)
        await self.client.stop()
        self.client = self._board(self.fault)
        conns.append(asyncio.create_task(self.client.run()))
        await asyncio.Event().wait()

    async def _app_publishes(self, payload: bytes) -> None:
        """The learner's app sends a retained command request (empty: clears it), and leaves."""
        key = f"{self.ref.cohort}/{self.ref.learner}"
        app = MqttClient(
            self.host,
            self.port,
            f"app-{self.ref.cohort}-{self.ref.learner}",
            username=key if self.app_password else None,
            password=self.app_password,
        )
        conn = asyncio.create_task(app.run())
        try:
            await app.wait_connected(30)
            app.publish(self.ref.topic("commands/request"), payload, qos=1, retain=True)
        finally:
            await app.stop()
            conn.cancel()
