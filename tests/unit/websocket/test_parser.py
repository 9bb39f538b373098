"""FrameParser: client frames in (masked, in any pieces), whole messages, control events and protocol errors out."""

from __future__ import annotations

import struct
import tracemalloc
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.websocket.deflate import PerMessageDeflate
from pyswoole.websocket.frames import Opcode, encode_frame
from pyswoole.websocket.parser import Close, Event, FrameParser, Message, Ping, Pong, ProtocolError

KEY = b"\x0f\xa5\x3c\x81"
TEXT, BINARY, CONTINUATION = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
CLOSE, PING, PONG = Opcode.CLOSE, Opcode.PING, Opcode.PONG


def client_frame(opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=KEY)


def raw_frame(first: int, payload: bytes) -> bytes:
    """A masked frame with any first byte (reserved bits, unknown opcodes) and a 7-bit length."""
    return bytes([first]) + client_frame(CONTINUATION, payload)[1:]


def feed_all(parser: FrameParser, *pieces: bytes) -> list[Event]:
    events: list[Event] = []
    for piece in pieces:
        events += parser.feed(piece)
    return events


def error_code(events: list[Event]) -> int | None:
    assert all(not isinstance(event, ProtocolError) for event in events[:-1])
    return events[-1].code if events and isinstance(events[-1], ProtocolError) else None


# ---- messages -----------------------------------------------------------------------------------------------


def test_a_masked_text_frame_is_a_text_message() -> None:
    assert FrameParser().feed(client_frame(TEXT, "héllo".encode())) == [Message(TEXT, "héllo", False)]


def test_a_masked_binary_frame_is_a_binary_message() -> None:
    assert FrameParser().feed(client_frame(BINARY, b"\x00\xff")) == [Message(BINARY, b"\x00\xff", False)]


@pytest.mark.parametrize("length", [0, 125, 126, 65535, 65536, 200_000])
def test_every_length_encoding_is_read(length: int) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert FrameParser().feed(client_frame(BINARY, payload)) == [Message(BINARY, payload, False)]


def test_a_frame_split_at_every_byte_gives_the_same_message() -> None:
    stream = client_frame(TEXT, b"x" * 300) + client_frame(PING, b"p")
    for cut in range(len(stream) + 1):
        events = feed_all(FrameParser(), stream[:cut], stream[cut:])
        assert events == [Message(TEXT, "x" * 300, False), Ping(b"p")]


def test_a_frame_fed_byte_by_byte_gives_the_message() -> None:
    stream = client_frame(BINARY, b"y" * 70000)
    parser = FrameParser()
    events = feed_all(parser, *(stream[index : index + 1] for index in range(len(stream))))
    assert events == [Message(BINARY, b"y" * 70000, False)]


def test_several_frames_in_one_read_give_every_event_in_order() -> None:
    stream = client_frame(TEXT, b"a") + client_frame(PONG, b"b") + client_frame(BINARY, b"c")
    assert FrameParser().feed(stream) == [Message(TEXT, "a", False), Pong(b"b"), Message(BINARY, b"c", False)]


def test_fragments_are_joined_into_one_message() -> None:
    stream = client_frame(BINARY, b"ab", fin=False) + client_frame(CONTINUATION, b"", fin=False)
    stream += client_frame(CONTINUATION, b"cd")
    assert FrameParser().feed(stream) == [Message(BINARY, b"abcd", False)]


def test_control_frames_between_fragments_are_delivered_in_place() -> None:
    stream = client_frame(TEXT, b"one ", fin=False) + client_frame(PING, b"1") + client_frame(PONG, b"2")
    stream += client_frame(CONTINUATION, b"two")
    assert FrameParser().feed(stream) == [Ping(b"1"), Pong(b"2"), Message(TEXT, "one two", False)]


def test_a_code_point_split_between_fragments_is_fine() -> None:
    encoded = "€uro".encode()
    stream = client_frame(TEXT, encoded[:1], fin=False) + client_frame(CONTINUATION, encoded[1:2], fin=False)
    stream += client_frame(CONTINUATION, encoded[2:])
    assert FrameParser().feed(stream) == [Message(TEXT, "€uro", False)]


def test_the_parser_serves_message_after_message() -> None:
    parser = FrameParser()
    for index in range(3):
        assert parser.feed(client_frame(TEXT, b"x", fin=False)) == []
        assert parser.feed(client_frame(CONTINUATION, str(index).encode())) == [Message(TEXT, f"x{index}", False)]


# ---- masking ------------------------------------------------------------------------------------------------


def test_an_unmasked_client_frame_is_a_protocol_error() -> None:
    assert FrameParser().feed(encode_frame(TEXT, b"plain")) == [ProtocolError(1002, "unmasked client frame")]


def test_the_client_side_parser_takes_unmasked_frames() -> None:
    parser = FrameParser(require_mask=False)
    assert parser.feed(encode_frame(TEXT, b"plain")) == [Message(TEXT, "plain", False)]


# ---- header rules -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("first", [0xC1, 0xA1, 0x91, 0xF2])
def test_reserved_bits_without_an_extension_are_a_protocol_error(first: int) -> None:
    assert error_code(FrameParser().feed(raw_frame(first, b"x"))) == 1002


@pytest.mark.parametrize("first", [0xA1, 0x91, 0xE1])
def test_rsv2_and_rsv3_are_a_protocol_error_even_with_deflate(first: int) -> None:
    assert error_code(FrameParser(deflate=PerMessageDeflate()).feed(raw_frame(first, b"x"))) == 1002


def test_rsv1_on_a_continuation_frame_is_a_protocol_error() -> None:
    parser = FrameParser(deflate=PerMessageDeflate())
    compressed = PerMessageDeflate().compress(b"hello")
    stream = client_frame(TEXT, compressed[:2], fin=False, rsv1=True) + raw_frame(0xC0, compressed[2:])
    assert error_code(parser.feed(stream)) == 1002


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_rsv1_on_a_control_frame_is_a_protocol_error(opcode: int) -> None:
    parser = FrameParser(deflate=PerMessageDeflate())
    assert error_code(parser.feed(raw_frame(0xC0 | opcode, b""))) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
def test_an_unknown_opcode_is_a_protocol_error(opcode: int) -> None:
    assert FrameParser().feed(raw_frame(0x80 | opcode, b"")) == [ProtocolError(1002, f"unknown opcode {opcode}")]


def test_a_control_frame_over_125_bytes_is_a_protocol_error() -> None:
    assert error_code(FrameParser().feed(client_frame(PING, b"p" * 126))) == 1002
    assert FrameParser().feed(client_frame(PING, b"p" * 125)) == [Ping(b"p" * 125)]


@pytest.mark.parametrize("opcode", [PING, PONG, CLOSE])
def test_a_fragmented_control_frame_is_a_protocol_error(opcode: int) -> None:
    assert error_code(FrameParser().feed(client_frame(opcode, b"", fin=False))) == 1002


def test_a_continuation_without_a_message_is_a_protocol_error() -> None:
    assert FrameParser().feed(client_frame(CONTINUATION, b"x")) == [
        ProtocolError(1002, "continuation frame without a message")
    ]


@pytest.mark.parametrize("opcode", [TEXT, BINARY])
def test_a_new_message_inside_a_fragmented_one_is_a_protocol_error(opcode: int) -> None:
    stream = client_frame(TEXT, b"a", fin=False) + client_frame(opcode, b"b")
    assert FrameParser().feed(stream) == [ProtocolError(1002, "new message inside a fragmented one")]


def test_a_64_bit_length_with_its_top_bit_set_is_a_protocol_error() -> None:
    header = b"\x82\xff" + struct.pack("!Q", 1 << 63)
    assert error_code(FrameParser(max_message_size=2**64).feed(header)) == 1002


def test_a_header_error_is_found_before_the_payload_arrives() -> None:
    assert error_code(FrameParser().feed(b"\x81\x05")) == 1002  # unmasked: the rest never needed


# ---- UTF-8 --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload", [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"ok\xe2\x82", b"\xf4\x90\x80\x80"])
def test_a_text_message_that_is_not_utf8_is_error_1007(payload: bytes) -> None:
    assert FrameParser().feed(client_frame(TEXT, payload)) == [ProtocolError(1007, "text message is not UTF-8")]


def test_bad_utf8_in_a_first_fragment_fails_before_the_message_ends() -> None:
    assert error_code(FrameParser().feed(client_frame(TEXT, b"ok \xff", fin=False))) == 1007


def test_bad_utf8_in_a_middle_fragment_fails_before_the_message_ends() -> None:
    stream = client_frame(TEXT, b"ok", fin=False) + client_frame(CONTINUATION, b"\xc3(", fin=False)
    assert error_code(FrameParser().feed(stream)) == 1007


def test_a_code_point_cut_off_at_the_end_of_a_fragmented_message_is_error_1007() -> None:
    stream = client_frame(TEXT, b"ok", fin=False) + client_frame(CONTINUATION, "€".encode()[:2])
    assert error_code(FrameParser().feed(stream)) == 1007


def test_binary_messages_are_not_checked_for_utf8() -> None:
    assert FrameParser().feed(client_frame(BINARY, b"\xff")) == [Message(BINARY, b"\xff", False)]


# ---- sizes --------------------------------------------------------------------------------------------------


def test_a_message_over_max_size_is_refused_from_its_header_alone() -> None:
    header = client_frame(BINARY, b"x" * 1001)[:8]
    assert FrameParser(max_message_size=1000).feed(header) == [ProtocolError(1009, "message over 1000 bytes")]


def test_a_message_of_exactly_max_size_is_accepted() -> None:
    assert FrameParser(max_message_size=1000).feed(client_frame(BINARY, b"x" * 1000))[0] == Message(
        BINARY, b"x" * 1000, False
    )


def test_fragments_adding_up_past_max_size_are_error_1009() -> None:
    parser = FrameParser(max_message_size=1000)
    assert parser.feed(client_frame(BINARY, b"x" * 600, fin=False)) == []
    assert error_code(parser.feed(client_frame(CONTINUATION, b"x" * 401)[:8])) == 1009


def test_control_frames_do_not_count_towards_the_message_size() -> None:
    parser = FrameParser(max_message_size=10)
    stream = (
        client_frame(TEXT, b"x" * 5, fin=False) + client_frame(PING, b"p" * 100) + client_frame(CONTINUATION, b"y" * 5)
    )
    assert parser.feed(stream) == [Ping(b"p" * 100), Message(TEXT, "xxxxxyyyyy", False)]


def test_a_compressed_message_inflating_past_max_size_is_error_1009() -> None:
    deflate = PerMessageDeflate()
    parser = FrameParser(max_message_size=10_000, deflate=deflate)
    stream = client_frame(BINARY, deflate.compress(bytes(10_001)), rsv1=True)
    assert parser.feed(stream) == [ProtocolError(1009, "message inflates over 10000 bytes")]


def test_empty_fragments_without_end_hold_no_memory() -> None:
    parser = FrameParser()
    parser.feed(client_frame(BINARY, b"start", fin=False))
    empty = client_frame(CONTINUATION, b"", fin=False) * 1000
    tracemalloc.start()
    try:
        for _ in range(20):
            assert parser.feed(empty) == []
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 10_000


def test_a_large_frame_in_small_pieces_is_buffered_once() -> None:
    payload = bytes(1_000_000)
    stream = client_frame(BINARY, payload)
    pieces = [stream[start : start + 1000] for start in range(0, len(stream), 1000)]
    parser = FrameParser()
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            assert parser.feed(piece) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1_300_000
    assert parser.feed(pieces[-1]) == [Message(BINARY, payload, False)]


def test_a_frame_trickling_in_byte_by_byte_costs_its_bytes_not_an_object_each() -> None:
    stream = client_frame(BINARY, bytes(100_000))
    pieces = [stream[index : index + 1] for index in range(len(stream))]
    parser = FrameParser()
    tracemalloc.start()
    try:
        for piece in pieces[:-1]:
            parser.feed(piece)
        current, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert current < 200_000
    assert parser.feed(pieces[-1]) == [Message(BINARY, bytes(100_000), False)]


# ---- close --------------------------------------------------------------------------------------------------


def test_a_close_frame_is_a_close_event_with_code_and_reason() -> None:
    assert FrameParser().feed(client_frame(CLOSE, b"\x03\xe8bye")) == [Close(1000, "bye")]


def test_an_empty_close_frame_reports_1005() -> None:
    assert FrameParser().feed(client_frame(CLOSE, b"")) == [Close(1005, "")]


def test_a_one_byte_close_payload_is_a_protocol_error() -> None:
    assert error_code(FrameParser().feed(client_frame(CLOSE, b"\x03"))) == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_a_close_code_that_may_not_be_sent_is_a_protocol_error(code: int) -> None:
    assert error_code(FrameParser().feed(client_frame(CLOSE, struct.pack("!H", code)))) == 1002


def test_a_close_reason_that_is_not_utf8_is_error_1007() -> None:
    assert error_code(FrameParser().feed(client_frame(CLOSE, b"\x03\xe8\xc3"))) == 1007


def test_nothing_is_read_after_a_close_frame() -> None:
    parser = FrameParser()
    assert parser.feed(client_frame(CLOSE, b"") + client_frame(TEXT, b"late")) == [Close(1005, "")]
    assert parser.feed(client_frame(TEXT, b"later")) == []


def test_nothing_is_read_after_a_protocol_error() -> None:
    parser = FrameParser()
    assert error_code(parser.feed(encode_frame(TEXT, b"unmasked") + client_frame(TEXT, b"ok"))) == 1002
    assert parser.feed(client_frame(TEXT, b"ok")) == []


# ---- permessage-deflate -------------------------------------------------------------------------------------


def test_a_compressed_message_is_inflated_and_marked() -> None:
    deflate = PerMessageDeflate()
    stream = client_frame(TEXT, deflate.compress(b"squeezed " * 5), rsv1=True)
    assert FrameParser(deflate=deflate).feed(stream) == [Message(TEXT, "squeezed " * 5, True)]


def test_a_fragmented_compressed_message_is_inflated_whole() -> None:
    deflate = PerMessageDeflate()
    compressed = deflate.compress(b"fragmented and compressed")
    stream = client_frame(BINARY, compressed[:3], fin=False, rsv1=True) + client_frame(PING, b"")
    stream += client_frame(CONTINUATION, compressed[3:])
    assert FrameParser(deflate=deflate).feed(stream) == [Ping(b""), Message(BINARY, b"fragmented and compressed", True)]


def test_an_uncompressed_message_on_a_deflate_connection_is_read_as_is() -> None:
    parser = FrameParser(deflate=PerMessageDeflate())
    assert parser.feed(client_frame(TEXT, b"plain")) == [Message(TEXT, "plain", False)]


def test_a_compressed_message_that_does_not_inflate_is_error_1007() -> None:
    parser = FrameParser(deflate=PerMessageDeflate())
    assert error_code(parser.feed(client_frame(BINARY, b"\xff\xff\xff", rsv1=True))) == 1007


def test_compressed_text_that_inflates_to_bad_utf8_is_error_1007() -> None:
    deflate = PerMessageDeflate()
    assert (
        error_code(FrameParser(deflate=deflate).feed(client_frame(TEXT, deflate.compress(b"\xff"), rsv1=True))) == 1007
    )


# ---- the round-trip property --------------------------------------------------------------------------------

control_events = st.one_of(
    st.binary(max_size=125).map(Ping),
    st.binary(max_size=125).map(Pong),
)
messages = st.tuples(
    st.one_of(st.text(max_size=200), st.binary(max_size=200)),
    st.booleans(),  # compressed, when the connection has deflate
    st.lists(st.integers(min_value=0, max_value=250), max_size=4),  # fragment cut points
    st.lists(control_events, max_size=3),  # control frames, spread between the fragments
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.one_of(messages, control_events), max_size=8),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=5000), max_size=12),
    st.one_of(st.none(), st.tuples(st.integers(min_value=1000, max_value=1003), st.text(max_size=20))),
)
def test_any_valid_stream_in_any_pieces_gives_back_its_messages_and_control_events(
    items: list[tuple[str | bytes, bool, list[int], list[Ping | Pong]] | Ping | Pong],
    with_deflate: bool,
    read_cuts: list[int],
    close: tuple[int, str] | None,
) -> None:
    deflate = PerMessageDeflate() if with_deflate else None
    stream = b""
    expected: list[Event] = []
    for item in items:
        if isinstance(item, Ping | Pong):
            stream += client_frame(PING if isinstance(item, Ping) else PONG, item.payload)
            expected.append(item)
            continue
        data, compress, cuts, controls = item
        opcode = TEXT if isinstance(data, str) else BINARY
        payload = data.encode() if isinstance(data, str) else data
        compressed = compress and deflate is not None
        if compressed:
            assert deflate is not None
            payload = deflate.compress(payload)
        bounds = [0, *sorted(cut for cut in cuts if cut < len(payload)), len(payload)]
        fragments = [payload[start:stop] for start, stop in pairwise(bounds)]
        for index, fragment in enumerate(fragments):
            last = index == len(fragments) - 1
            stream += client_frame(opcode if index == 0 else CONTINUATION, fragment, last, compressed and index == 0)
            if not last and index < len(controls):
                control = controls[index]
                stream += client_frame(PING if isinstance(control, Ping) else PONG, control.payload)
                expected.append(control)
        expected.append(Message(opcode, data, compressed))
    if close is not None:
        stream += client_frame(CLOSE, struct.pack("!H", close[0]) + close[1].encode())
        expected.append(Close(*close))
    reads = [0, *sorted(cut for cut in read_cuts if cut < len(stream)), len(stream)]
    parser = FrameParser(deflate=deflate)
    assert feed_all(parser, *(stream[start:stop] for start, stop in pairwise(reads))) == expected
