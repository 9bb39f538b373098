"""Framing: reads in, packages out, by Swoole's EOF, length and length-function rules."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyswoole.constants import ErrorCode, Mode
from pyswoole.protocol.framing import (
    LENGTH_FUNC_WINDOW,
    EofCheckFramer,
    EofSplitFramer,
    Framer,
    FramingError,
    FuncFramer,
    LengthFramer,
    framer_for,
)
from pyswoole.settings import PACKAGE_LENGTH_TYPES, resolve

CRLF2 = b"\r\n\r\n"
MAX = 2 * 2**20
SIGNED_CODES = ("c", "s", "i", "l", "q")


def length_package(code: str, length_offset: int, body_offset: int, body: bytes) -> bytes:
    """A package whose length field (``code`` at ``length_offset``) says ``total - body_offset``."""
    field = struct.Struct(PACKAGE_LENGTH_TYPES[code])
    header_size = length_offset + field.size
    filler = b"\xbb" * max(0, body_offset - header_size)
    total = header_size + len(filler) + len(body)
    return b"\xaa" * length_offset + field.pack(total - body_offset) + filler + body


def feed_in_reads(framer: Framer, stream: bytes, cuts: list[int]) -> list[bytes]:
    packages: list[bytes] = []
    bounds = [0, *sorted(cuts), len(stream)]
    for start, stop in zip(bounds, bounds[1:], strict=False):
        packages += framer.feed(stream[start:stop])
    return packages


def two_byte_length(data: bytes) -> int:
    """A package_length_func: a 2-byte big-endian body length, then the body; 0xFFFF is malformed."""
    if len(data) < 2:
        return 0
    (length,) = struct.unpack_from(">H", data)
    return -1 if length == 0xFFFF else 2 + length


# ---- open_eof_split ----------------------------------------------------------------------------------------


def test_eof_split_cuts_one_read_holding_three_packages_into_three() -> None:
    framer = EofSplitFramer(CRLF2, MAX)

    packages = framer.feed(b"one\r\n\r\ntwo\r\n\r\nthree\r\n\r\n")

    assert packages == [b"one\r\n\r\n", b"two\r\n\r\n", b"three\r\n\r\n"]
    assert framer.buffered == 0


def test_eof_split_returns_a_read_that_is_exactly_one_package_without_copying_it() -> None:
    data = b"ping" + CRLF2

    (package,) = EofSplitFramer(CRLF2, MAX).feed(data)

    assert package is data


def test_eof_split_keeps_an_incomplete_tail_for_the_next_read() -> None:
    framer = EofSplitFramer(CRLF2, MAX)

    assert framer.feed(b"one\r\n\r\ntw") == [b"one\r\n\r\n"]
    assert framer.buffered == 2
    assert framer.feed(b"o\r\n\r\n") == [b"two\r\n\r\n"]
    assert framer.buffered == 0


def test_eof_split_finds_an_eof_cut_across_reads() -> None:
    framer = EofSplitFramer(CRLF2, MAX)

    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"\n") == []
    assert framer.feed(b"\r") == []
    assert framer.feed(b"\nnext") == [b"abc\r\n\r\n"]
    assert framer.buffered == 4


def test_eof_split_raises_1201_when_bytes_without_eof_reach_package_max_length() -> None:
    framer = EofSplitFramer(b"\n", 16)
    framer.feed(b"x" * 15)

    with pytest.raises(FramingError, match="reach package_max_length 16") as raised:
        framer.feed(b"x")

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


def test_eof_split_raises_1201_for_a_complete_package_longer_than_package_max_length() -> None:
    with pytest.raises(FramingError, match="package length 17 exceeds package_max_length 16") as raised:
        EofSplitFramer(b"\n", 16).feed(b"x" * 16 + b"\n")

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


def test_framing_error_carries_the_packages_completed_before_the_bad_bytes() -> None:
    with pytest.raises(FramingError) as raised:
        EofSplitFramer(b"\n", 16).feed(b"ok\nfine\n" + b"x" * 20 + b"\n")

    assert raised.value.packages == [b"ok\n", b"fine\n"]


# ---- open_eof_check ----------------------------------------------------------------------------------------


def test_eof_check_returns_the_whole_buffer_only_once_it_ends_with_eof() -> None:
    framer = EofCheckFramer(CRLF2, MAX)

    assert framer.feed(b"one\r\n\r\ntwo") == []
    assert framer.buffered == len(b"one\r\n\r\ntwo")
    assert framer.feed(b"\r\n\r\n") == [b"one\r\n\r\ntwo\r\n\r\n"]
    assert framer.buffered == 0


def test_eof_check_keeps_several_messages_of_one_read_together() -> None:
    data = b"one\r\n\r\ntwo\r\n\r\n"

    assert EofCheckFramer(CRLF2, MAX).feed(data) == [data]


def test_eof_check_raises_1201_when_bytes_without_eof_reach_package_max_length() -> None:
    framer = EofCheckFramer(b"\n", 16)
    framer.feed(b"a\nb")

    with pytest.raises(FramingError) as raised:
        framer.feed(b"x" * 13)

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


@pytest.mark.parametrize("reads", [[b"x" * 16 + b"\n"], [b"x" * 10, b"x" * 6 + b"\n"]])
def test_eof_check_raises_1201_for_a_package_longer_than_package_max_length(reads: list[bytes]) -> None:
    framer = EofCheckFramer(b"\n", 16)

    with pytest.raises(FramingError, match="package length 17 exceeds package_max_length 16") as raised:
        for read in reads:
            framer.feed(read)

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


# ---- open_length_check -------------------------------------------------------------------------------------


def test_length_package_fed_one_byte_at_a_time_comes_out_once_whole() -> None:
    package = length_package("N", 0, 4, b"hello, world")
    framer = LengthFramer("N", 0, 4, MAX)

    outputs = [framer.feed(package[i : i + 1]) for i in range(len(package))]

    assert outputs[-1] == [package]
    assert all(output == [] for output in outputs[:-1])
    assert framer.buffered == 0


def test_length_returns_a_read_that_is_exactly_one_package_without_copying_it() -> None:
    data = length_package("N", 0, 4, b"x" * 60)

    (package,) = LengthFramer("N", 0, 4, MAX).feed(data)

    assert package is data


@pytest.mark.parametrize("code", PACKAGE_LENGTH_TYPES)
def test_every_pack_code_frames_packages_whose_header_struct_wrote(code: str) -> None:
    field_size = struct.calcsize(PACKAGE_LENGTH_TYPES[code])
    first = length_package(code, 0, field_size, b"first body")
    second = length_package(code, 0, field_size, b"2nd")
    framer = LengthFramer(code, 0, field_size, MAX)

    assert framer.feed(first + second[:3]) == [first]
    assert framer.feed(second[3:]) == [second]


@pytest.mark.parametrize(
    ("length_offset", "body_offset"),
    [
        (0, 4),  # the classic: 4-byte length, then the body
        (2, 6),  # a 2-byte magic before the length field
        (0, 10),  # header fields after the length field
        (0, 0),  # the length counts the whole package, header included
        (4, 2),  # the length counts from byte 2, inside the header
    ],
)
def test_length_offset_and_body_offset_give_the_total_length(length_offset: int, body_offset: int) -> None:
    packages = [length_package("N", length_offset, body_offset, body) for body in (b"a", b"", b"body" * 9)]
    framer = LengthFramer("N", length_offset, body_offset, MAX)

    assert framer.feed(b"".join(packages)) == packages


def test_length_waits_for_the_whole_header_before_reading_the_length() -> None:
    framer = LengthFramer("N", 2, 6, MAX)

    assert framer.feed(b"\xaa\xaa\x00\x00\x00") == []
    assert framer.feed(b"\x01" + b"z") == [b"\xaa\xaa\x00\x00\x00\x01z"]


@pytest.mark.parametrize("code", SIGNED_CODES)
def test_negative_length_field_raises_1204(code: str) -> None:
    header = struct.pack(PACKAGE_LENGTH_TYPES[code], -1)

    with pytest.raises(FramingError, match="negative") as raised:
        LengthFramer(code, 0, len(header), MAX).feed(header + b"body")

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA


def test_negative_length_field_raises_1204_even_when_it_makes_the_read_one_package() -> None:
    read = struct.pack("b", -2) + b"1234567"  # body_offset 10 + (-2) == 8 == len(read)

    with pytest.raises(FramingError, match="negative") as raised:
        LengthFramer("c", 0, 10, MAX).feed(read)

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA


def test_length_over_package_max_length_raises_1201_as_soon_as_the_header_is_in() -> None:
    framer = LengthFramer("N", 0, 0, MAX)

    with pytest.raises(FramingError, match=f"package length 9000000 exceeds package_max_length {MAX}") as raised:
        framer.feed(struct.pack(">L", 9_000_000))

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


def test_length_of_exactly_package_max_length_is_accepted() -> None:
    package = length_package("N", 0, 4, b"x" * 60)

    assert LengthFramer("N", 0, 4, len(package)).feed(package) == [package]


def test_length_one_read_package_over_package_max_length_raises_1201() -> None:
    package = length_package("N", 0, 4, b"x" * 60)

    with pytest.raises(FramingError, match="package length 64 exceeds package_max_length 63") as raised:
        LengthFramer("N", 0, 4, len(package) - 1).feed(package)

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


def test_length_shorter_than_its_own_header_raises_1204() -> None:
    with pytest.raises(FramingError, match="shorter than its 4-byte header") as raised:
        LengthFramer("N", 0, 0, MAX).feed(struct.pack(">L", 2) + b"rest")

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA


# ---- package_length_func -----------------------------------------------------------------------------------


def test_length_func_answering_0_keeps_buffering_until_it_gives_a_length() -> None:
    package = b"\x00\x05hello"
    framer = FuncFramer(two_byte_length, MAX)

    assert framer.feed(package[:1]) == []
    assert framer.buffered == 1
    assert framer.feed(package[1:4]) == []
    assert framer.feed(package[4:] + b"\x00") == [package]
    assert framer.buffered == 1


def test_length_func_is_not_asked_again_while_the_body_arrives() -> None:
    calls: list[bytes] = []

    def length_func(data: bytes) -> int:
        calls.append(data)
        return two_byte_length(data)

    framer = FuncFramer(length_func, MAX)
    for byte in b"\x00\x03abc":
        framer.feed(bytes([byte]))

    assert calls == [b"\x00", b"\x00\x03"]


def test_length_func_negative_answer_raises_1204() -> None:
    with pytest.raises(FramingError, match="returned -1") as raised:
        FuncFramer(two_byte_length, MAX).feed(b"\xff\xffbody")

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA


def test_length_func_exception_raises_1204_chained_to_it() -> None:
    def length_func(data: bytes) -> int:
        raise ValueError("bad magic")

    with pytest.raises(FramingError, match="ValueError: bad magic") as raised:
        FuncFramer(length_func, MAX).feed(b"data")

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA
    assert isinstance(raised.value.__cause__, ValueError)


def test_length_func_answer_that_is_not_an_int_raises_1204() -> None:
    with pytest.raises(FramingError, match="not an int") as raised:
        FuncFramer(lambda data: "12", MAX).feed(b"data")

    assert raised.value.code == ErrorCode.PACKAGE_MALFORMED_DATA


def test_length_func_answer_over_package_max_length_raises_1201() -> None:
    with pytest.raises(FramingError) as raised:
        FuncFramer(lambda data: MAX + 1, MAX).feed(b"data")

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_TOO_LARGE


def test_length_func_without_a_length_in_the_first_8152_bytes_raises_1202() -> None:
    framer = FuncFramer(lambda data: 0, MAX)
    framer.feed(b"x" * (LENGTH_FUNC_WINDOW - 1))

    with pytest.raises(FramingError) as raised:
        framer.feed(b"x")

    assert raised.value.code == ErrorCode.PACKAGE_LENGTH_NOT_FOUND


# ---- framer_for --------------------------------------------------------------------------------------------


def port_settings(**given: object) -> dict[str, object]:
    return resolve(given, Mode.BASE, cpu_count=1)


def test_framer_for_returns_none_in_raw_mode() -> None:
    assert framer_for(port_settings()) is None


@pytest.mark.parametrize(
    ("given", "kind"),
    [
        ({"open_eof_check": True}, EofCheckFramer),
        ({"open_eof_split": True}, EofSplitFramer),
        ({"open_length_check": True}, LengthFramer),
        ({"open_length_check": True, "package_length_func": two_byte_length}, FuncFramer),
        ({"open_eof_check": True, "open_length_check": True}, EofCheckFramer),
        ({"open_eof_split": True, "open_length_check": True}, EofSplitFramer),
    ],
)
def test_framer_for_picks_the_framer_of_the_options_on(given: dict[str, object], kind: type) -> None:
    assert type(framer_for(port_settings(**given))) is kind


def test_framer_for_ignores_package_length_func_without_open_length_check() -> None:
    assert framer_for(port_settings(package_length_func=two_byte_length)) is None


def test_framer_for_frames_with_the_port_settings_given() -> None:
    framer = framer_for(port_settings(open_eof_split=True, package_eof="|"))
    assert framer is not None

    assert framer.feed(b"a|b|") == [b"a|", b"b|"]


# ---- properties --------------------------------------------------------------------------------------------

EOFS = [b"\n", b"\r\n", CRLF2, b"<end>", b"aba", b"\x00\x00\x00\x00\x00\x00\x00\x00"]


@st.composite
def cut_stream(draw: st.DrawFn, packages: list[bytes]) -> tuple[bytes, list[int]]:
    stream = b"".join(packages)
    cuts = draw(st.lists(st.integers(0, len(stream)), max_size=12))
    return stream, cuts


@settings(max_examples=150, deadline=None)
@given(st.data(), st.sampled_from(EOFS))
def test_any_cut_of_an_eof_split_stream_gives_the_same_packages(data: st.DataObject, eof: bytes) -> None:
    # A message without the EOF's first byte cannot hold an EOF, nor start one that runs into its own EOF.
    messages = data.draw(st.lists(st.binary(max_size=40).map(lambda m: m.replace(eof[:1], b"")), max_size=8))
    packages = [message + eof for message in messages]
    stream, cuts = data.draw(cut_stream(packages))
    framer = EofSplitFramer(eof, MAX)

    assert feed_in_reads(framer, stream, cuts) == packages
    assert framer.buffered == 0


@settings(max_examples=150, deadline=None)
@given(
    st.data(),
    st.sampled_from(sorted(PACKAGE_LENGTH_TYPES)),
    st.integers(0, 6),
    st.integers(0, 12),
)
def test_any_cut_of_a_length_framed_stream_gives_the_same_packages(
    data: st.DataObject, code: str, length_offset: int, body_offset: int
) -> None:
    bodies = data.draw(st.lists(st.binary(max_size=60), max_size=6))
    packages = [length_package(code, length_offset, body_offset, body) for body in bodies]
    stream, cuts = data.draw(cut_stream(packages))
    framer = LengthFramer(code, length_offset, body_offset, MAX)

    assert feed_in_reads(framer, stream, cuts) == packages
    assert framer.buffered == 0


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_any_cut_of_a_length_func_stream_gives_the_same_packages(data: st.DataObject) -> None:
    bodies = data.draw(st.lists(st.binary(max_size=60), max_size=6))
    packages = [struct.pack(">H", len(body)) + body for body in bodies]
    stream, cuts = data.draw(cut_stream(packages))
    framer = FuncFramer(two_byte_length, MAX)

    assert feed_in_reads(framer, stream, cuts) == packages
    assert framer.buffered == 0


@st.composite
def framers(draw: st.DrawFn) -> tuple[Framer, int]:
    max_length = draw(st.integers(1, 64))
    framer = draw(
        st.one_of(
            st.builds(EofCheckFramer, st.sampled_from(EOFS), st.just(max_length)),
            st.builds(EofSplitFramer, st.sampled_from(EOFS), st.just(max_length)),
            st.builds(
                LengthFramer,
                st.sampled_from(sorted(PACKAGE_LENGTH_TYPES)),
                st.integers(0, 6),
                st.integers(0, 12),
                st.just(max_length),
            ),
            st.builds(FuncFramer, st.just(two_byte_length), st.just(max_length)),
        )
    )
    return framer, max_length


@settings(max_examples=300, deadline=None)
@given(framers(), st.lists(st.binary(max_size=40), max_size=10))
def test_random_reads_raise_nothing_but_framing_error_and_lose_no_byte(
    framer_and_max: tuple[Framer, int], reads: list[bytes]
) -> None:
    framer, max_length = framer_and_max
    packages: list[bytes] = []
    try:
        for read in reads:
            packages += framer.feed(read)
    except FramingError as error:
        assert error.code in (ErrorCode.PACKAGE_LENGTH_TOO_LARGE, ErrorCode.PACKAGE_MALFORMED_DATA)
        packages += error.packages
    else:
        assert sum(map(len, packages)) + framer.buffered == sum(map(len, reads))
    assert all(0 < len(package) <= max_length for package in packages)
