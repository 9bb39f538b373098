"""Frames: Swoole's numbers, encode_frame's wire format, pack and unpack as WebSocketServer exposes them."""

from __future__ import annotations

import struct
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.websocket import frames
from pyswoole.websocket.frames import (
    CLOSE_NORMAL,
    CLOSE_STATUS_ERROR,
    COMPRESS,
    FIN,
    MASK,
    RSV1,
    RSV2,
    RSV3,
    CloseFrame,
    Frame,
    InvalidClosePayload,
    Opcode,
    encode_frame,
    pack,
    pack_close,
    parse_close_payload,
    unpack,
)

KEY = b"\x37\xfa\x21\x3d"


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


def test_opcodes_are_rfc_6455s() -> None:
    assert [(op.name, op.value) for op in Opcode] == [
        ("CONTINUATION", 0),
        ("TEXT", 1),
        ("BINARY", 2),
        ("CLOSE", 8),
        ("PING", 9),
        ("PONG", 10),
    ]


def test_flags_are_swooles() -> None:
    # swoole-src include/swoole_websocket.h, enum swWebSocket_frame_flag
    assert (frames.FIN, frames.COMPRESS, frames.RSV1, frames.RSV2, frames.RSV3, frames.MASK) == (1, 2, 4, 8, 16, 32)


def test_close_codes_are_rfc_6455s() -> None:
    assert (frames.CLOSE_NORMAL, frames.CLOSE_GOING_AWAY, frames.CLOSE_PROTOCOL_ERROR, frames.CLOSE_DATA_ERROR) == (
        1000,
        1001,
        1002,
        1003,
    )
    assert (frames.CLOSE_MESSAGE_ERROR, frames.CLOSE_POLICY_ERROR, frames.CLOSE_MESSAGE_TOO_BIG) == (1007, 1008, 1009)
    assert (frames.CLOSE_SERVER_ERROR, frames.CLOSE_STATUS_ERROR, frames.CLOSE_ABNORMAL, frames.CLOSE_TLS) == (
        1011,
        1005,
        1006,
        1015,
    )


# ---- encode_frame ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x81\x00"),
        (125, b"\x81\x7d"),
        (126, b"\x81\x7e\x00\x7e"),
        (65535, b"\x81\x7e\xff\xff"),
        (65536, b"\x81\x7f" + struct.pack("!Q", 65536)),
    ],
)
def test_encode_frame_uses_the_7_16_or_64_bit_length(length: int, header: bytes) -> None:
    payload = b"a" * length
    assert encode_frame(Opcode.TEXT, payload) == header + payload


def test_encode_frame_sets_fin_and_rsv1_as_asked() -> None:
    assert encode_frame(Opcode.BINARY, b"x", fin=False)[:2] == b"\x02\x01"
    assert encode_frame(Opcode.CONTINUATION, b"x", fin=True)[:2] == b"\x80\x01"
    assert encode_frame(Opcode.TEXT, b"x", rsv1=True)[:2] == b"\xc1\x01"


@pytest.mark.parametrize(("length", "header"), [(5, b"\x82\x85"), (300, b"\x82\xfe\x01\x2c")])
def test_encode_frame_masks_with_the_given_key(length: int, header: bytes) -> None:
    payload = bytes(range(256)) * 2
    payload = payload[:length]
    assert encode_frame(Opcode.BINARY, payload, mask=KEY) == header + KEY + xor(payload, KEY)


def test_encode_frame_masks_a_64_bit_length_frame() -> None:
    payload = b"z" * 70000
    assert encode_frame(Opcode.BINARY, payload, mask=KEY)[:14] == b"\x82\xff" + struct.pack("!Q", 70000) + KEY


# ---- pack ---------------------------------------------------------------------------------------------------


def test_pack_picks_text_for_str_and_binary_for_bytes() -> None:
    assert pack("héllo") == b"\x81\x06" + "héllo".encode()
    assert pack(b"\x00\x01") == b"\x82\x02\x00\x01"


def test_pack_takes_an_opcode_and_flags() -> None:
    assert pack("ping!", Opcode.PING) == b"\x89\x05ping!"
    assert pack("part", Opcode.TEXT, flags=0) == b"\x01\x04part"
    assert pack(b"raw", Opcode.BINARY, flags=FIN | RSV1) == b"\xc2\x03raw"


def test_pack_with_compress_deflates_the_message_and_sets_rsv1() -> None:
    text = "compress me " * 20
    packed = pack(text, flags=FIN | COMPRESS)
    assert packed[0] == 0xC1
    assert len(packed) < len(text)
    inflated = zlib.decompressobj(-15).decompress(packed[2:] + b"\x00\x00\xff\xff")
    assert inflated == text.encode()


def test_pack_with_mask_masks_with_a_fresh_key() -> None:
    first, second = pack(b"secret", flags=FIN | MASK), pack(b"secret", flags=FIN | MASK)
    assert first[:2] == b"\x82\x86"
    assert xor(first[6:], first[2:6]) == b"secret"
    assert first[2:6] != second[2:6]


def test_pack_close_opcode_takes_data_as_the_reason_of_a_normal_close() -> None:
    assert pack("bye", Opcode.CLOSE) == b"\x88\x05\x03\xe8bye"


def test_pack_packs_a_close_frame_from_its_code_and_reason() -> None:
    assert pack(CloseFrame(code=4000, reason="done")) == b"\x88\x06\x0f\xa0done"


def test_pack_packs_a_frame_from_its_fields_finish_deciding_fin() -> None:
    assert pack(Frame(data="hi")) == b"\x81\x02hi"
    assert pack(Frame(data=b"hi", opcode=Opcode.BINARY, finish=False)) == b"\x02\x02hi"
    assert pack(Frame(data=b"hi", opcode=Opcode.CONTINUATION, flags=0, finish=True)) == b"\x80\x02hi"


@pytest.mark.parametrize(
    ("data", "opcode", "flags", "message"),
    [
        (b"x", 3, FIN, "unknown opcode"),
        (b"x", 11, FIN, "unknown opcode"),
        (b"x" * 126, Opcode.PING, FIN, "control frame"),
        (b"x", Opcode.PONG, 0, "control frame"),
        (b"x", Opcode.PING, FIN | COMPRESS, "compressed"),
        (b"x", Opcode.TEXT, COMPRESS, "compressed"),
        ("r" * 124, Opcode.CLOSE, FIN, "close reason"),
    ],
)
def test_pack_refuses_frames_that_break_the_rules(data: bytes, opcode: int, flags: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        pack(data, opcode, flags)


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_pack_close_refuses_a_code_that_may_not_be_sent(code: int) -> None:
    with pytest.raises(ValueError, match="may not be sent"):
        pack_close(code, "reason")


def test_pack_close_with_1005_sends_an_empty_close_as_it_was_received() -> None:
    assert pack_close(CLOSE_STATUS_ERROR) == b"\x88\x00"
    assert pack_close() == b"\x88\x02\x03\xe8"


# ---- unpack -------------------------------------------------------------------------------------------------


@given(st.one_of(st.text(max_size=300), st.binary(max_size=70000)), st.booleans())
def test_unpack_reads_back_what_pack_made(data: str | bytes, fin: bool) -> None:
    frame = unpack(pack(data, flags=FIN if fin else 0))
    assert type(frame) is Frame
    assert frame.data == data
    assert frame.opcode == (Opcode.TEXT if isinstance(data, str) else Opcode.BINARY)
    assert frame.flags == (FIN if fin else 0)
    assert frame.finish is fin


def test_unpack_unmasks_a_client_frame_and_reports_mask() -> None:
    frame = unpack(encode_frame(Opcode.TEXT, b"masked", mask=KEY))
    assert (frame.data, frame.flags) == ("masked", FIN | MASK)


def test_unpack_inflates_a_compressed_frame_and_reports_compress_instead_of_rsv1() -> None:
    frame = unpack(pack("deflated " * 10, flags=FIN | COMPRESS))
    assert (frame.data, frame.flags) == ("deflated " * 10, FIN | COMPRESS)


@pytest.mark.parametrize(
    ("first", "flags"), [(0xA2, FIN | frames.RSV2), (0x92, FIN | frames.RSV3), (0x32, RSV2 | RSV3)]
)
def test_unpack_reports_the_reserved_bits_as_swoole_flags(first: int, flags: int) -> None:
    assert unpack(bytes([first, 0])).flags == flags


def test_unpack_gives_a_close_frame_with_code_and_reason() -> None:
    frame = unpack(pack_close(1001, "going"))
    assert isinstance(frame, CloseFrame)
    assert (frame.opcode, frame.code, frame.reason, frame.data) == (Opcode.CLOSE, 1001, "going", b"\x03\xe9going")


def test_unpack_reads_an_empty_close_as_1005() -> None:
    frame = unpack(b"\x88\x00")
    assert isinstance(frame, CloseFrame)
    assert (frame.code, frame.reason) == (CLOSE_STATUS_ERROR, "")


def test_unpack_gives_control_payloads_as_bytes() -> None:
    frame = unpack(b"\x89\x02hi")
    assert (frame.opcode, frame.data) == (Opcode.PING, b"hi")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not a whole"),
        (b"\x81", "not a whole"),
        (b"\x81\x7e\x00", "not a whole"),
        (b"\x81\x85abc", "not a whole"),
        (b"\x81\x05hell", "not one whole"),
        (b"\x81\x05hello!", "not one whole"),
        (b"\x81\x05hellohello", "not one whole"),
        (b"\x83\x00", "unknown opcode"),
        (b"\x81\x02\xc3\x28", "not UTF-8"),
        (b"\x88\x01\x03", "1 byte"),
        (b"\x88\x02\x03\xed", "may not be sent"),
        (b"\x09\x00", "control frame"),
        (b"\xc2\x03abc", "does not inflate"),
    ],
)
def test_unpack_raises_value_error_for_anything_but_one_whole_sound_frame(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        unpack(data)


def test_unpack_stops_a_compressed_frame_past_max_size() -> None:
    with pytest.raises(ValueError, match="inflates past 1000"):
        unpack(pack(b"\x00" * 5000, flags=FIN | COMPRESS), max_size=1000)


# ---- close payloads and the Frame classes -------------------------------------------------------------------


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999])
def test_parse_close_payload_accepts_every_code_that_may_be_sent(code: int) -> None:
    assert parse_close_payload(struct.pack("!H", code) + "ré".encode()) == (code, "ré")


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535])
def test_parse_close_payload_refuses_codes_that_may_not_be_sent_with_1002(code: int) -> None:
    with pytest.raises(InvalidClosePayload) as raised:
        parse_close_payload(struct.pack("!H", code))
    assert raised.value.code == 1002


def test_parse_close_payload_refuses_a_reason_that_is_not_utf8_with_1007() -> None:
    with pytest.raises(InvalidClosePayload) as raised:
        parse_close_payload(b"\x03\xe8\xff")
    assert raised.value.code == 1007


def test_frame_defaults_are_swooles() -> None:
    assert Frame() == Frame(fd=0, data="", opcode=Opcode.TEXT, flags=FIN, finish=True)
    close = CloseFrame()
    assert isinstance(close, Frame)
    assert (close.opcode, close.code, close.reason, close.data) == (Opcode.CLOSE, CLOSE_NORMAL, "", b"")


def test_frames_are_mutable_like_swooles_so_an_application_can_fill_one_in() -> None:
    frame = Frame()
    frame.fd, frame.data = 7, "filled"
    assert (frame.fd, frame.data) == (7, "filled")
    with pytest.raises(AttributeError):
        frame.extra = 1  # type: ignore[attr-defined]
