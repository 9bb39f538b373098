"""Open files passed over a real file channel (an AF_UNIX datagram socketpair of WorkerPipes) with SCM_RIGHTS."""

from __future__ import annotations

import array
import os
import socket

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.ipc import codec
from pyswoole.ipc.files import UNCLAIMED_KEPT, FileInbox, new_token, pass_file
from pyswoole.ipc.pipes import WorkerPipes


@pytest.fixture
def channel():
    pipes = WorkerPipes(1, 0, reactor_num=2)
    inbox = FileInbox(pipes.file_readers[1])
    yield pipes.file_writers[1], inbox
    inbox.close()
    pipes.close()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def opened(path, data: bytes) -> int:
    path.write_bytes(data)
    return os.open(path, os.O_RDONLY)


def test_a_passed_file_is_read_whole_after_its_path_is_deleted_and_the_sender_closed_it(channel, tmp_path):
    writer, inbox = channel
    path = tmp_path / "f"
    fd = opened(path, b"the contents")
    token = new_token()

    assert pass_file(writer, token, fd)
    os.close(fd)
    path.unlink()
    claimed = inbox.claim(token)

    assert claimed >= 0
    assert os.pread(claimed, 100, 0) == b"the contents"
    os.close(claimed)


def test_files_are_claimed_by_token_in_any_order(channel, tmp_path):
    writer, inbox = channel
    tokens = [new_token() for _ in range(3)]
    for n, token in enumerate(tokens):
        fd = opened(tmp_path / str(n), b"file %d" % n)
        assert pass_file(writer, token, fd)
        os.close(fd)

    for n in (2, 0, 1):  # the first claim reads past the other two and keeps them
        claimed = inbox.claim(tokens[n])
        assert os.pread(claimed, 100, 0) == b"file %d" % n
        os.close(claimed)
    assert inbox.claim(tokens[0]) == -1  # a token is claimed once


def test_a_token_never_passed_is_minus_one_and_reads_nothing_else(channel):
    _, inbox = channel
    assert inbox.claim(new_token()) == -1


def test_a_datagram_without_one_descriptor_is_dropped_and_its_descriptors_closed(channel, tmp_path):
    writer, inbox = channel
    before = open_fds()
    fd = opened(tmp_path / "f", b"x")
    writer.sendmsg([b"short"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    writer.send(b"12345678")  # a token without a descriptor
    os.close(fd)
    token = new_token()
    fd = opened(tmp_path / "g", b"kept")
    assert pass_file(writer, token, fd)
    os.close(fd)

    claimed = inbox.claim(token)

    assert os.pread(claimed, 10, 0) == b"kept"
    os.close(claimed)
    assert open_fds() == before  # the stray descriptor was closed


def test_unclaimed_files_are_bounded_and_the_oldest_closed_first(channel, tmp_path):
    writer, inbox = channel
    before = open_fds()
    path = tmp_path / "f"
    path.write_bytes(b"x")
    first = new_token()
    for n in range(UNCLAIMED_KEPT + 1):
        fd = os.open(path, os.O_RDONLY)
        assert pass_file(writer, first if n == 0 else new_token(), fd)
        os.close(fd)
        if n % 100 == 99:
            assert inbox.claim(new_token()) == -1  # read them in (the channel's queue is short)
    assert inbox.claim(new_token()) == -1

    assert open_fds() == before + UNCLAIMED_KEPT
    assert inbox.claim(first) == -1  # the oldest was closed to make room
    inbox.close()
    assert open_fds() == before


def test_passing_to_a_closed_channel_is_false_not_an_error(tmp_path):
    pipes = WorkerPipes(1, 0, reactor_num=1)
    writer = pipes.file_writers[0]
    pipes.file_readers[0].close()
    fd = opened(tmp_path / "f", b"x")
    try:
        assert not pass_file(writer, new_token(), fd)
    finally:
        os.close(fd)
        pipes.close()


def test_the_sendfile_payload_carries_the_token():
    payload = codec.pack_sendfile("/tmp/é file", 7, 100, 2**64 - 1)

    assert codec.unpack_sendfile(payload) == ("/tmp/é file", 7, 100, 2**64 - 1)
    with pytest.raises(codec.IpcError):
        codec.unpack_sendfile(payload[:24])


@settings(max_examples=150, deadline=None)
@given(
    datagrams=st.lists(st.tuples(st.binary(max_size=20), st.integers(0, 3)), max_size=12), claim_at=st.integers(0, 11)
)
def test_arbitrary_datagrams_never_raise_lose_a_passed_file_or_leak_a_descriptor(tmp_path_factory, datagrams, claim_at):
    """Whatever else the channel carries (any bytes, zero to three descriptors each), a file passed with its
    token is claimed, and every other descriptor is kept for its token or closed."""
    pipes = WorkerPipes(1, 0, reactor_num=1)
    writer, inbox = pipes.file_writers[0], FileInbox(pipes.file_readers[0])
    path = tmp_path_factory.mktemp("f") / "f"
    path.write_bytes(b"wanted")
    before = open_fds()
    token = new_token()
    try:
        for n, (data, count) in enumerate(datagrams):
            if n == claim_at:
                fd = os.open(path, os.O_RDONLY)
                assert pass_file(writer, token, fd)
                os.close(fd)
            fds = [os.open(os.devnull, os.O_RDONLY) for _ in range(count)]
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            writer.sendmsg([data], ancillary)
            for fd in fds:
                os.close(fd)
        if claim_at >= len(datagrams):
            fd = os.open(path, os.O_RDONLY)
            assert pass_file(writer, token, fd)
            os.close(fd)

        claimed = inbox.claim(token)
        assert os.pread(claimed, 10, 0) == b"wanted"
        os.close(claimed)
        inbox.claim(new_token())  # reads the rest
        inbox.close()
        assert open_fds() == before
    finally:
        pipes.close()
