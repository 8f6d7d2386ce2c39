"""When the MQTT socket is read: on readiness, in bounded bursts, paused by backpressure, and lingering on a
slow stream. The MQTT session (`hub.adapters.mqtt`) says how to read; this says when.

A wake-up of the event loop costs far more than a message: at 500 devices × 1 Hz, one wake-up per message was
most of the hub's CPU. So after a read that found only a few messages, the socket is left alone for a short
linger and the next read takes everything that came meanwhile (the broker's messages wait in the kernel's
buffer). Under load every read is full and none lingers; while an answer is awaited (a command sent to an arm)
none lingers either, so the acknowledgement is read as soon as it comes. Below LINGER_FROM_PER_S messages a second
(a classroom of 40 boards) a linger would seldom find a second message: each is read as it comes, so a reading
without its own `ts` is stamped with its exact arrival time.
"""

from __future__ import annotations

import asyncio
import fcntl
import struct
import termios
import time
from collections.abc import Callable
from typing import Any

from hub.adapters.paho_fastpath import BufferedSocket

LINGER_BELOW = 32  # a read that found fewer messages than this is a slow stream: the next one may linger
LINGER_FROM_PER_S = 100.0  # a stream slower than this is read message by message
RATE_WINDOW_S = 1.0  # the message rate is counted over windows this long


class SocketReads:
    """The read side of one MQTT connection's socket, on the running loop."""

    def __init__(
        self,
        read: Callable[[], int],
        linger_s: float = 0.0,
        may_linger: Callable[[], bool] = lambda: True,
        linger_from_per_s: float = LINGER_FROM_PER_S,
    ) -> None:
        """`read()` handles one burst of messages and returns how many."""
        self._raw_read = read
        self._linger_from = linger_from_per_s
        self.rate = 0.0  # messages a second, over the last whole RATE_WINDOW_S
        self._counted = 0
        self._since = time.monotonic()
        self._linger_s = linger_s
        self._may_linger = may_linger
        self._loop: asyncio.AbstractEventLoop | None = None
        self.sock: Any = None
        self.paused = False
        self._scheduled = False
        self._linger: asyncio.TimerHandle | None = None  # the socket is left alone until then
        self.lingers = 0

    def open(self, loop: asyncio.AbstractEventLoop, sock: Any) -> None:
        self._end_linger()
        self._loop, self.sock = loop, sock
        if not self.paused:
            loop.add_reader(sock, self.on_readable)

    def close(self, sock: Any) -> None:
        self._end_linger()
        if self._loop is not None:
            self._loop.remove_reader(sock)
        self.sock = None

    def pause(self) -> None:
        if not self.paused:
            self.paused = True
            if self._loop is not None and self.sock is not None:
                self._loop.remove_reader(self.sock)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._end_linger()
            if self._loop is not None and self.sock is not None:
                self._loop.add_reader(self.sock, self.on_readable)
                self._read_soon()  # bytes may wait in the read buffer

    def read_now(self) -> None:
        """An answer is awaited: stop lingering, so it is read as soon as it comes."""
        if self._linger is not None and not self.paused and self._loop is not None and self.sock is not None:
            self._end_linger()
            self._loop.add_reader(self.sock, self.on_readable)

    def waiting(self) -> int:
        """Bytes received but not yet handled (in our buffer and in the kernel's): the watchdog's "is anything
        waiting" signal."""
        sock = self.sock
        if sock is None:
            return 0
        waiting = sock.buffered if isinstance(sock, BufferedSocket) else 0
        try:
            waiting += struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            pass
        return waiting

    def _read(self) -> int:
        handled = self._raw_read()
        self._counted += handled
        now = time.monotonic()
        if now - self._since >= RATE_WINDOW_S:
            self.rate = self._counted / (now - self._since)
            self._counted, self._since = 0, now
        return handled

    def _lingers(self, handled: int) -> bool:
        """Should the next read wait for the linger? A slow stream's read, fast enough to be worth it, with no
        answer awaited."""
        return 0 < handled < LINGER_BELOW and self.rate >= self._linger_from and self._may_linger()

    def on_readable(self) -> None:
        if self.paused:
            return
        handled = self._read()
        if self.paused:
            return
        # The socket may be drained while whole packets wait in our buffer: epoll will not say so.
        if isinstance(self.sock, BufferedSocket) and self.sock.buffered:
            self._read_soon()
        elif self._linger_s and self._lingers(handled):
            self._start_linger()

    def _read_soon(self) -> None:
        """Read again at the next turn of the loop, once: each pending read handles a whole burst, so several
        piling up (one per turn, as epoll reports the socket too) would starve every other task."""
        if not self._scheduled and self._loop is not None:
            self._scheduled = True
            self._loop.call_soon(self._on_readable_soon)

    def _on_readable_soon(self) -> None:
        self._scheduled = False
        self.on_readable()

    def _start_linger(self) -> None:
        if self._loop is None or self.sock is None or self._linger is not None:
            return
        self._loop.remove_reader(self.sock)
        self._linger = self._loop.call_later(self._linger_s, self._linger_over)
        self.lingers += 1

    def _linger_over(self) -> None:
        """Read what came meanwhile; while a slow stream goes on, linger again without waking for readiness.
        Whatever the read does (even raise), the socket is watched again or another linger is set."""
        self._linger = None
        if self.paused or self._loop is None or self.sock is None:
            return  # resume() or the next socket adds the reader again
        handled = 0
        try:
            handled = self._read()
        finally:
            if not self.paused and self.sock is not None and self._linger is None:
                if self._lingers(handled):
                    self._linger = self._loop.call_later(self._linger_s, self._linger_over)
                    self.lingers += 1
                else:
                    self._loop.add_reader(self.sock, self.on_readable)
                    if isinstance(self.sock, BufferedSocket) and self.sock.buffered:
                        self._read_soon()

    def _end_linger(self) -> None:
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
