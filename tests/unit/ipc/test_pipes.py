"""Pipe writers and readers over a real AF_UNIX datagram socketpair and a real event loop."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pyswoole.constants import EventType
from pyswoole.ipc import codec
from pyswoole.ipc.pipes import MAX_BATCH, MAX_QUEUED_BYTES, PipeWriter, WorkerPipes, read_datagrams
from pyswoole.runtime.loop import new_event_loop


@pytest.fixture
def pipe():
    pipes = WorkerPipes(1)
    yield pipes.master_ends[0], pipes.worker_ends[0]
    pipes.close()


def package(n: int, size: int = 8) -> bytes:
    return codec.pack(EventType.RECV_DATA, n, 0, 0, 0.0, bytes([n % 256]) * size)


def queued_datagrams(sock: socket.socket) -> list[bytes]:
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(codec.MAX_DATAGRAM))
        except BlockingIOError:
            return datagrams


def write_in_one_pass(
    pipe: tuple[socket.socket, socket.socket], messages: list[bytes | list[bytes]], eager: bool = False
) -> list[bytes]:
    """Write every message (one datagram, or a chunked message's list) in one step of a loop; return what had
    been sent before the pass ended."""
    writer_end, reader_end = pipe
    loop = new_event_loop()

    async def step() -> list[bytes]:
        writer = PipeWriter(loop, writer_end, eager)
        for message in messages:
            assert writer.write(message) if isinstance(message, bytes) else writer.write_all(message)
        sent_during_the_pass = queued_datagrams(reader_end)
        await asyncio.sleep(0)  # the pass ends
        return sent_during_the_pass

    try:
        return loop.run_until_complete(step())
    finally:
        loop.close()


def test_the_messages_of_one_pass_leave_together_at_its_end(pipe) -> None:
    messages = [package(n) for n in range(3)]

    assert write_in_one_pass(pipe, messages) == []
    assert queued_datagrams(pipe[1]) == [b"".join(messages)]


def test_an_eager_writer_sends_the_first_message_of_a_pass_at_once_and_batches_the_rest(pipe) -> None:
    messages = [package(n) for n in range(3)]

    assert write_in_one_pass(pipe, messages, eager=True) == [messages[0]]
    assert queued_datagrams(pipe[1]) == [messages[1] + messages[2]]


def test_a_chunked_message_leaves_after_what_was_batched_before_it(pipe) -> None:
    small = package(1)
    chunks = codec.encode(codec.Message(EventType.SEND_DATA, fd=2, data=bytes(3 * codec.MAX_PAYLOAD)), msg_id=9)

    sent_during_the_pass = write_in_one_pass(pipe, [small, chunks, small])

    assert len(chunks) > 1
    assert sent_during_the_pass + queued_datagrams(pipe[1]) == [small, *chunks, small]


def test_a_writer_whose_reader_is_far_behind_refuses_at_once_and_keeps_what_it_accepted(pipe) -> None:
    writer_end, reader_end = pipe
    loop = new_event_loop()
    message = package(1, size=30_000)

    async def fill_then_drain() -> tuple[int, int]:
        writer = PipeWriter(loop, writer_end)
        accepted = 0
        while writer.write(message):  # nobody reads: the kernel's queue fills, then the writer's own
            accepted += 1
            assert accepted * len(message) < 2 * MAX_QUEUED_BYTES, "never refused"
        received = 0
        deadline = loop.time() + 10
        while received < accepted and loop.time() < deadline:  # now read: the writer's queue drains
            await asyncio.sleep(0)
            for datagram in queued_datagrams(reader_end):
                received += len(datagram) // len(message)
        return accepted, received

    try:
        accepted, received = loop.run_until_complete(fill_then_drain())
    finally:
        loop.close()
    assert accepted * len(message) > MAX_QUEUED_BYTES - codec.MAX_DATAGRAM  # refused only once the queue was full
    assert received == accepted


def test_a_batch_holds_at_most_max_batch_messages(pipe) -> None:
    messages = [package(n) for n in range(2 * MAX_BATCH + 1)]

    sent_during_the_pass = write_in_one_pass(pipe, messages)

    full_batches = [b"".join(messages[:MAX_BATCH]), b"".join(messages[MAX_BATCH : 2 * MAX_BATCH])]
    assert sent_during_the_pass == full_batches
    assert queued_datagrams(pipe[1]) == [messages[-1]]


def test_a_message_too_big_for_the_batch_leaves_alone_and_in_order(pipe) -> None:
    small, big = package(1), package(2, size=codec.MAX_PAYLOAD)

    sent_during_the_pass = write_in_one_pass(pipe, [small, big, small])

    assert sent_during_the_pass + queued_datagrams(pipe[1]) == [small, big, small]


def test_read_datagrams_takes_everything_queued(pipe) -> None:
    master_end, worker_end = pipe
    for n in range(5):
        master_end.send(package(n) + package(n + 100))
    seen: list[int] = []

    count = read_datagrams(
        worker_end,
        codec.Reassembler(),
        lambda message: seen.append(-1),
        EventType.RECV_DATA,
        lambda fd, *rest: seen.append(fd),
    )

    assert count == 5
    assert seen == [n + offset for n in range(5) for offset in (0, 100)]
    assert read_datagrams(worker_end, codec.Reassembler(), seen.append) == 0  # nothing left, no error


def test_read_datagrams_takes_no_more_once_stopped(pipe) -> None:
    master_end, worker_end = pipe
    for n in range(4):
        master_end.send(package(n))
    seen: list[int] = []

    count = read_datagrams(
        worker_end,
        codec.Reassembler(),
        lambda message: None,
        EventType.RECV_DATA,
        lambda fd, *rest: seen.append(fd),
        stopped=lambda: len(seen) >= 2,
    )

    assert (count, seen) == (2, [0, 1])
    assert len(queued_datagrams(worker_end)) == 2  # left for whoever reads next (a replacement worker)
