"""Pipe writers and readers over a real AF_UNIX datagram socketpair and a real event loop."""

from __future__ import annotations

import asyncio
import socket

import pytest

from pyswoole import ipc
from pyswoole.constants import EventType
from pyswoole.loop import new_event_loop
from pyswoole.pipes import MAX_BATCH, PipeWriter, WorkerPipes, read_datagrams


@pytest.fixture
def pipe():
    pipes = WorkerPipes(1)
    yield pipes.master_ends[0], pipes.worker_ends[0]
    pipes.close()


def package(n: int, size: int = 8) -> bytes:
    return ipc.pack(EventType.RECV_DATA, n, 0, 0, 0.0, bytes([n % 256]) * size)


def queued_datagrams(sock: socket.socket) -> list[bytes]:
    datagrams = []
    while True:
        try:
            datagrams.append(sock.recv(ipc.MAX_DATAGRAM))
        except BlockingIOError:
            return datagrams


def write_in_one_pass(pipe: tuple[socket.socket, socket.socket], datagrams: list[bytes]) -> list[bytes]:
    """Write every datagram in one step of a loop; return what had been sent before the pass ended."""
    writer_end, reader_end = pipe
    loop = new_event_loop()

    async def step() -> list[bytes]:
        writer = PipeWriter(loop, writer_end)
        for datagram in datagrams:
            assert writer.write(datagram)
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


def test_a_batch_holds_at_most_max_batch_messages(pipe) -> None:
    messages = [package(n) for n in range(2 * MAX_BATCH + 1)]

    sent_during_the_pass = write_in_one_pass(pipe, messages)

    full_batches = [b"".join(messages[:MAX_BATCH]), b"".join(messages[MAX_BATCH:2 * MAX_BATCH])]
    assert sent_during_the_pass == full_batches
    assert queued_datagrams(pipe[1]) == [messages[-1]]


def test_a_message_too_big_for_the_batch_leaves_alone_and_in_order(pipe) -> None:
    small, big = package(1), package(2, size=ipc.MAX_PAYLOAD)

    sent_during_the_pass = write_in_one_pass(pipe, [small, big, small])

    assert sent_during_the_pass + queued_datagrams(pipe[1]) == [small, big, small]


def test_read_datagrams_takes_everything_queued_then_stops(pipe) -> None:
    master_end, worker_end = pipe
    for n in range(5):
        master_end.send(package(n) + package(n + 100))
    seen: list[int] = []

    count = read_datagrams(worker_end, ipc.Reassembler(), lambda message: seen.append(-1),
                           EventType.RECV_DATA, lambda fd, *rest: seen.append(fd))

    assert count == 5
    assert seen == [n + offset for n in range(5) for offset in (0, 100)]
    assert read_datagrams(worker_end, ipc.Reassembler(), seen.append) == 0  # nothing left, no error


def test_read_datagrams_takes_no_more_once_stopped(pipe) -> None:
    master_end, worker_end = pipe
    for n in range(4):
        master_end.send(package(n))
    seen: list[int] = []

    count = read_datagrams(worker_end, ipc.Reassembler(), lambda message: None, EventType.RECV_DATA,
                           lambda fd, *rest: seen.append(fd), stopped=lambda: len(seen) >= 2)

    assert (count, seen) == (2, [0, 1])
    assert len(queued_datagrams(worker_end)) == 2  # left for whoever reads next (a replacement worker)
