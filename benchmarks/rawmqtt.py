"""A minimal MQTT 3.1.1 publisher for load generators: CONNECT, then QoS 0 PUBLISH frames built in Python and
written in large chunks (one system call for many messages, so the load costs the hub little CPU)."""

from __future__ import annotations

import socket


def remaining_length(n: int) -> bytes:
    """MQTT's variable-length encoding of a packet's remaining length."""
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def topic_head(topic: str) -> bytes:
    """A PUBLISH's variable header for `topic` (QoS 0: no packet id), computed once per topic."""
    name = topic.encode()
    return len(name).to_bytes(2, "big") + name


def publish_frame(head: bytes, payload: bytes) -> bytes:
    return b"\x30" + remaining_length(len(head) + len(payload)) + head + payload


def connect(port: int, client_id: str, username: str, password: str) -> socket.socket:
    """A connected socket (clean session, username and password, keepalive 60 s); RuntimeError if refused."""
    fields = [client_id.encode(), username.encode(), password.encode()]
    body = b"\x00\x04MQTT\x04\xc2\x00\x3c" + b"".join(len(f).to_bytes(2, "big") + f for f in fields)
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"\x10" + remaining_length(len(body)) + body)
    connack = sock.recv(4)
    if connack[:1] != b"\x20" or connack[3:4] != b"\x00":
        sock.close()
        raise RuntimeError(f"broker refused {username}: {connack!r}")
    return sock
