"""Fuzz the framers: random and mutated streams, cut into random reads, through every framer kind.

Run it from the repository root::

    .venv/bin/python bench/fuzz_framing.py --count 100000          # 100,000 inputs for each framer kind
    .venv/bin/python bench/fuzz_framing.py --count 1000 --seed 7   # another reproducible run

Each input is made for one framer kind (eof_check, eof_split, length, and package_length_func with three
different functions): mostly a valid stream of packages that is then mutated (bytes flipped, inserted, deleted,
duplicated, truncated, package_eof spliced in), sometimes plain random bytes. It is cut into random reads
(sometimes one byte each) and fed to a fresh framer. The run fails on anything but ``FramingError`` escaping
``feed()``, and on any broken property:

* an error code is one of framing's (1201 too large, 1202 length not found, 1204 malformed);
* no package is empty or longer than package_max_length, and no byte is lost or made up: the packages plus
  what is still buffered are exactly the bytes fed (when no error was raised);
* eof_check: every package ends with package_eof;
* the splitting framers: the packages, and the error if any, are those of a plain reference framing of the
  whole stream at once, whatever the cut into reads.

Exit status 0 when every input passed; 1 at the first violation, printed with what replays it.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyswoole.constants import ErrorCode
from pyswoole.protocol.framing import (
    LENGTH_FUNC_WINDOW,
    EofCheckFramer,
    EofSplitFramer,
    Framer,
    FramingError,
    FuncFramer,
    LengthFramer,
)
from pyswoole.settings import PACKAGE_LENGTH_TYPES

TOO_LARGE = ErrorCode.PACKAGE_LENGTH_TOO_LARGE
NOT_FOUND = ErrorCode.PACKAGE_LENGTH_NOT_FOUND
MALFORMED = ErrorCode.PACKAGE_MALFORMED_DATA
FRAMING_CODES = {TOO_LARGE, NOT_FOUND, MALFORMED}
EOFS = [b"\n", b"\r\n", b"\r\n\r\n", b"<end>", b"aba", b"\x00", b"\xff" * 8]
CODES = sorted(PACKAGE_LENGTH_TYPES)

# The outcome of framing a stream: the packages, then the error code that stopped it (None if none did).
Outcome = tuple[list[bytes], int | None]


class Violation(AssertionError):
    pass


# ---- package_length_func samples: each answers the same for every prefix long enough to decide ----------------


def two_byte_length(data: bytes) -> int:
    """A 2-byte big-endian body length; 0xFFFF is malformed."""
    if len(data) < 2:
        return 0
    (length,) = struct.unpack_from(">H", data)
    return -1 if length == 0xFFFF else 2 + length


def line_length(data: bytes) -> int:
    """A line: up to and including the first newline."""
    return data.find(b"\n") + 1


def tagged_length(data: bytes) -> int:
    """A 1-byte tag, 0xEE raising, else 1 + tag % 16 bytes."""
    if data[0] == 0xEE:
        raise ValueError("tag 0xEE")
    return 1 + data[0] % 16


LENGTH_FUNCS: dict[str, Callable[[bytes], int]] = {
    "two_byte_length": two_byte_length,
    "line_length": line_length,
    "tagged_length": tagged_length,
}


def func_package(name: str, body: bytes) -> bytes:
    if name == "two_byte_length":
        return struct.pack(">H", len(body)) + body
    if name == "line_length":
        return body.replace(b"\n", b"") + b"\n"
    tag = len(body) % 16
    return bytes([tag]) + body[:tag].ljust(tag, b"-")


def length_header(code: str, length_offset: int) -> tuple[struct.Struct, int]:
    """The length field of type ``code``, and the size of a header that ends with it at ``length_offset``."""
    field = struct.Struct(PACKAGE_LENGTH_TYPES[code])
    return field, length_offset + field.size


def length_package(code: str, length_offset: int, body_offset: int, body: bytes) -> bytes:
    """A package whose length field says how many bytes follow ``body_offset``, the gap padded with 0xBB."""
    field, header_size = length_header(code, length_offset)
    filler = b"\xbb" * max(0, body_offset - header_size)
    value = header_size + len(filler) + len(body) - body_offset
    return b"\xaa" * length_offset + field.pack(value) + filler + body


# ---- reference framing of a whole stream: the plain reading of Swoole's rules --------------------------------


def reference_eof_split(stream: bytes, eof: bytes, max_length: int) -> Outcome:
    packages: list[bytes] = []
    start = 0
    while (end := stream.find(eof, start)) >= 0:
        package = stream[start : end + len(eof)]
        if len(package) > max_length:
            return packages, TOO_LARGE
        packages.append(package)
        start += len(package)
    return packages, TOO_LARGE if len(stream) - start >= max_length else None


def reference_length(stream: bytes, code: str, length_offset: int, body_offset: int, max_length: int) -> Outcome:
    field, header_size = length_header(code, length_offset)
    packages: list[bytes] = []
    start = 0
    while len(stream) - start >= header_size:
        (value,) = field.unpack(stream[start + length_offset : start + header_size])
        total = body_offset + value
        if value < 0 or total < header_size:
            return packages, MALFORMED
        if total > max_length:
            return packages, TOO_LARGE
        if len(stream) - start < total:
            break
        packages.append(stream[start : start + total])
        start += total
    return packages, None


def reference_func(stream: bytes, func: Callable[[bytes], int], max_length: int) -> Outcome:
    packages: list[bytes] = []
    start = 0
    while start < len(stream):
        shown = stream[start : start + LENGTH_FUNC_WINDOW]
        try:
            total = func(shown)
        except Exception:
            return packages, MALFORMED
        if total < 0:
            return packages, MALFORMED
        if total > max_length:
            return packages, TOO_LARGE
        if total == 0:
            return packages, NOT_FOUND if len(shown) == LENGTH_FUNC_WINDOW else None
        if len(stream) - start < total:
            break
        packages.append(stream[start : start + total])
        start += total
    return packages, None


# ---- inputs ------------------------------------------------------------------------------------------------


def mutate(rng: random.Random, stream: bytes, eof: bytes) -> bytes:
    data = bytearray(stream)
    for _ in range(rng.randint(1, 3)):
        where = rng.randint(0, len(data))
        match rng.randrange(6):
            case 0 if data:
                data[min(where, len(data) - 1)] ^= 1 << rng.randrange(8)
            case 1:
                data[where:where] = rng.randbytes(rng.randint(1, 8))
            case 2:
                del data[where : where + rng.randint(1, 16)]
            case 3:
                data[where:where] = data[where : where + rng.randint(1, 32)]
            case 4:
                del data[where:]
            case _:
                data[where:where] = eof[: rng.randint(1, len(eof))]
    return bytes(data)


def cut_points(rng: random.Random, size: int) -> list[int]:
    if size and rng.random() < 0.05:
        return list(range(1, size))  # one byte per read
    return sorted(rng.randint(0, size) for _ in range(rng.randint(0, 8)))


def make_input(rng: random.Random, kind: str) -> tuple[dict[str, Any], bytes]:
    """Framer parameters and a stream for one input of ``kind``."""
    max_length = rng.choice([rng.randint(1, 80), rng.randint(80, 400), 2 * 2**20])
    bodies = [rng.randbytes(rng.choice([0, 1, rng.randint(0, 60)])) for _ in range(rng.randint(0, 8))]
    eof = rng.choice(EOFS)
    if kind in ("eof_check", "eof_split"):
        params = {"package_eof": eof}
        packages = [body.replace(eof[:1], b"") + eof for body in bodies]
    elif kind == "length":
        params = {
            "package_length_type": rng.choice(CODES),
            "package_length_offset": rng.randint(0, 8),
            "package_body_offset": rng.randint(0, 16),
        }
        bodies = [body[:100] for body in bodies]  # a 'c' field holds at most 127
        packages = [
            length_package(
                params["package_length_type"], params["package_length_offset"], params["package_body_offset"], body
            )
            for body in bodies
        ]
    else:
        name = rng.choice(sorted(LENGTH_FUNCS))
        params = {"package_length_func": name}
        packages = [func_package(name, body) for body in bodies]
        if name == "line_length" and rng.random() < 0.01:
            packages.append(b"x" * (LENGTH_FUNC_WINDOW + rng.randint(-2, 200)))  # a line too long to find
    params["package_max_length"] = max_length
    roll = rng.random()
    if roll < 0.15:
        stream = rng.randbytes(rng.randint(0, 200))
    elif roll < 0.6:
        stream = mutate(rng, b"".join(packages), eof)
    else:
        stream = b"".join(packages)
    return params, stream


def build(kind: str, params: dict[str, Any]) -> Framer:
    max_length = params["package_max_length"]
    if kind == "eof_check":
        return EofCheckFramer(params["package_eof"], max_length)
    if kind == "eof_split":
        return EofSplitFramer(params["package_eof"], max_length)
    if kind == "length":
        return LengthFramer(
            params["package_length_type"], params["package_length_offset"], params["package_body_offset"], max_length
        )
    return FuncFramer(LENGTH_FUNCS[params["package_length_func"]], max_length)


def reference(kind: str, params: dict[str, Any], stream: bytes) -> Outcome:
    max_length = params["package_max_length"]
    if kind == "eof_split":
        return reference_eof_split(stream, params["package_eof"], max_length)
    if kind == "length":
        return reference_length(
            stream,
            params["package_length_type"],
            params["package_length_offset"],
            params["package_body_offset"],
            max_length,
        )
    return reference_func(stream, LENGTH_FUNCS[params["package_length_func"]], max_length)


# ---- one run -----------------------------------------------------------------------------------------------


def check(kind: str, params: dict[str, Any], stream: bytes, cuts: list[int]) -> int | None:
    """Feed ``stream`` cut at ``cuts`` to a new framer, check every property; the error code raised, if any."""
    framer = build(kind, params)
    bounds = [0, *cuts, len(stream)]
    packages: list[bytes] = []
    code: int | None = None
    try:
        for start, stop in zip(bounds, bounds[1:], strict=False):
            packages += framer.feed(stream[start:stop])
    except FramingError as error:
        code = error.code
        packages += error.packages
        if code not in FRAMING_CODES:
            raise Violation(f"error code {code} is not a framing error") from error
    max_length = params["package_max_length"]
    if any(not 0 < len(package) <= max_length for package in packages):
        raise Violation("a package is empty or longer than package_max_length")
    if code is None and b"".join(packages) + stream[len(stream) - framer.buffered :] != stream:
        raise Violation("the packages and the buffered bytes are not the bytes fed")
    if kind == "eof_check":
        if not all(package.endswith(params["package_eof"]) for package in packages):
            raise Violation("an eof_check package does not end with package_eof")
        return code
    expected = reference(kind, params, stream)
    if (packages, code) != expected:
        raise Violation(
            f"got {len(packages)} packages and error {code}, the reference framing gives "
            f"{len(expected[0])} packages and error {expected[1]}"
        )
    return code


KINDS = ("eof_check", "eof_split", "length", "length_func")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="inputs per framer kind (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    outcomes = {kind: dict.fromkeys(["ok", *map(int, sorted(FRAMING_CODES))], 0) for kind in KINDS}
    began = time.perf_counter()
    for index in range(args.count):
        for kind in KINDS:
            params, stream = make_input(rng, kind)
            cuts = cut_points(rng, len(stream))
            try:
                code = check(kind, params, stream, cuts)
            except Exception as failure:
                print(f"FAILED input {index} ({kind}, seed {args.seed}): {failure!r}")
                print(f"  params={params!r}\n  stream={stream!r}\n  cuts={cuts!r}")
                return 1
            outcomes[kind]["ok" if code is None else int(code)] += 1
    elapsed = time.perf_counter() - began
    runs = args.count * len(KINDS)
    print(
        f"{args.count} inputs x {len(KINDS)} framer kinds = {runs} runs passed in {elapsed:.1f} s "
        f"({runs / elapsed:,.0f} runs/s, seed {args.seed})"
    )
    for kind, counts in outcomes.items():
        print(f"  {kind:<12} " + "  ".join(f"{outcome}: {count}" for outcome, count in counts.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
