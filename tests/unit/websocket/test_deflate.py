"""permessage-deflate: offers parsed and negotiated, messages compressed without context, bombs stopped."""

from __future__ import annotations

import os
import tracemalloc
import zlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.websocket.deflate import (
    DeflateError,
    MessageTooBig,
    PerMessageDeflate,
    negotiate,
    parse_extensions,
)

BOTH_NO_TAKEOVER = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"


def inflate(payload: bytes, window_bits: int = 15) -> bytes:
    return zlib.decompressobj(-window_bits).decompress(payload + b"\x00\x00\xff\xff")


# ---- compress and decompress --------------------------------------------------------------------------------


@given(st.binary(max_size=5000))
def test_a_compressed_message_inflates_back(payload: bytes) -> None:
    deflate = PerMessageDeflate()
    compressed = deflate.compress(payload)
    assert inflate(compressed) == payload
    assert deflate.decompress(compressed, len(payload)) == payload


def test_compressed_messages_end_without_the_empty_block_rfc_7692_strips() -> None:
    compressed = PerMessageDeflate().compress(b"hello hello hello")
    assert not compressed.endswith(b"\x00\x00\xff\xff")
    assert PerMessageDeflate().compress(b"") == b"\x00"


def test_no_message_refers_back_to_an_earlier_one() -> None:
    deflate = PerMessageDeflate()
    message = b"the same words again and again " * 4
    first, second = deflate.compress(message), deflate.compress(message)
    # With context takeover the second copy would shrink to a back-reference into the first.
    assert first == second
    assert inflate(second) == message


def test_a_smaller_server_window_keeps_back_references_within_it() -> None:
    message = os.urandom(600) * 8  # each copy repeats the one 600 bytes back: out of reach of a 512-byte window
    small_window = PerMessageDeflate(server_max_window_bits=9).compress(message)
    assert inflate(small_window, window_bits=9) == message
    assert len(small_window) > 4000
    assert len(PerMessageDeflate().compress(message)) < 1000


def test_decompress_allows_exactly_max_size() -> None:
    deflate = PerMessageDeflate()
    assert deflate.decompress(deflate.compress(b"a" * 1000), 1000) == b"a" * 1000
    with pytest.raises(MessageTooBig):
        deflate.decompress(deflate.compress(b"a" * 1001), 1000)


def test_a_compression_bomb_is_stopped_without_inflating_it() -> None:
    bomb = PerMessageDeflate().compress(bytes(64 * 2**20))  # 64 MiB of zeros, ~64 KiB compressed
    tracemalloc.start()
    try:
        with pytest.raises(MessageTooBig):
            PerMessageDeflate().decompress(bomb, 2**20)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_data_that_is_not_deflate_raises_deflate_error() -> None:
    with pytest.raises(DeflateError):
        PerMessageDeflate().decompress(b"\xff\xff\xff\xff", 1000)


# ---- Sec-WebSocket-Extensions -------------------------------------------------------------------------------


def test_parse_extensions_reads_offers_with_their_parameters() -> None:
    value = 'permessage-deflate; client_max_window_bits, permessage-deflate; server_max_window_bits="10", x-other'
    assert parse_extensions(value) == [
        ("permessage-deflate", [("client_max_window_bits", None)]),
        ("permessage-deflate", [("server_max_window_bits", "10")]),
        ("x-other", []),
    ]


@pytest.mark.parametrize("value", ["permessage-deflate;", "; x", "a b", "a; =1", "a; b=", 'a; b="unterminated', "a=1"])
def test_parse_extensions_finds_a_malformed_header(value: str) -> None:
    assert parse_extensions(value) is None


@pytest.mark.parametrize(
    ("offer", "response", "window_bits"),
    [
        ("permessage-deflate", BOTH_NO_TAKEOVER, 15),
        ("PerMessage-Deflate", BOTH_NO_TAKEOVER, 15),
        ("permessage-deflate; client_max_window_bits", BOTH_NO_TAKEOVER, 15),
        ("permessage-deflate; client_max_window_bits=10", BOTH_NO_TAKEOVER, 15),
        ("permessage-deflate; server_no_context_takeover; client_no_context_takeover", BOTH_NO_TAKEOVER, 15),
        ("permessage-deflate; server_max_window_bits=12", BOTH_NO_TAKEOVER + "; server_max_window_bits=12", 12),
        ('permessage-deflate; server_max_window_bits="9"', BOTH_NO_TAKEOVER + "; server_max_window_bits=9", 9),
    ],
)
def test_negotiate_accepts_a_valid_offer_without_context_takeover(offer: str, response: str, window_bits: int) -> None:
    assert negotiate(offer) == (response, PerMessageDeflate(window_bits))


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown_param",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; server_no_context_takeover=1",
        "permessage-deflate; client_no_context_takeover=yes",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits=08",
        "permessage-deflate; client_max_window_bits=7",
        "permessage-deflate; client_max_window_bits=abc",
        "x-webkit-deflate-frame",
        "permessage-deflate; bad value",
    ],
)
def test_negotiate_declines_an_invalid_or_foreign_offer(offer: str) -> None:
    assert negotiate(offer) is None


def test_negotiate_picks_the_first_acceptable_of_several_offers() -> None:
    offers = (
        "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8, "
        "permessage-deflate; server_max_window_bits=11, permessage-deflate"
    )
    assert negotiate(offers) == (BOTH_NO_TAKEOVER + "; server_max_window_bits=11", PerMessageDeflate(11))
