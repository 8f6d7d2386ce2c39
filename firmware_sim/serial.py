"""Simulated USB-serial boards behind pseudo-terminals, so the serial bridge is tested without hardware.

`PtyPort` stands in for the cable: a pty pair whose slave side is reached through a stable symlink (as
udev's /dev/serial/by-id links are), so `unplug()` makes the port vanish and `plug()` brings a new one at
the same path. The firmware writes to the master side; the bridge opens the path with pyserial.

Boards:
- `SerialAirSensor`: an Arduino sketch printing `pm2_5=12.4,pm10=19.0,temperature=21.5` (or JSON) lines,
  with an ESP32-like boot banner and line noise after every plug-in;
- `Sds011Sensor`: the Nova SDS011's binary frames, once a second; the `checksum` fault corrupts some;
- `SerialArm`: the servo-arm firmware (firmware_sim.arm) reading JSON command lines and printing
  acknowledgement and pose lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import termios
import time
import tty
from collections.abc import Callable
from pathlib import Path

from devices.arm import Ack, ArmProfile, encode_ack
from devices.serial_protocols import LineFramer, sds011_frame
from devices.topics import DeviceRef
from firmware_sim.air import AirModel
from firmware_sim.arm import ArmFirmware

log = logging.getLogger(__name__)

BOOT_BANNER = (
    b"\x00\xff\xfe\x8c ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET),boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
)


class PtyPort:
    """A pseudo-terminal pair with a stable path: the cable, which tests can pull out and plug back in."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.master: int | None = None
        self._slave: int | None = None
        self.plugs = 0
        self.on_plug: list[Callable[[int], None]] = []  # told the new master fd
        self.on_unplug: list[Callable[[int], None]] = []  # told before the master fd closes

    @property
    def plugged(self) -> bool:
        return self.master is not None

    def plug(self) -> None:
        if self.master is not None:
            return
        master, slave = os.openpty()
        tty.setraw(slave)  # no echo, no line discipline: a plain byte pipe like a UART
        attrs = termios.tcgetattr(slave)
        attrs[3] &= ~termios.ECHO
        termios.tcsetattr(slave, termios.TCSANOW, attrs)
        os.set_blocking(master, False)
        tmp = self.path.with_name(self.path.name + ".new")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        tmp.symlink_to(os.ttyname(slave))
        tmp.replace(self.path)
        self.master, self._slave = master, slave
        self.plugs += 1
        for callback in self.on_plug:
            callback(master)

    def unplug(self) -> None:
        """The cable is pulled: the path disappears and the open port fails."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        if self.master is not None:
            for callback in self.on_unplug:
                callback(self.master)
        for fd in (self.master, self._slave):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.master = self._slave = None

    def write(self, data: bytes) -> int:
        """Bytes onto the wire; what the other side's buffer cannot take is lost, as on a real UART."""
        if self.master is None:
            return 0
        try:
            return os.write(self.master, data)
        except (BlockingIOError, OSError):
            return 0

    def read(self) -> bytes:
        if self.master is None:
            return b""
        try:
            return os.read(self.master, 4096)
        except (BlockingIOError, OSError):
            return b""


class SerialAirSensor:
    """A sketch printing readings as text lines, once per period; a boot banner after each plug-in."""

    def __init__(
        self, port: PtyPort, period_s: float = 1.0, style: str = "pairs", seed: int = 0, text: str | None = None
    ) -> None:
        if style not in ("pairs", "json"):
            raise ValueError("style is 'pairs' or 'json'")
        self.text = text  # a fixed line instead of modelled readings
        self.port = port
        self.period_s = period_s
        self.style = style
        self.model = AirModel(seed, time.time())
        self.sent = 0
        self._booted = 0

    def line(self) -> bytes:
        if self.text is not None:
            return self.text.encode() + b"\r\n"
        values = self.model.sample(time.time())
        fields = {"pm2_5": values["pm2_5"], "pm10": values["pm10"], "temperature": values["temperature"]}
        if self.style == "json":
            return json.dumps(fields).encode() + b"\r\n"
        return ",".join(f"{k}={v}" for k, v in fields.items()).encode() + b"\r\n"

    async def run(self) -> None:
        while True:
            if self.port.plugged and self._booted != self.port.plugs:
                self._booted = self.port.plugs
                self.port.write(BOOT_BANNER)  # a board resets when its cable is plugged in
            if self.port.plugged and self.port.write(self.line()):
                self.sent += 1
            await asyncio.sleep(self.period_s)


class Sds011Sensor:
    """The SDS011: one 10-byte frame a second (active reporting mode). Fault `checksum`: every third frame
    is corrupted; `garbage`: noise between frames."""

    def __init__(self, port: PtyPort, period_s: float = 1.0, fault: str | None = None, seed: int = 0) -> None:
        if fault not in (None, "checksum", "garbage"):
            raise ValueError("fault is 'checksum' or 'garbage'")
        self.port = port
        self.period_s = period_s
        self.fault = fault
        self.rng = random.Random(seed)
        self.model = AirModel(seed, time.time())
        self.frames = 0
        self.good: list[tuple[float, float]] = []  # the values of the valid frames sent (tests compare)

    def frame(self) -> bytes:
        values = self.model.sample(time.time())
        pm2_5, pm10 = round(values["pm2_5"], 1), round(max(values["pm10"], values["pm2_5"]), 1)
        self.frames += 1
        data = sds011_frame(pm2_5, pm10)
        if self.fault == "checksum" and self.frames % 3 == 0:
            return data[:8] + bytes([(data[8] + 1) & 0xFF]) + data[9:]
        self.good.append((pm2_5, pm10))
        if self.fault == "garbage":
            return bytes(self.rng.randrange(256) for _ in range(5)).replace(b"\xaa", b"\x55") + data
        return data

    async def run(self) -> None:
        while True:
            if self.port.plugged:
                self.port.write(self.frame())
            await asyncio.sleep(self.period_s)


class SerialArm(ArmFirmware):
    """The servo-arm firmware on a serial cable: JSON command lines in, ack and pose lines out."""

    def __init__(self, ref: DeviceRef, profile: ArmProfile, port: PtyPort, seed: int = 0) -> None:
        super().__init__(ref, profile, "127.0.0.1", 0, seed=seed)  # its MQTT client is never started
        self.port = port
        self._framer = LineFramer()

    def can_send(self) -> bool:
        return self.port.plugged

    def _publish_ack(self, ack: Ack) -> None:
        self.port.write(encode_ack(ack) + b"\n")

    def _telemetry(self) -> None:
        self.port.write(self.pose_payload() + b"\n")

    def _readable(self) -> None:
        for line in self._framer.feed(self.port.read()):
            if isinstance(line, bytes) and line.strip():
                self.command(line.strip())

    async def run(self) -> None:
        """Read commands while the cable is in (half lines are forgotten when it is pulled); move."""
        loop = asyncio.get_running_loop()

        def plugged(fd: int) -> None:
            self._framer.reset()
            loop.add_reader(fd, self._readable)

        def unplugged(fd: int) -> None:
            loop.remove_reader(fd)

        self.port.on_plug.append(plugged)
        self.port.on_unplug.append(unplugged)
        if self.port.master is not None:
            plugged(self.port.master)
        try:
            await self.motion()
        finally:
            self.port.on_plug.remove(plugged)
            self.port.on_unplug.remove(unplugged)
            if self.port.master is not None:
                unplugged(self.port.master)
