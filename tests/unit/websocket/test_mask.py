"""The C masking routines: XOR with a repeating 4-byte key, checked against a byte-by-byte reference."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.websocket import _mask
from pyswoole.websocket._mask import apply_mask, unmask_payload


def reference_mask(data: bytes, key: bytes) -> bytes:
    return bytes(byte ^ key[index % 4] for index, byte in enumerate(data))


@pytest.mark.parametrize("length", [*range(0, 34), 63, 64, 65, 125, 126, 1000, 65536 + 3])
def test_apply_mask_matches_the_reference_for_every_tail_length(length: int) -> None:
    data = os.urandom(length)
    key = os.urandom(4)
    assert apply_mask(data, key) == reference_mask(data, key)


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_applying_a_mask_twice_gives_the_data_back(data: bytes, key: bytes) -> None:
    assert apply_mask(apply_mask(data, key), key) == data


@pytest.mark.parametrize("shift", range(8))
def test_apply_mask_takes_unaligned_buffers_and_bytearrays(shift: int) -> None:
    backing = os.urandom(200)
    view = memoryview(backing)[shift : shift + 150]
    key = bytearray(b"\x01\x80\xfe\x33")
    assert apply_mask(view, key) == reference_mask(bytes(view), bytes(key))
    assert apply_mask(bytearray(view), memoryview(key)) == reference_mask(bytes(view), bytes(key))


@pytest.mark.parametrize("key", [b"", b"abc", b"abcde"])
def test_a_mask_must_be_four_bytes(key: bytes) -> None:
    with pytest.raises(ValueError, match="4 bytes"):
        apply_mask(b"data", key)


def test_apply_mask_refuses_text() -> None:
    with pytest.raises(TypeError):
        apply_mask("text", b"abcd")  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [0, 1, 7, 8, 9, 64, 300])
def test_unmask_payload_uses_the_four_bytes_before_the_payload_as_key(length: int) -> None:
    key = os.urandom(4)
    payload = os.urandom(length)
    frame = b"\x82\xfe" + key + reference_mask(payload, key) + b"trailing"
    assert unmask_payload(frame, 6, 6 + length) == payload


@pytest.mark.parametrize(("start", "end"), [(3, 5), (6, 5), (6, 100), (-1, 2)])
def test_unmask_payload_refuses_bounds_outside_the_frame(start: int, end: int) -> None:
    with pytest.raises(ValueError, match="no masked payload"):
        unmask_payload(b"\x81\x85abcdhello", start, end)


def test_the_masking_module_is_the_compiled_extension() -> None:
    assert _mask.__file__ is not None
    assert _mask.__file__.endswith(".so")


def test_frames_fail_to_import_without_the_extension_rather_than_fall_back() -> None:
    code = (
        "import sys; sys.modules['pyswoole.websocket._mask'] = None\n"
        "try:\n    import pyswoole.websocket.frames\nexcept ImportError:\n    sys.exit(3)\n"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 3
