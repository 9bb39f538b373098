"""The IPC codec: datagrams in Swoole's DataHead layout, chunking, and reassembly."""

from __future__ import annotations

import random
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.constants import EventType
from pyswoole.ipc.codec import (
    FLAG_BEGIN,
    FLAG_CHUNK,
    FLAG_END,
    HEADER,
    HEADER_SIZE,
    MAX_DATAGRAM,
    IpcError,
    Message,
    Reassembler,
    encode,
    pack,
)


def native(value: int, size: int, signed: bool = False) -> bytes:
    return value.to_bytes(size, sys.byteorder, signed=signed)


HEADER_FIELDS = (
    "fd",
    "msg_id",
    "len",
    "reactor_id",
    "type",
    "flags",
    "server_fd",
    "ext_flags",
    "reserved",
    "time",
)


def header_fields(datagram: bytes) -> dict[str, int | float]:
    return dict(zip(HEADER_FIELDS, HEADER.unpack_from(datagram), strict=False))


def feed_all(reassembler: Reassembler, datagrams: list[bytes]) -> list[Message]:
    return [message for datagram in datagrams if (message := reassembler.feed(datagram)) is not None]


def test_header_is_40_bytes() -> None:
    assert HEADER.size == HEADER_SIZE == 40


def test_header_fields_sit_at_swoole_datahead_offsets() -> None:
    message = Message(
        EventType.PIPE_MESSAGE,
        fd=0x0102030405060708,
        reactor_id=-2,
        server_fd=0xBEEF,
        ext_flags=0x0102,
        time=1234.5,
        data=b"abc",
    )
    (datagram,) = encode(message, msg_id=0x1122334455667788)

    assert datagram[0:8] == native(0x0102030405060708, 8)
    assert datagram[8:16] == native(0x1122334455667788, 8)
    assert datagram[16:20] == native(3, 4)
    assert datagram[20:22] == native(-2, 2, signed=True)
    assert datagram[22] == EventType.PIPE_MESSAGE
    assert datagram[23] == 0
    assert datagram[24:26] == native(0xBEEF, 2)
    assert datagram[26:28] == native(0x0102, 2)
    assert datagram[28:32] == bytes(4)
    assert datagram[32:40] == struct.pack("=d", 1234.5)
    assert datagram[40:] == b"abc"


@pytest.mark.parametrize("event_type", list(EventType))
def test_small_message_of_every_event_type_round_trips(event_type: EventType) -> None:
    message = Message(event_type, fd=42, reactor_id=3, server_fd=7, ext_flags=2, time=1.25, data=b"payload")

    assert Reassembler().feed(encode(message, msg_id=1)[0]) == message


def test_zero_length_event_is_a_bare_header() -> None:
    (datagram,) = encode(Message(EventType.CLOSE, fd=9), msg_id=1)

    assert len(datagram) == HEADER_SIZE
    assert Reassembler().feed(datagram) == Message(EventType.CLOSE, fd=9)


def test_message_that_fits_travels_as_one_datagram_with_flags_zero() -> None:
    data = bytes(MAX_DATAGRAM - HEADER_SIZE)

    datagrams = encode(Message(EventType.RECV_DATA, data=data), msg_id=1)

    assert len(datagrams) == 1
    assert len(datagrams[0]) == MAX_DATAGRAM
    assert header_fields(datagrams[0])["flags"] == 0


def test_negative_reactor_id_survives_round_trip() -> None:
    message = Message(EventType.CLOSE, fd=5, reactor_id=-1)

    received = Reassembler().feed(encode(message, msg_id=1)[0])

    assert received is not None
    assert received.reactor_id == -1


@pytest.mark.parametrize(("size", "count"), [(100, 1), (101, 2), (200, 2), (201, 3), (300, 3), (301, 4)])
def test_payload_takes_ceil_size_over_chunk_payload_datagrams(size: int, count: int) -> None:
    max_datagram = HEADER_SIZE + 100

    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(size)), msg_id=1, max_datagram=max_datagram)

    assert len(datagrams) == count
    assert sum(len(datagram) - HEADER_SIZE for datagram in datagrams) == size
    assert all(len(datagram) <= max_datagram for datagram in datagrams)


def test_3_mib_payload_is_split_into_flagged_chunks_and_reassembled_intact() -> None:
    data = random.Random(3).randbytes(3 * 1024 * 1024)
    message = Message(EventType.RECV_DATA, fd=11, reactor_id=1, data=data)

    datagrams = encode(message, msg_id=77)

    assert len(datagrams) >= 48
    assert all(len(datagram) <= MAX_DATAGRAM for datagram in datagrams)
    headers = [header_fields(datagram) for datagram in datagrams]
    assert {header["len"] for header in headers} == {len(data)}
    assert headers[0]["flags"] == FLAG_CHUNK | FLAG_BEGIN
    assert {header["flags"] for header in headers[1:-1]} == {FLAG_CHUNK}
    assert headers[-1]["flags"] == FLAG_CHUNK | FLAG_END
    reassembler = Reassembler()
    assert [reassembler.feed(datagram) for datagram in datagrams[:-1]] == [None] * (len(datagrams) - 1)
    assert reassembler.pending == 1
    assert reassembler.feed(datagrams[-1]) == message
    assert reassembler.pending == 0


def test_interleaved_chunks_of_two_messages_reassemble_both() -> None:
    first = Message(EventType.RECV_DATA, fd=1, data=b"a" * 1000)
    second = Message(EventType.PIPE_MESSAGE, fd=2, reactor_id=4, data=b"b" * 700)
    first_datagrams = encode(first, msg_id=(100 << 32) | 1, max_datagram=140)
    second_datagrams = encode(second, msg_id=(200 << 32) | 1, max_datagram=140)
    interleaved = [d for pair in zip(first_datagrams, second_datagrams, strict=False) for d in pair]
    interleaved += first_datagrams[len(second_datagrams) :]

    received = feed_all(Reassembler(), interleaved)

    assert received == [second, first]


def test_single_chunk_flagged_begin_and_end_is_a_whole_message() -> None:
    # Swoole's reactor always chunks, so a small reactor->worker message carries CHUNK|BEGIN|END.
    datagram = HEADER.pack(3, 1, 2, 0, EventType.RECV_DATA, FLAG_CHUNK | FLAG_BEGIN | FLAG_END, 0, 0, 0, 0.0)

    reassembler = Reassembler()

    assert reassembler.feed(datagram + b"hi") == Message(EventType.RECV_DATA, fd=3, data=b"hi")
    assert reassembler.pending == 0


def test_continuation_chunk_with_unknown_msg_id_is_dropped_and_counted() -> None:
    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(300)), msg_id=5, max_datagram=140)
    reassembler = Reassembler()

    assert reassembler.feed(datagrams[1]) is None
    assert reassembler.feed(datagrams[-1]) is None
    assert reassembler.dropped == 2
    assert reassembler.pending == 0


def test_datagram_read_from_a_reused_buffer_is_copied_out() -> None:
    data = b"x" * 200
    buffer = bytearray(MAX_DATAGRAM)
    reassembler = Reassembler()
    received = []
    for datagram in [
        *encode(Message(EventType.RECV_DATA, data=data), msg_id=1, max_datagram=120),
        *encode(Message(EventType.RECV_DATA, data=data), msg_id=2),
    ]:
        buffer[: len(datagram)] = datagram
        message = reassembler.feed(memoryview(buffer)[: len(datagram)])
        buffer[:] = bytes(len(buffer))  # the next recv_into overwrites the buffer
        if message is not None:
            received.append(message.data)

    assert received == [data, data]


def test_new_begin_beyond_max_pending_evicts_the_oldest_partial() -> None:
    reassembler = Reassembler(max_pending=2)
    chunked = [
        encode(Message(EventType.RECV_DATA, fd=msg_id, data=bytes(200)), msg_id=msg_id, max_datagram=140)
        for msg_id in (1, 2, 3)
    ]
    for datagrams in chunked:
        reassembler.feed(datagrams[0])

    assert reassembler.pending == 2
    assert reassembler.dropped == 1
    assert reassembler.feed(chunked[0][1]) is None  # message 1 was evicted: its END is dropped too
    assert reassembler.dropped == 2
    assert [message.fd for message in feed_all(reassembler, chunked[1][1:] + chunked[2][1:])] == [2, 3]


def test_begin_reusing_a_pending_msg_id_replaces_the_stale_partial() -> None:
    stale = encode(Message(EventType.RECV_DATA, data=b"s" * 200), msg_id=9, max_datagram=140)
    fresh = Message(EventType.RECV_DATA, data=b"f" * 200)
    reassembler = Reassembler()
    reassembler.feed(stale[0])

    assert feed_all(reassembler, encode(fresh, msg_id=9, max_datagram=140)) == [fresh]
    assert reassembler.dropped == 1


def test_datagram_shorter_than_header_raises() -> None:
    (datagram,) = encode(Message(EventType.CLOSE), msg_id=1)

    with pytest.raises(IpcError):
        Reassembler().feed(datagram[: HEADER_SIZE - 1])


def test_truncated_payload_raises() -> None:
    (datagram,) = encode(Message(EventType.RECV_DATA, data=b"0123456789"), msg_id=1)

    with pytest.raises(IpcError):
        Reassembler().feed(datagram[:-1])


def test_message_announcing_more_than_max_message_raises() -> None:
    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(1001)), msg_id=1, max_datagram=540)

    with pytest.raises(IpcError):
        Reassembler(max_message=1000).feed(datagrams[0])


def test_chunks_carrying_more_than_the_announced_length_raise() -> None:
    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(300)), msg_id=1, max_datagram=140)
    reassembler = Reassembler()
    reassembler.feed(datagrams[0])

    with pytest.raises(IpcError):
        reassembler.feed(datagrams[1] + b"extra" * 60)
    assert reassembler.pending == 0


def test_end_chunk_before_the_announced_length_raises() -> None:
    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(300)), msg_id=1, max_datagram=140)
    reassembler = Reassembler()
    reassembler.feed(datagrams[0])

    with pytest.raises(IpcError):
        reassembler.feed(datagrams[-1])  # the middle chunk never arrived
    assert reassembler.pending == 0


def test_chunk_announcing_a_different_total_than_its_begin_raises() -> None:
    datagrams = encode(Message(EventType.RECV_DATA, data=bytes(300)), msg_id=1, max_datagram=140)
    other_total = encode(Message(EventType.RECV_DATA, data=bytes(301)), msg_id=1, max_datagram=140)
    reassembler = Reassembler()
    reassembler.feed(datagrams[0])

    with pytest.raises(IpcError):
        reassembler.feed(other_total[1])


@pytest.mark.parametrize("flags", [2, 32, 64, FLAG_BEGIN, FLAG_CHUNK | 2])
def test_pointer_and_inconsistent_flags_raise(flags: int) -> None:
    datagram = HEADER.pack(0, 1, 8, 0, EventType.RECV_DATA, flags, 0, 0, 0, 0.0) + bytes(8)

    with pytest.raises(IpcError):
        Reassembler().feed(datagram)


def test_encode_rejects_max_datagram_without_room_for_payload() -> None:
    with pytest.raises(ValueError):
        encode(Message(EventType.RECV_DATA, data=b"x"), msg_id=1, max_datagram=HEADER_SIZE)


def test_encode_rejects_field_out_of_range_for_its_c_type() -> None:
    with pytest.raises(ValueError):
        encode(Message(EventType.RECV_DATA, reactor_id=1 << 15), msg_id=1)


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 300 * 1024),
    seed=st.integers(0, 2**32),
    max_datagram=st.integers(100, 5000),
    event_type=st.sampled_from(EventType),
    reactor_id=st.integers(-(2**15), 2**15 - 1),
)
def test_any_payload_round_trips_through_encode_and_feed(
    size: int, seed: int, max_datagram: int, event_type: EventType, reactor_id: int
) -> None:
    message = Message(event_type, fd=seed, reactor_id=reactor_id, data=random.Random(seed).randbytes(size))
    datagrams = encode(message, msg_id=seed, max_datagram=max_datagram)

    assert all(len(datagram) <= max_datagram for datagram in datagrams)
    assert feed_all(Reassembler(), datagrams) == [message]


class Collector:
    """The two outlets of ``Reassembler.feed_batch``, recording what arrives in one list, in order."""

    def __init__(self) -> None:
        self.received: list[object] = []

    def message(self, message: Message) -> None:
        self.received.append(message)

    def hot(self, fd: int, reactor_id: int, server_fd: int, time: float, data: bytes) -> None:
        self.received.append(("hot", fd, reactor_id, server_fd, time, data))

    def feed(self, reassembler: Reassembler, datagram: bytes, hot_type: int = EventType.RECV_DATA) -> None:
        reassembler.feed_batch(datagram, self.message, hot_type, self.hot)


def test_pack_is_encode_of_a_small_message_with_msg_id_0() -> None:
    message = Message(EventType.SEND_DATA, fd=77, reactor_id=-1, server_fd=5, time=2.5, data=b"xyz")

    assert pack(EventType.SEND_DATA, 77, -1, 5, 2.5, b"xyz") == encode(message, msg_id=0)[0]


def test_a_batch_hands_on_every_message_in_order_the_hot_type_without_a_message_object() -> None:
    close = Message(EventType.CLOSE, fd=3, reactor_id=1, server_fd=4, ext_flags=1)
    batch = (
        pack(EventType.RECV_DATA, 1, 0, 4, 1.5, b"first")
        + encode(close, msg_id=0)[0]
        + pack(EventType.RECV_DATA, 2, 1, 4, 2.5, b"")
        + pack(EventType.RECV_DATA, 3, 0, 4, 3.5, b"third")
    )
    collector = Collector()

    collector.feed(Reassembler(), batch)

    assert collector.received == [
        ("hot", 1, 0, 4, 1.5, b"first"),
        close,
        ("hot", 2, 1, 4, 2.5, b""),
        ("hot", 3, 0, 4, 3.5, b"third"),
    ]


def test_without_a_hot_type_a_batch_gives_messages_only() -> None:
    collector = Collector()

    collector.feed(Reassembler(), pack(EventType.RECV_DATA, 1, 0, 4, 1.5, b"a") * 2, hot_type=-1)

    assert collector.received == [Message(EventType.RECV_DATA, 1, 0, 4, 0, 1.5, b"a")] * 2


def test_chunks_fed_as_batches_reassemble() -> None:
    data = random.Random(7).randbytes(1000)
    collector = Collector()
    reassembler = Reassembler()

    for datagram in encode(Message(EventType.RECV_DATA, fd=9, data=data), msg_id=5, max_datagram=300):
        collector.feed(reassembler, datagram)

    assert collector.received == [Message(EventType.RECV_DATA, fd=9, data=data)]


@pytest.mark.parametrize(
    ("tail", "error"),
    [
        (b"short", "trailing bytes"),
        (pack(EventType.RECV_DATA, 2, 0, 4, 0.0, b"cut short")[:-1], "announces 9 bytes"),
        (HEADER.pack(0, 1, 0, 0, EventType.RECV_DATA, FLAG_CHUNK | FLAG_BEGIN, 0, 0, 0, 0.0), "inside a batch"),
    ],
)
def test_a_bad_message_in_a_batch_raises_after_the_good_ones_before_it(tail: bytes, error: str) -> None:
    collector = Collector()

    with pytest.raises(IpcError, match=error):
        collector.feed(Reassembler(), pack(EventType.RECV_DATA, 1, 0, 4, 0.0, b"good") + tail)

    assert collector.received == [("hot", 1, 0, 4, 0.0, b"good")]


def datagram_with_header(msg_id: int, length: int, flags: int, payload: bytes) -> bytes:
    return HEADER.pack(0, msg_id, length, 0, EventType.RECV_DATA, flags, 0, 0, 0, 0.0) + payload


# Random bytes alone rarely reach the chunk logic, so also feed headers with few msg_ids and real flags.
header_like_datagrams = st.builds(
    datagram_with_header,
    msg_id=st.integers(0, 3),
    length=st.integers(0, 64),
    flags=st.sampled_from([0, FLAG_CHUNK, FLAG_CHUNK | FLAG_BEGIN, FLAG_CHUNK | FLAG_END, 28, 2, 255]),
    payload=st.binary(max_size=64),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=120), header_like_datagrams), max_size=20))
def test_arbitrary_datagrams_raise_nothing_but_ipc_error(datagrams: list[bytes]) -> None:
    reassembler = Reassembler(max_message=48, max_pending=2)
    for datagram in datagrams:
        try:
            result = reassembler.feed(datagram)
        except IpcError:
            continue
        assert result is None or isinstance(result, Message)
        assert reassembler.pending <= 2


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=120), header_like_datagrams), min_size=1, max_size=6))
def test_arbitrary_batches_raise_nothing_but_ipc_error(parts: list[bytes]) -> None:
    collector = Collector()
    try:
        collector.feed(Reassembler(max_message=48, max_pending=2), b"".join(parts))
    except IpcError:
        pass
    assert len(collector.received) <= len(b"".join(parts)) // HEADER_SIZE  # no message without its header
