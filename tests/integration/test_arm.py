"""The simulated arm firmware through the real broker: moves accepted, performed and done, stops, fault modes.
Profiles, command checks and the wire format are unit-tested (tests/unit/test_arm.py)."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from devices.arm import (
    load_profiles,
)
from devices.topics import DeviceRef
from firmware_sim.arm import ArmFirmware
from tests.conftest import unique
from tests.integration.conftest import Services
from tests.support import MqttListener, MqttPublisher

MEARM = load_profiles()["mearm"]


# The simulated firmware through the real broker -----------------------------------------------------


async def start_arm(services: Services, fault: str | None = None) -> tuple[ArmFirmware, asyncio.Task[None]]:
    arm = ArmFirmware(DeviceRef(unique("c"), "ana", "arm1"), MEARM, "127.0.0.1", services.mqtt_port, fault)
    task = asyncio.create_task(arm.run())
    await arm.client.wait_connected(10)
    return arm, task


async def stop_arm(task: asyncio.Task[None]) -> None:
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_move_is_accepted_performed_and_done_with_its_pose(services: Services) -> None:
    arm, task = await start_arm(services)
    acks = await MqttListener(services.mqtt_port, arm.ref.topic("ack")).ready()
    pose = await MqttListener(services.mqtt_port, arm.ref.topic("telemetry")).ready()
    pub = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    try:
        started = time.monotonic()
        await pub.publish(
            arm.ref.topic("commands"), json.dumps({"id": "m1", "type": "move", "targets": {"base": 0}, "speed": 180})
        )
        assert await acks.next_json() == {"id": "m1", "status": "accepted"}
        done = await acks.next_json(timeout=3)
        elapsed = time.monotonic() - started
        assert done["id"] == "m1" and done["status"] == "done" and done["pose"]["base"] == 0
        assert 0.5 - 0.05 <= elapsed < 0.5 + 0.3  # 90° at 180°/s
        while True:
            reading = await pose.next_json()
            if not reading["moving"]:
                break
        assert reading["base"] == 0 and reading["source"] == "commanded"
    finally:
        for client in (acks, pose, pub):
            client.close()
        await stop_arm(task)


async def test_stop_cuts_a_move_short_and_unsafe_moves_are_rejected(services: Services) -> None:
    arm, task = await start_arm(services)
    acks = await MqttListener(services.mqtt_port, arm.ref.topic("ack")).ready()
    pose = await MqttListener(services.mqtt_port, arm.ref.topic("telemetry")).ready()
    pub = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    try:
        move = {"id": "m1", "type": "move", "targets": {"base": 0}, "speed": 30}
        await pub.publish(arm.ref.topic("commands"), json.dumps(move))
        assert (await acks.next_json())["status"] == "accepted"
        while not (await pose.next_json())["moving"]:
            pass
        await pub.publish(arm.ref.topic("commands"), json.dumps({"id": "s1", "type": "stop"}))
        interrupted = await acks.next_json()
        assert interrupted["id"] == "m1" and interrupted["interrupted"] is True
        assert 0 < interrupted["pose"]["base"] < 90  # at 30°/s, far from the target when stopped
        assert [(await acks.next_json())["status"] for _ in range(2)] == ["accepted", "done"]
        await pub.publish(arm.ref.topic("commands"), json.dumps({"id": "m2", "type": "move", "targets": {"base": 999}}))
        rejected = await acks.next_json()
        assert rejected == {"id": "m2", "status": "rejected", "reason": "base: 999° is outside its limits 0–180°"}
    finally:
        for client in (acks, pose, pub):
            client.close()
        await stop_arm(task)


@pytest.mark.parametrize("fault", ["reject_all", "no_ack", "disconnect_mid_move"])
async def test_fault_modes(services: Services, fault: str) -> None:
    arm, task = await start_arm(services, fault)
    acks = await MqttListener(services.mqtt_port, arm.ref.topic("ack")).ready()
    status = await MqttListener(services.mqtt_port, arm.ref.topic("status")).ready()
    pub = MqttPublisher(services.mqtt_port, auth=services.hub_auth)
    try:
        assert (await status.next())[1] == b"online"
        await pub.publish(arm.ref.topic("commands"), json.dumps({"id": "m1", "type": "move", "targets": {"base": 10}}))
        if fault == "reject_all":
            assert (await acks.next_json())["status"] == "rejected"
        elif fault == "no_ack":
            with pytest.raises(TimeoutError):
                await acks.next(timeout=1.0)
            assert arm.received[0]["id"] == "m1"
        else:
            assert (await acks.next_json())["status"] == "accepted"
            assert (await status.next(timeout=5))[1] == b"offline"  # the broker sent the last will
    finally:
        for client in (acks, status, pub):
            client.close()
        await stop_arm(task)
