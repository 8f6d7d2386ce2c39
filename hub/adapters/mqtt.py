"""A small asyncio adapter around paho-mqtt 2.x: with its lean receive path (`paho_fastpath`), the only
module that sees paho objects.

paho runs on the asyncio loop itself (no paho thread): its socket is watched with add_reader/add_writer
and its keepalive is driven by a timer, as in paho's own external-loop example. Incoming messages are
converted once into frozen `Message`s and handed to a plain callback on the loop thread, so the hot path
has no queue hop and no thread switch. Backpressure is explicit: `pause_reading()` stops reading the
socket (the broker holds the messages), `resume_reading()` starts again; nothing is dropped here.

Reconnection is ours, not paho's: capped exponential backoff with jitter, and the subscriptions are
made again on every connect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from hub.adapters.mqtt_reading import SocketReads
from hub.adapters.paho_fastpath import FastClient, drop_bad_topic, new_client
from hub.boundary import escape
from hub.pace import Backoff

log = logging.getLogger(__name__)

READ_BURST = 256  # messages read per socket-readiness callback: amortises the event loop's cost


@dataclass(slots=True)  # not frozen: one per message, and frozen construction costs 3.5x
class Message:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int = 0
    dup: bool = False  # the broker is sending this again (it was not acknowledged before)


@dataclass(frozen=True, slots=True)
class Will:
    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


RECONNECT_BACKOFF = Backoff(first_s=0.2, cap_s=4.0)  # jitter in [cap/2, cap]: back within ~4 s of the broker


class MqttClient:
    """One MQTT v5 connection driven by the running asyncio loop."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        on_message: Callable[[Message], None] | None = None,
        on_failure: Callable[[Message, Exception], None] | None = None,
        subscriptions: Iterable[tuple[str, int]] = (),
        will: Will | None = None,
        keepalive: int = 60,
        on_connect: Callable[[], None] | None = None,
        backoff: Backoff = RECONNECT_BACKOFF,
        protocol: str = "3.1.1",
        persistent: bool = False,
        manual_ack: bool = False,
        username: str | None = None,
        password: str | None = None,
        fast_path: bool = True,
        read_linger_s: float = 0.0,
        may_linger: Callable[[], bool] = lambda: True,
    ) -> None:
        """`fast_path=False`: stock paho's receive path even when the fast one passes its check (a baseline).
        `read_linger_s`: after a read of only a few messages, leave the socket alone that long, unless
        `may_linger()` says an answer is awaited (`hub.adapters.mqtt_reading`)."""
        self.host = host
        self.port = port
        self.client_id = client_id
        self._on_message_cb = on_message
        self._on_failure = on_failure
        self.handled = 0  # messages whose handler returned (the watchdog's "intake moves" signal)
        self.failures = 0  # handlers that raised (each counted, logged by on_failure, the message settled)
        self._on_connect_cb = on_connect
        self._subscriptions = list(subscriptions)
        self._keepalive = keepalive
        self._backoff = backoff
        self._loop: asyncio.AbstractEventLoop | None = None
        self.reads = SocketReads(self._read_burst, read_linger_s, may_linger)
        self._held = False
        self._received = 0
        self.connected = asyncio.Event()
        self.subscribed = asyncio.Event()  # the broker acknowledged this connection's subscriptions
        self._unacked: set[int] = set()  # our QoS 1 publishes not yet acknowledged by the broker
        self._acked = asyncio.Event()
        self._subscribe_mid: int | None = None
        self._disconnected = asyncio.Event()
        self._stopping = False
        self.connects = 0
        self.last_error = ""

        self._v5 = protocol == "5"
        version = MQTTProtocolVersion.MQTTv5 if self._v5 else MQTTProtocolVersion.MQTTv311
        self._persistent = persistent
        self._manual_ack = manual_ack
        # A persistent session keeps the hub's subscriptions and queues its QoS 1 messages while it is away;
        # with manual acks a message is acknowledged only when the hub says so (after the spool's fsync).
        client = new_client(
            self._deliver,
            Message,
            fast=fast_path,
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=version,
            clean_session=None if self._v5 else not persistent,
            manual_ack=manual_ack,
        )
        client.connect_timeout = 3.0
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message  # stock paho's way in (the fast path delivers to _deliver itself)
        client.on_subscribe = self._on_subscribe
        client.on_publish = self._on_publish
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_register_write
        client.on_socket_unregister_write = self._on_unregister_write
        if username is not None:
            client.username_pw_set(username, password)
        if will is not None:
            client.will_set(will.topic, will.payload, will.qos, will.retain)
        self._client = client

    # Lifecycle -------------------------------------------------------------------------------

    async def run(self) -> None:
        """Stay connected until cancelled or stop() is called."""
        self._loop = asyncio.get_running_loop()
        attempt = 0
        misc = asyncio.create_task(self._misc_loop(), name="mqtt-misc")  # never the client id: a secret
        try:
            while not self._stopping:
                self._disconnected.clear()
                connects_before = self.connects
                try:
                    self._connect()
                except OSError as err:
                    self.last_error = f"cannot reach broker {self.host}:{self.port}: {err}"
                else:
                    await self._disconnected.wait()
                if self._stopping:
                    break
                attempt = 0 if self.connects > connects_before else attempt + 1
                delay = self._backoff.delay(attempt)
                log.warning("MQTT: %s; reconnecting in %.1f s", self.last_error or "disconnected", delay)
                await asyncio.sleep(delay)
        finally:
            misc.cancel()
            self._client.loop_stop()

    def _connect(self) -> None:
        if self._v5:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = 7 * 86400 if self._persistent else 0
            self._client.connect(
                self.host, self.port, self._keepalive, clean_start=not self._persistent, properties=props
            )
        else:
            self._client.connect(self.host, self.port, self._keepalive)

    async def stop(self, timeout: float = 2.0) -> None:
        """Disconnect cleanly (no last will) and end run().

        QoS 1 messages still waiting for the broker's acknowledgement are waited for first (within
        `timeout`): closing a socket with unread acknowledgements in it makes the kernel reset the
        connection, and the broker then discards what it had not read yet.
        """
        self._stopping = True
        if self.connected.is_set():
            deadline = time.monotonic() + timeout
            while self._unacked and time.monotonic() < deadline and self.connected.is_set():
                self._acked.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                        await self._acked.wait()
            if self._unacked:
                log.warning("MQTT: disconnecting with %d messages not acknowledged", len(self._unacked))
            self._client.disconnect()
            try:
                async with asyncio.timeout(timeout):
                    await self._disconnected.wait()
            except TimeoutError:
                log.warning("MQTT: the broker did not confirm the disconnect")
        self._disconnected.set()

    def drop(self) -> None:
        """Lose the connection abruptly, as a board whose Wi-Fi dies does (the broker sends the last will)."""
        sock: Any = self._client.socket()
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    async def wait_connected(self, timeout: float) -> None:
        """Wait until connected and subscribed. Not asyncio.wait_for, here or for any event a task that is
        cancelled waits on: in Python 3.11 it swallows a cancellation that comes as the event is set."""
        async with asyncio.timeout(timeout):
            await self.subscribed.wait()

    # Publishing and flow control -------------------------------------------------------------

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False) -> bool:
        """Queue a message; False when there is no connection (QoS 0 messages are then not sent)."""
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        if qos and info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            self._unacked.add(info.mid)  # paho keeps it and sends it (again) until the broker acknowledges it
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a QoS 1 message received with manual acks (a no-op for QoS 0)."""
        if qos:
            self._client.ack(mid, qos)

    def _subscription_list(self, subs: list[tuple[str, int]]) -> list[tuple[str, Any]]:
        if self._v5:
            return [(t, SubscribeOptions(qos=q)) for t, q in subs]
        return list(subs)

    def pause_reading(self) -> None:
        self.reads.pause()

    def resume_reading(self) -> None:
        self.reads.resume()

    def read_now(self) -> None:
        """An answer is awaited (a command was sent): read as soon as it comes, no linger."""
        self.reads.read_now()

    @property
    def paused(self) -> bool:
        return self.reads.paused

    def hold(self, held: bool) -> None:
        """No reading, no pings while held: a board blocked in `delay()`, dropped after 1.5 × keepalive (firmware_sim)."""
        self._held = held
        (self.pause_reading if held else self.resume_reading)()

    def _is_paused(self) -> bool:
        return self.reads.paused

    def waiting(self) -> int:
        """Bytes received but not yet handled: the watchdog's "is anything waiting" signal."""
        return self.reads.waiting()

    # paho callbacks (all on the loop thread) ---------------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused the connection: {reason}"
            return
        self.connects += 1
        self.last_error = ""
        if self._subscriptions:
            _, self._subscribe_mid = client.subscribe(self._subscription_list(self._subscriptions))
        else:
            self.subscribed.set()
        log.info("connected to the broker at %s:%d", self.host, self.port)  # never the client id: a secret
        self.connected.set()
        if self._on_connect_cb is not None:
            self._on_connect_cb()

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if not self._stopping:
            self.last_error = f"connection lost ({reason})"
        self.connected.clear()
        self.subscribed.clear()
        self._disconnected.set()

    def _on_publish(self, client: paho.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._unacked.discard(mid)
        self._acked.set()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, props: Any) -> None:
        if mid == self._subscribe_mid:
            failed = [r for r in reasons if r.is_failure]
            if failed:
                log.error("MQTT: the broker refused subscriptions: %s", failed)
            self.subscribed.set()

    def _deliver(self, message: Message) -> None:
        """The last boundary before paho's read path: an exception escaping here would make paho handle the
        same packet again and again (its input state is reset only after the handler returns)."""
        self._received += 1
        if self._on_message_cb is None:
            return
        try:
            self._on_message_cb(message)
        except Exception as err:  # the handler has its own boundary; this one keeps paho's read path safe
            self.failures += 1
            if self._on_failure is not None:
                self._on_failure(message, err)
            else:
                log.error("a message on %s failed: %s", escape(message.topic, 120), escape(err))
            if message.qos and self._manual_ack:
                self._client.ack(message.mid, message.qos)  # settled: never redelivered forever
        self.handled += 1

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        """Stock paho's way in. It decodes the topic only when read, raising for one that is not UTF-8: such a
        message is dropped and settled as the fast path does, never raised into paho's read path."""
        try:
            topic = msg.topic
        except UnicodeDecodeError as err:
            drop_bad_topic(err.object)
            if msg.qos and self._manual_ack:
                client.ack(msg.mid, msg.qos)  # without manual acks, paho acknowledges it once this returns
            return
        self._deliver(Message(topic, bytes(msg.payload), msg.qos, msg.retain, msg.mid, bool(msg.dup)))

    def _on_socket_open(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # commands and acks are small: no Nagle delay
        assert self._loop is not None
        self.reads.open(self._loop, sock)

    def _on_socket_close(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        self.reads.close(sock)

    def _on_register_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.add_writer(sock, self._on_writable)

    def _on_unregister_write(self, client: paho.Client, userdata: Any, sock: Any) -> None:
        if self._loop is not None:
            self._loop.remove_writer(sock)

    def _read_burst(self) -> int:
        """Read up to READ_BURST messages (fewer when the socket is drained or intake pauses); how many."""
        client = self._client
        fast = client.read_publishes if isinstance(client, FastClient) else None
        start = self._received
        while not self.reads.paused:
            before = self._received
            if fast is not None:  # the plain PUBLISH frames already read, in one loop
                fast(start + READ_BURST - before, self._is_paused)
                if self.reads.paused or self._received - start >= READ_BURST:
                    break
            rc = client.loop_read()  # one packet through paho (reading the socket when the buffer is empty)
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._received == before or self._received - start >= READ_BURST:
                break
        return self._received - start

    def _on_writable(self) -> None:
        self._client.loop_write()

    async def _misc_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            if not self._held:
                self._client.loop_misc()
