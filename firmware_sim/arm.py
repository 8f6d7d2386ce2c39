"""Simulated servo-arm firmware: commands in, bounded-speed motion over real time, pose out, acknowledgements.

It behaves like a hobby-servo arm's firmware would: it subscribes to `…/commands`, checks each command
against its own limits (firmware should never trust the network), answers on `…/ack` with `accepted` (or
`rejected` and a reason), moves every joint toward its target no faster than the joint's top speed (and
the command's speed), and answers `done` with the final pose. Its pose goes out on `…/telemetry` while it
moves and every second at rest, marked `"source": "commanded"`: hobby servos report no position, so this
is where the firmware told them to be. A stop cuts the move short at once. The last will on `…/status`
is `offline`.

Fault modes reproduce what goes wrong with real boards: `slow_ack` (2 s late), `no_ack`, `reject_all`,
`drop` (ignores a third of the commands), `disconnect_mid_move` (the connection dies while moving).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time

from devices.arm import Ack, ArmProfile, CommandError, Move, check_command, encode_ack
from devices.topics import DeviceRef
from hub.adapters.mqtt import Message, MqttClient, Will

log = logging.getLogger(__name__)

FAULTS = ("slow_ack", "no_ack", "reject_all", "drop", "disconnect_mid_move")
TICK_S = 0.02
MOVING_TELEMETRY_S = 0.1
REST_TELEMETRY_S = 1.0


class ArmFirmware:
    def __init__(
        self,
        ref: DeviceRef,
        profile: ArmProfile,
        host: str,
        port: int,
        fault: str | None = None,
        seed: int = 0,
        password: str | None = None,
    ) -> None:
        """`password`: the device's broker account (username = its id); None connects anonymously."""
        if fault is not None and fault not in FAULTS:
            raise ValueError(f"unknown fault mode {fault!r} (known: {', '.join(FAULTS)})")
        self.ref = ref
        self.profile = profile
        self.fault = fault
        self.rng = random.Random(seed)
        self.pose = profile.home_pose()
        self.targets = dict(self.pose)
        self.speeds = {name: joint.max_speed for name, joint in profile.joints.items()}
        self.current: str | None = None  # id of the move in progress
        self.received: list[dict[str, object]] = []  # every command as it arrived (tests read it)
        self.moving = False
        self._wake = asyncio.Event()
        self.client = MqttClient(
            host,
            port,
            f"sim-arm-{ref.cohort}-{ref.learner}-{ref.device}",
            on_message=self._on_command,
            subscriptions=[(ref.topic("commands"), 1)],
            will=Will(ref.topic("status"), b"offline"),
            on_connect=self._on_connect,
            username=ref.key if password else None,
            password=password,
        )

    def _on_connect(self) -> None:
        self.client.publish(self.ref.topic("status"), b"online", qos=1, retain=True)

    # Commands ----------------------------------------------------------------------------------

    def _on_command(self, msg: Message) -> None:
        self.command(msg.payload)

    def command(self, payload: bytes) -> None:
        """One command as it arrived (JSON), whatever the transport."""
        try:
            command = json.loads(payload)
            command_id = str(command["id"])
            kind = command["type"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: unreadable command %r", self.ref.key, payload[:80])
            return
        self.received.append(command)
        if self.fault == "drop" and self.rng.random() < 1 / 3:
            return
        if kind == "stop":
            self._stop(command_id)
            return
        if self.fault == "reject_all":
            self._ack(Ack(command_id, "rejected", "this firmware refuses every command (fault mode)"))
            return
        try:
            targets = {str(k): float(v) for k, v in dict(command["targets"]).items()}
            speed = command.get("speed")
            final = check_command(Move(targets, float(speed) if speed is not None else None), self.profile, self.pose)
        except (CommandError, ValueError, TypeError, KeyError) as err:
            self._ack(Ack(command_id, "rejected", str(err)))
            return
        if self.current is not None:  # a new target replaces the move in progress
            self._ack(Ack(self.current, "done", pose=dict(self.pose), interrupted=True))
        self.targets = final
        self.speeds = {
            name: min(joint.max_speed, float(speed)) if speed is not None else joint.max_speed
            for name, joint in self.profile.joints.items()
        }
        self.current = command_id
        self._ack(Ack(command_id, "accepted"))
        self._wake.set()
        if self.fault == "disconnect_mid_move":
            asyncio.get_running_loop().call_later(0.1, self.client.drop)

    def _stop(self, command_id: str) -> None:
        self.targets = dict(self.pose)
        if self.current is not None:
            self._ack(Ack(self.current, "done", pose=dict(self.pose), interrupted=True))
            self.current = None
        self._ack(Ack(command_id, "accepted"))
        self._ack(Ack(command_id, "done", pose=dict(self.pose)))

    def _ack(self, ack: Ack) -> None:
        if self.fault == "no_ack":
            return
        if self.fault == "slow_ack":  # every answer 2 s late, in order
            asyncio.get_running_loop().call_later(2.0, self._publish_ack, ack)
        else:
            self._publish_ack(ack)

    def _publish_ack(self, ack: Ack) -> None:
        self.client.publish(self.ref.topic("ack"), encode_ack(ack), qos=1)

    # Motion ------------------------------------------------------------------------------------

    def step(self, dt: float) -> bool:
        """Move every joint toward its target for `dt` seconds; True while still moving."""
        moving = False
        for name, target in self.targets.items():
            angle = self.pose[name]
            if angle == target:
                continue
            reach = self.speeds[name] * dt
            self.pose[name] = target if abs(target - angle) <= reach else angle + (reach if target > angle else -reach)
            moving = True
        return moving

    def pose_payload(self) -> bytes:
        body: dict[str, object] = {name: round(angle, 2) for name, angle in self.pose.items()}
        body.update({"moving": self.moving, "source": "commanded"})
        return json.dumps(body).encode()

    def _telemetry(self) -> None:
        self.client.publish(self.ref.topic("telemetry"), self.pose_payload(), qos=0)

    def can_send(self) -> bool:
        return self.client.connected.is_set()

    async def run(self) -> None:
        connection = asyncio.create_task(self.client.run())
        try:
            await self.client.wait_connected(30)
            await self.motion()
        finally:
            self.client.publish(self.ref.topic("status"), b"offline", qos=1, retain=True)
            await self.client.stop()
            connection.cancel()

    async def motion(self) -> None:
        """Move toward the targets in real time; pose telemetry while moving and every second at rest."""
        last_tick = last_telemetry = time.monotonic()
        while True:
            if self.moving or self.current is not None:
                await asyncio.sleep(TICK_S)
            else:  # at rest: wake for the next command, or for the next at-rest telemetry
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._wake.wait(), max(0.0, last_telemetry + REST_TELEMETRY_S - time.monotonic())
                    )
                last_tick = time.monotonic() if not self.moving else last_tick
            now = time.monotonic()
            was_moving = self.moving
            self.moving = self.step(now - last_tick)
            last_tick = now
            if not self.moving and self.current is not None:  # arrived (or had nothing to do)
                self._ack(Ack(self.current, "done", pose=dict(self.pose)))
                self.current = None
            every = MOVING_TELEMETRY_S if self.moving else REST_TELEMETRY_S
            arrived = was_moving and not self.moving  # the final pose goes out at once
            if (arrived or now - last_telemetry >= every) and self.can_send():
                self._telemetry()
                last_telemetry = now
