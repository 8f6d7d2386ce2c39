"""When the hub reads its MQTT socket: a slow stream is read by a timer every linger, not per message; a full
read, a paused intake or an awaited answer never lingers. A real socket pair and the running loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from types import SimpleNamespace

import pytest

from hub.adapters import mqtt_reading
from hub.adapters.mqtt_reading import LINGER_BELOW, SocketReads

LINGER_S = 0.05


class Stream:
    """A socket pair: the broker's side writes messages of one byte; `read()` takes what has come."""

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.ours.setblocking(False)
        self.reads: list[int] = []  # messages handled by each read

    def read(self) -> int:
        try:
            got = len(self.ours.recv(65536))
        except BlockingIOError:
            got = 0
        self.reads.append(got)
        return got

    def send(self, n: int) -> None:
        self.theirs.sendall(b"m" * n)


@pytest.fixture
def stream() -> Iterator[Stream]:
    made = Stream()
    yield made
    made.ours.close()
    made.theirs.close()


async def until(check: Callable[[], bool], timeout: float = 2.0) -> None:
    """Poll a condition on the loop, in 1 ms steps (the reads under test are the loop's own callbacks)."""
    async with asyncio.timeout(timeout):
        while not check():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_a_slow_stream_is_read_once_per_linger(stream: Stream) -> None:
    reads = SocketReads(stream.read, LINGER_S, linger_from_per_s=0)
    reads.open(asyncio.get_running_loop(), stream.ours)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 1)  # the first message wakes the reader
    for _ in range(5):  # more come during the linger: nothing reads them until it ends
        stream.send(1)
    await asyncio.sleep(LINGER_S / 2)
    assert sum(stream.reads) == 1 and reads.lingers == 1
    await until(lambda: sum(stream.reads) == 6)
    assert stream.reads[-1] == 5  # all of them in one read
    await until(lambda: stream.reads[-1] == 0)  # the next linger's read found nothing: back to readiness
    stream.send(1)
    await until(lambda: sum(stream.reads) == 7, timeout=LINGER_S / 2)
    reads.close(stream.ours)


async def test_a_full_read_does_not_linger(stream: Stream) -> None:
    reads = SocketReads(stream.read, LINGER_S, linger_from_per_s=0)
    reads.open(asyncio.get_running_loop(), stream.ours)
    stream.send(LINGER_BELOW)
    await until(lambda: sum(stream.reads) == LINGER_BELOW)
    assert reads.lingers == 0
    stream.send(1)  # read at once: the socket is still watched
    await until(lambda: sum(stream.reads) == LINGER_BELOW + 1, timeout=LINGER_S / 2)
    reads.close(stream.ours)


async def test_no_linger_while_an_answer_is_awaited_and_sending_ends_one(stream: Stream) -> None:
    awaited = False
    reads = SocketReads(stream.read, LINGER_S, may_linger=lambda: not awaited, linger_from_per_s=0)
    reads.open(asyncio.get_running_loop(), stream.ours)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 1)
    assert reads.lingers == 1
    awaited = True
    reads.read_now()  # a command went out: its acknowledgement must not wait for the linger
    stream.send(1)
    await until(lambda: sum(stream.reads) == 2, timeout=LINGER_S / 2)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 3, timeout=LINGER_S / 2)
    assert reads.lingers == 1
    reads.close(stream.ours)


async def test_a_paused_intake_is_not_read_when_a_linger_ends(stream: Stream) -> None:
    reads = SocketReads(stream.read, LINGER_S, linger_from_per_s=0)
    reads.open(asyncio.get_running_loop(), stream.ours)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 1)
    reads.pause()  # backpressure during the linger
    stream.send(3)
    await asyncio.sleep(LINGER_S * 2)
    assert sum(stream.reads) == 1
    reads.resume()
    await until(lambda: sum(stream.reads) == 4, timeout=LINGER_S / 2)
    reads.close(stream.ours)


async def test_a_linger_ending_while_an_answer_is_awaited_does_not_linger_again(stream: Stream) -> None:
    awaited = False
    reads = SocketReads(stream.read, LINGER_S, may_linger=lambda: not awaited, linger_from_per_s=0)
    reads.open(asyncio.get_running_loop(), stream.ours)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 1)
    awaited = True  # (without read_now)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 2)  # read when the linger ends
    stream.send(1)
    await until(lambda: sum(stream.reads) == 3, timeout=LINGER_S / 2)
    assert reads.lingers == 1
    reads.close(stream.ours)


async def test_a_read_that_raises_at_the_end_of_a_linger_leaves_the_socket_watched(stream: Stream) -> None:
    """A bug in the read path must not stop intake for good: the reader is back, the next message is read."""
    calls = {"n": 0}

    def read() -> int:
        calls["n"] += 1
        if calls["n"] == 2:  # the read at the end of the first linger
            raise RuntimeError("a bug")
        return stream.read()

    loop = asyncio.get_running_loop()
    errors: list[object] = []
    loop.set_exception_handler(lambda _loop, context: errors.append(context.get("exception")))
    reads = SocketReads(read, LINGER_S, linger_from_per_s=0)
    reads.open(loop, stream.ours)
    stream.send(1)
    await until(lambda: sum(stream.reads) == 1)
    await until(lambda: bool(errors))
    stream.send(1)
    await until(lambda: sum(stream.reads) >= 2)
    loop.set_exception_handler(None)
    reads.close(stream.ours)


async def test_a_stream_slower_than_the_threshold_is_read_message_by_message(
    stream: Stream, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A classroom's trickle: each message read as it comes (its receipt time exact), no linger; once the
    counted rate passes the threshold, reads linger. The rate's clock is the test's."""
    clock = [0.0]
    monkeypatch.setattr(mqtt_reading, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(mqtt_reading, "RATE_WINDOW_S", 0.05)
    reads = SocketReads(stream.read, LINGER_S, linger_from_per_s=200)
    reads.open(asyncio.get_running_loop(), stream.ours)
    for n in range(1, 4):  # one message every 0.1 s: 10/s
        clock[0] = n / 10
        stream.send(1)
        await until(lambda n=n: sum(stream.reads) == n, timeout=LINGER_S / 2)  # at once, every time
    assert reads.lingers == 0 and reads.rate == pytest.approx(10)
    clock[0] = 0.31
    stream.send(30)  # the window is not over: the rate is still 10/s
    await until(lambda: sum(stream.reads) == 33)
    assert reads.lingers == 0
    clock[0] = 0.36
    stream.send(1)  # 31 messages in 0.06 s: 517/s
    await until(lambda: sum(stream.reads) == 34)
    assert reads.rate > 200 and reads.lingers == 1  # that read lingers
    reads.close(stream.ours)
