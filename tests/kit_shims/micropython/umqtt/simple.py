"""Stand-in for MicroPython's `umqtt.simple` on CPython: the same class and methods (1.23's signature, `ssl` an
SSLContext), speaking real MQTT 3.1.1 over a plain socket, so a kit's main.py reaches a real broker. Like the
original: QoS 0 and 1 publishes (1 waits for its PUBACK), a SUBACK refusal raises, `check_msg` does not block."""

from __future__ import annotations

import socket
import ssl as _ssl
import struct
from collections.abc import Callable
from typing import Any


class MQTTException(Exception):
    pass


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


class MQTTClient:
    def __init__(
        self,
        client_id: str | bytes,
        server: str,
        port: int = 0,
        user: str | None = None,
        password: str | None = None,
        keepalive: int = 0,
        ssl: Any = None,
    ) -> None:
        self.client_id = _bytes(client_id)
        self.server = server
        self.port = port or (8883 if ssl else 1883)
        self.user = user
        self.pswd = password
        self.keepalive = keepalive
        self.ssl = ssl
        self.sock: Any = None
        self.pid = 0
        self.cb: Callable[[bytes, bytes], None] | None = None
        self.lw_topic: bytes | None = None
        self.lw_msg = b""
        self.lw_qos = 0
        self.lw_retain = False

    # framing ---------------------------------------------------------------------------------------------

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise OSError(-1, "connection closed")
            data += chunk
        return data

    def _send_str(self, s: str | bytes) -> bytes:
        data = _bytes(s)
        return struct.pack("!H", len(data)) + data

    def _packet(self, first: int, body: bytes) -> bytes:
        length, size = b"", len(body)
        while True:
            byte = size & 0x7F
            size >>= 7
            length += bytes([byte | (0x80 if size else 0)])
            if not size:
                return bytes([first]) + length + body

    def _recv_len(self) -> int:
        n, shift = 0, 0
        while True:
            byte = self._read(1)[0]
            n |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return n
            shift += 7

    # API ---------------------------------------------------------------------------------------------------

    def set_callback(self, f: Callable[[bytes, bytes], None]) -> None:
        self.cb = f

    def set_last_will(self, topic: str | bytes, msg: str | bytes, retain: bool = False, qos: int = 0) -> None:
        assert 0 <= qos <= 2 and topic
        self.lw_topic, self.lw_msg, self.lw_qos, self.lw_retain = _bytes(topic), _bytes(msg), qos, retain

    def connect(self, clean_session: bool = True, timeout: float | None = None) -> bool:
        self.sock = socket.create_connection((self.server, self.port), timeout=timeout or 10)
        if self.ssl:
            self.sock = self.ssl.wrap_socket(self.sock, server_hostname=self.server)
        flags = 0x02 if clean_session else 0
        payload = self._send_str(self.client_id)
        if self.lw_topic:
            flags |= 0x04 | (self.lw_qos << 3) | (0x20 if self.lw_retain else 0)
            payload += self._send_str(self.lw_topic) + self._send_str(self.lw_msg)
        if self.user is not None:
            flags |= 0x80
            payload += self._send_str(self.user)
            if self.pswd is not None:
                flags |= 0x40
                payload += self._send_str(self.pswd)
        header = self._send_str(b"MQTT") + bytes([4, flags]) + struct.pack("!H", self.keepalive)
        self.sock.sendall(self._packet(0x10, header + payload))
        resp = self._read(4)
        if resp[0] != 0x20 or resp[1] != 0x02:
            raise MQTTException("not a CONNACK")
        if resp[3] != 0:
            raise MQTTException(resp[3])  # 4: bad user name or password, 5: not authorised
        return bool(resp[2] & 1)

    def disconnect(self) -> None:
        self.sock.sendall(b"\xe0\0")
        self.sock.close()

    def ping(self) -> None:
        self.sock.sendall(b"\xc0\0")

    def publish(self, topic: str | bytes, msg: str | bytes, retain: bool = False, qos: int = 0) -> None:
        body = self._send_str(topic)
        pid = 0
        if qos > 0:
            self.pid = self.pid % 65535 + 1
            pid = self.pid
            body += struct.pack("!H", pid)
        self.sock.sendall(self._packet(0x30 | (qos << 1) | (1 if retain else 0), body + _bytes(msg)))
        while qos == 1:
            if self.wait_msg() == 0x40:
                self._read(1)  # PUBACK's remaining length
                if struct.unpack("!H", self._read(2))[0] == pid:
                    return

    def subscribe(self, topic: str | bytes, qos: int = 0) -> None:
        assert self.cb is not None, "Subscribe callback is not set"
        self.pid = self.pid % 65535 + 1
        self.sock.sendall(self._packet(0x82, struct.pack("!H", self.pid) + self._send_str(topic) + bytes([qos])))
        while True:
            if self.wait_msg() == 0x90:
                resp = self._read(4)
                if resp[3] == 0x80:
                    raise MQTTException(resp[3])
                return

    def wait_msg(self) -> int | None:
        """One incoming packet: a PUBLISH goes to the callback; others' first byte is returned, unread."""
        try:
            first = self.sock.recv(1)
        except (BlockingIOError, TimeoutError, _ssl.SSLWantReadError):
            return None
        finally:
            self.sock.setblocking(True)
        if first == b"":
            raise OSError(-1, "connection closed")
        op = first[0]
        if op == 0xD0:  # PINGRESP
            self._read(1)
            return None
        if op & 0xF0 != 0x30:
            return op
        size = self._recv_len()
        topic_len = struct.unpack("!H", self._read(2))[0]
        topic = self._read(topic_len)
        size -= topic_len + 2
        if op & 6:
            pid = struct.unpack("!H", self._read(2))[0]
            size -= 2
        msg = self._read(size)
        if self.cb is not None:
            self.cb(topic, msg)
        if op & 6 == 2:
            self.sock.sendall(b"\x40\x02" + struct.pack("!H", pid))
        return None

    def check_msg(self) -> int | None:
        self.sock.setblocking(False)
        return self.wait_msg()
