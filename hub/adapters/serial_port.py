"""A USB-serial port through pyserial: the only module that imports it.

Ports open by device path or by pyserial URL (`loop://`, `socket://host:port`), so tests need no hardware.
Reads and writes have timeouts (a stop or an unplug is noticed quickly; a board that does not read its port
never blocks the caller), and every pyserial or OS failure leaves here as `PortError`.
"""

from __future__ import annotations

import contextlib

import serial

READ_TIMEOUT_S = 0.05  # a read returns at least this often, so a stop or an unplug is noticed quickly
WRITE_TIMEOUT_S = 1.0  # a board that does not read its port must not block the bridge
READ_MAX = 4096  # bytes per read


class PortError(Exception):
    """The port cannot be opened, or went away."""


class SerialPort:
    """A pyserial port (a device path, or a pyserial URL such as `loop://`), with errors turned into PortError."""

    def __init__(self, url: str, baud: int) -> None:
        self.url = url
        self.baud = baud
        self._port: serial.SerialBase | None = None

    def open(self) -> None:
        try:
            self._port = serial.serial_for_url(
                self.url, baudrate=self.baud, timeout=READ_TIMEOUT_S, write_timeout=WRITE_TIMEOUT_S
            )
        except (serial.SerialException, OSError, ValueError) as err:
            raise PortError(str(err)) from None

    @property
    def is_open(self) -> bool:
        return self._port is not None

    def read(self) -> bytes:
        """Whatever arrived (at most READ_MAX bytes), waiting up to READ_TIMEOUT_S for the first byte."""
        port = self._require()
        try:
            waiting = int(getattr(port, "in_waiting", 0))  # every concrete port has it; SerialBase does not say so
            return bytes(port.read(max(1, min(READ_MAX, waiting))))
        except (serial.SerialException, OSError) as err:
            raise PortError(str(err)) from None

    def write(self, data: bytes) -> None:
        port = self._require()
        try:
            port.write(data)
        except (serial.SerialException, OSError) as err:
            raise PortError(str(err)) from None

    def close(self) -> None:
        if self._port is not None:
            with contextlib.suppress(serial.SerialException, OSError):
                self._port.close()
            self._port = None

    def _require(self) -> serial.SerialBase:
        if self._port is None:
            raise PortError("the port is not open")
        return self._port
