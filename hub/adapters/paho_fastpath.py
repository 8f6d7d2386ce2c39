"""paho's receive path made lean, over paho's private methods, and only after a start-up self-check.

Three shortcuts, measured at tens of thousands of messages/s (benchmarks/bench_mqtt_adapter.py):

- buffered socket reads (`BufferedSocket`): paho reads each packet with two or three recv() calls, and those
  system calls were a fifth of the hub's CPU;
- an MQTT 3.1.1 QoS 0/1 PUBLISH becomes the adapter's message directly, skipping paho's MQTTMessage (which
  builds a threading.Condition per message), its topic matcher and a debug log call: about 5 µs of the ~11 µs
  paho spent per message. QoS 2 and MQTT v5 take paho's own path;
- whole PUBLISH frames already in the buffer are taken in one loop (`read_publishes`), without paho's
  per-packet state machine; anything else is left to paho's read path.

They reach into paho's private parts (`_create_socket`, `_handle_publish`, `_in_packet`, `_protocol`,
`_manual_ack`, `_send_puback`, `_loop_rc_handle`, `_msgtime_mutex`, read through `_packet_read`), which any
minor release may change: 2.2 moved PUBLISH decoding into a private module. So before the first client is made,
`self_check()` reads PUBLISH frames through both this client (both its paths) and stock paho from an in-memory
socket pair and requires the same messages and acknowledgements from each; if anything differs, clients are
stock paho and a warning says why.
"""

from __future__ import annotations

import functools
import logging
import socket
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import paho.mqtt.client as paho
from paho.mqtt import __version__ as PAHO_VERSION
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion

from hub.boundary import escape

log = logging.getLogger(__name__)

M = TypeVar("M")
MakeMessage = Callable[[str, bytes, int, bool, int, bool], M]  # topic, payload, qos, retain, mid, dup

# What the fast path overrides or calls; the self-check also exercises them.
PRIVATE_METHODS = ("_create_socket", "_handle_publish", "_send_puback", "_packet_read", "_sock_recv", "_loop_rc_handle")


class BufferedSocket:
    """Socket wrapper whose recv() serves paho's small reads (1 byte, then the rest) from one large read.

    Everything but recv() goes to the real socket.
    """

    __slots__ = ("_buf", "_pos", "_sock")

    def __init__(self, sock: Any) -> None:
        self._sock = sock
        self._buf = b""
        self._pos = 0

    def recv(self, size: int) -> bytes:
        if self._pos >= len(self._buf):
            data: bytes = self._sock.recv(max(size, 256 * 1024))  # BlockingIOError propagates: nothing to read
            if len(data) <= size:
                return data
            self._buf, self._pos = data, 0
        end = self._pos + size
        chunk = self._buf[self._pos : end]
        self._pos = end
        return chunk

    @property
    def buffered(self) -> int:
        return len(self._buf) - self._pos

    def __getattr__(self, name: str) -> Any:
        return getattr(self._sock, name)


def drop_bad_topic(topic: bytes) -> None:
    """Say that a message whose topic is not UTF-8 was dropped (brokers refuse such topics), on both paths."""
    log.warning("dropped a message whose topic is not UTF-8: %s", escape(topic[:80]))


class FastClient(paho.Client, Generic[M]):
    """paho's client with the two shortcuts; everything else (connection, keepalive, acknowledgements, QoS 2
    flows) is paho's. `deliver` and `make_message` are set by `new_client`."""

    deliver: Callable[[M], None] | None = None
    make_message: MakeMessage[M]

    def _create_socket(self) -> Any:
        return BufferedSocket(super()._create_socket())

    def _handle_publish(self) -> MQTTErrorCode:
        deliver = self.deliver
        header = self._in_packet["command"]
        qos = (header & 0x06) >> 1
        if deliver is None or qos == 2 or self._protocol == MQTTProtocolVersion.MQTTv5:
            result: MQTTErrorCode = super()._handle_publish()
            return result
        return self._publish(deliver, header, qos, self._in_packet["packet"])

    def read_publishes(self, most: int, stop: Callable[[], bool]) -> int:
        """Deliver up to `most` whole QoS 0/1 PUBLISH frames waiting in the read buffer, in one loop, until
        `stop()` says so; anything else (another packet, a frame cut short) is left to paho's read path.

        paho reads a packet in three recv() calls and a dict-driven state machine; here a frame costs a
        varint and a slice. Returns how many frames were taken."""
        sock = self._sock
        deliver = self.deliver
        if (
            deliver is None
            or type(sock) is not BufferedSocket
            or self._in_packet["command"]  # paho is in the middle of a packet
            or self._protocol == MQTTProtocolVersion.MQTTv5
        ):
            return 0
        buf = sock._buf
        pos = sock._pos
        size = len(buf)
        taken = 0
        while taken < most and pos + 2 <= size:
            header = buf[pos]
            if header & 0xF6 not in (0x30, 0x32):  # not a PUBLISH of QoS 0 or 1
                break
            length, shift, at = 0, 0, pos + 1
            while at < size and at - pos <= 4:
                byte = buf[at]
                length |= (byte & 0x7F) << shift
                shift += 7
                at += 1
                if not byte & 0x80:
                    break
            else:
                break  # the length is cut short, or too long: paho's path reads on, or refuses it
            end = at + length
            if end > size:
                break  # the frame is not all here yet
            sock._pos = pos = end
            taken += 1
            rc = self._publish(deliver, header, (header & 0x06) >> 1, buf[at:end])
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:  # malformed, or an acknowledgement not queued: as paho does
                self._loop_rc_handle(rc)
                break
            if stop():
                break
        if taken:
            with self._msgtime_mutex:
                self._last_bytes_received = paho.time_func()
        return taken

    def _publish(self, deliver: Callable[[M], None], header: int, qos: int, packet: bytes | bytearray) -> MQTTErrorCode:
        """One PUBLISH's variable header and payload, as the adapter's message."""
        start = 2 + ((packet[0] << 8) | packet[1]) if len(packet) >= 2 else len(packet) + 1
        end = start + (2 if qos else 0)
        if end > len(packet):
            return MQTTErrorCode.MQTT_ERR_PROTOCOL  # paho closes the connection
        mid = (packet[start] << 8) | packet[start + 1] if qos else 0
        try:
            topic = bytes(packet[2:start]).decode("utf-8")
        except UnicodeDecodeError:  # never pass one on, never ask for it again
            drop_bad_topic(bytes(packet[2:start]))
            return self._send_puback(mid) if qos else MQTTErrorCode.MQTT_ERR_SUCCESS
        deliver(self.make_message(topic, bytes(packet[end:]), qos, bool(header & 0x01), mid, bool(header & 0x08)))
        if qos and not self._manual_ack:
            rc: MQTTErrorCode = self._send_puback(mid)
            return rc
        return MQTTErrorCode.MQTT_ERR_SUCCESS


# The self-check -------------------------------------------------------------------------------------------

Seen = tuple[str, bytes, int, bool, int, bool]
CHECK_FRAMES = (
    b"\x31\x09\x00\x03a/bzero",  # QoS 0, retained, topic "a/b"
    b"\x3a\x08\x00\x01t\x12\x34one",  # QoS 1, dup, topic "t", packet id 0x1234
)
CHECK_EXPECTED = ([("a/b", b"zero", 0, True, 0, False), ("t", b"one", 1, False, 0x1234, True)], [0x1234])


def _read_frames(client: paho.Client, use_buffer: bool) -> list[int]:
    """Feed CHECK_FRAMES to `client` through paho's read path; the packet ids it acknowledged."""
    acks: list[int] = []

    def puback(mid: int) -> MQTTErrorCode:
        acks.append(mid)
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    client._send_puback = puback  # type: ignore[method-assign]  # record instead of queueing for a socket
    ours, theirs = socket.socketpair()
    try:
        ours.setblocking(False)
        theirs.sendall(b"".join(CHECK_FRAMES))
        client._sock = BufferedSocket(ours) if use_buffer else ours
        handled = 0
        while handled < len(CHECK_FRAMES):  # the first frame through paho's read path, the next through ours
            rc = client._packet_read()
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"reading a PUBLISH returned {rc!r}")
            handled += 1
            if isinstance(client, FastClient):
                handled += client.read_publishes(len(CHECK_FRAMES), lambda: False)
    finally:
        client._sock = None
        ours.close()
        theirs.close()
    return acks


def self_check() -> str | None:
    """Why the fast path cannot run on the installed paho, or None when it can."""
    missing = [name for name in PRIVATE_METHODS if not callable(getattr(paho.Client, name, None))]
    if missing:
        return f"paho has no {', '.join(missing)}"
    try:
        seen: dict[str, list[Seen]] = {"fast": [], "stock": []}
        fast: FastClient[Seen] = FastClient(CallbackAPIVersion.VERSION2, client_id="self-check")
        fast.deliver = seen["fast"].append
        fast.make_message = lambda *fields: fields
        stock = paho.Client(CallbackAPIVersion.VERSION2, client_id="self-check")
        stock.on_message = lambda _c, _u, m: seen["stock"].append(
            (m.topic, bytes(m.payload), m.qos, bool(m.retain), m.mid, bool(m.dup))
        )
        got = {"fast": _read_frames(fast, True), "stock": _read_frames(stock, False)}
    except Exception as err:  # any surprise in paho's internals means: do not rely on them
        return f"{type(err).__name__}: {err}"
    for name in ("fast", "stock"):
        if (seen[name], got[name]) != CHECK_EXPECTED:
            return f"{name} read {seen[name]} acknowledging {got[name]}, expected {CHECK_EXPECTED}"
    return None


@functools.cache
def fast_path_works() -> bool:
    """The self-check's verdict, once per process; a failure is logged once."""
    problem = self_check()
    if problem is not None:
        log.warning(
            "paho-mqtt %s: using its own receive path, slower (the fast path's check failed: %s)", PAHO_VERSION, problem
        )
    return problem is None


def new_client(
    deliver: Callable[[M], None], make_message: MakeMessage[M], *, fast: bool = True, **options: Any
) -> paho.Client:
    """A paho client made with `options`: the fast one when `fast` and the self-check passes, else stock paho
    (which then delivers through its on_message callback)."""
    if not (fast and fast_path_works()):
        return paho.Client(**options)
    client: FastClient[M] = FastClient(**options)
    client.deliver = deliver
    client.make_message = make_message
    return client
