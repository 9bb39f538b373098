"""Fuzz the WebSocket frame parser and unpack: valid client streams, mutated, cut into random reads.

Run it from the repository root::

    .venv/bin/python bench/fuzz_websocket.py --count 100000          # 100,000 streams (and as many unpacks)
    .venv/bin/python bench/fuzz_websocket.py --count 1000 --seed 7   # another reproducible run

Each input is a stream of masked client frames (text and binary messages, some fragmented, some deflated on a
connection that agreed permessage-deflate, control frames in between, sometimes a close at the end), mostly
mutated afterwards (bits flipped, bytes inserted, deleted or duplicated, the stream truncated, a length field
rewritten), sometimes plain random bytes. It is cut into random reads (sometimes one byte each) and fed to a
fresh ``FrameParser``. The run fails on any exception escaping ``feed()``, and on any broken property:

* events are Message, Ping, Pong, Close or ProtocolError; a ProtocolError (code 1002, 1007 or 1009) or a Close
  is the last event, and the parser returns nothing after it;
* a text message is ``str``, a binary one ``bytes`` of at most max_message_size; control payloads are at
  most 125 bytes; a Close code is one that may be sent, or 1005;
* the parser never holds more than max_message_size bytes plus one partial frame header and control frame;
* the events do not depend on how the stream is cut into reads;
* an unmutated stream gives back exactly the messages and control frames it was made of.

Each input's first frame, mutated the same way, goes through ``unpack()`` too: it returns a ``Frame`` or
raises ``ValueError``, nothing else. Exit status 0 when every input passed; 1 at the first violation, printed
with what replays it.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pyswoole.websocket.deflate import PerMessageDeflate
from pyswoole.websocket.frames import (
    CLOSE_STATUS_ERROR,
    CloseFrame,
    Frame,
    Opcode,
    encode_frame,
    is_sendable_close_code,
    unpack,
)
from pyswoole.websocket.parser import Close, Event, FrameParser, Message, Ping, Pong, ProtocolError

TEXT, BINARY, CONTINUATION = Opcode.TEXT, Opcode.BINARY, Opcode.CONTINUATION
ERROR_CODES = {1002, 1007, 1009}
# What the parser may hold beyond max_message_size: a 14-byte header and a whole control frame (6 + 125).
HELD_BEYOND_MAX = 14 + 131
WORDS = ["héllo", "wörld", "€", "𝄞", "ascii", " ", "\x00", "日本"]
# Texts are slices of one long mix of 1- to 4-byte code points, drawn once (drawing each text is too slow).
TEXT_POOL = "".join(random.Random(0).choices(WORDS, k=40_000))


class Violation(AssertionError):
    pass


# ---- inputs ------------------------------------------------------------------------------------------------


def client_frame(rng: random.Random, opcode: int, payload: bytes, fin: bool = True, rsv1: bool = False) -> bytes:
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=rng.randbytes(4))


def random_payload(rng: random.Random, text: bool) -> str | bytes:
    size = rng.choice([0, 1, rng.randint(0, 40), rng.randint(100, 300), rng.randint(60000, 70000)])
    if text:
        start = rng.randrange(len(TEXT_POOL) - size)
        return TEXT_POOL[start : start + size // 3]
    return rng.randbytes(size)


def make_stream(rng: random.Random, deflate: PerMessageDeflate | None) -> tuple[bytes, list[Event], bytes]:
    """A valid stream, the events it should give, and its first frame."""
    frames: list[bytes] = []
    expected: list[Event] = []
    for _ in range(rng.randint(0, 6)):
        roll = rng.random()
        if roll < 0.25:
            payload = rng.randbytes(rng.choice([0, rng.randint(0, 125)]))
            ping = rng.random() < 0.5
            frames.append(client_frame(rng, Opcode.PING if ping else Opcode.PONG, payload))
            expected.append(Ping(payload) if ping else Pong(payload))
            continue
        text = roll < 0.65
        data = random_payload(rng, text)
        opcode = TEXT if text else BINARY
        payload = data.encode() if isinstance(data, str) else data
        compressed = deflate is not None and rng.random() < 0.6
        if compressed:
            assert deflate is not None
            payload = deflate.compress(payload)
        cuts = sorted(rng.randint(0, len(payload)) for _ in range(rng.choice([0, 0, 1, 3])))
        bounds = [0, *cuts, len(payload)]
        for index in range(len(bounds) - 1):
            last = index == len(bounds) - 2
            fragment = payload[bounds[index] : bounds[index + 1]]
            first_opcode = opcode if index == 0 else CONTINUATION
            frames.append(client_frame(rng, first_opcode, fragment, last, compressed and index == 0))
            if not last and rng.random() < 0.3:
                frames.append(client_frame(rng, Opcode.PING, b"in between"))
                expected.append(Ping(b"in between"))
        expected.append(Message(opcode, data, compressed))
    if rng.random() < 0.2:
        code = rng.choice([1000, 1001, 1011, 3000, 4999])
        frames.append(client_frame(rng, Opcode.CLOSE, struct.pack("!H", code) + b"bye"))
        expected.append(Close(code, "bye"))
    first = frames[0] if frames else client_frame(rng, TEXT, b"")
    return b"".join(frames), expected, first


def mutate(rng: random.Random, stream: bytes) -> bytes:
    data = bytearray(stream)
    for _ in range(rng.randint(1, 3)):
        where = rng.randint(0, len(data))
        match rng.randrange(7):
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
            case 5 if len(data) > 1:
                # a length field: the second byte of a frame if the stream starts there, else anywhere
                at = 1 if rng.random() < 0.5 else min(where, len(data) - 1)
                data[at] = (data[at] & 0x80) | rng.choice([0, 1, 125, 126, 127, rng.randrange(128)])
            case _:
                data[where:where] = rng.choice([b"\x81", b"\x88\x80", b"\x80\xfe\xff\xff", b"\x02\xff" + b"\xff" * 8])
    return bytes(data)


def cut_points(rng: random.Random, size: int) -> list[int]:
    if size and size < 2000 and rng.random() < 0.03:
        return list(range(1, size))  # one byte per read
    return sorted(rng.randint(0, size) for _ in range(rng.randint(0, 8)))


# ---- checks ------------------------------------------------------------------------------------------------


def run(stream: bytes, cuts: list[int], max_size: int, deflate: PerMessageDeflate | None) -> list[Event]:
    parser = FrameParser(max_message_size=max_size, deflate=deflate)
    bounds = [0, *cuts, len(stream)]
    events: list[Event] = []
    ended = False
    for start, stop in zip(bounds, bounds[1:], strict=False):
        got = parser.feed(stream[start:stop])
        if ended and got:
            raise Violation(f"events after a Close or ProtocolError: {got!r}")
        events += got
        ended = ended or any(isinstance(event, Close | ProtocolError) for event in got)
        held = len(parser._pending) + len(parser._fragments)
        if held > max_size + HELD_BEYOND_MAX:
            raise Violation(f"the parser holds {held} bytes, over max_message_size {max_size} + {HELD_BEYOND_MAX}")
    return events


def check_events(events: list[Event], max_size: int) -> None:
    for index, event in enumerate(events):
        last = index == len(events) - 1
        if isinstance(event, Message):
            kind = str if event.opcode == TEXT else bytes
            if event.opcode not in (TEXT, BINARY) or type(event.data) is not kind:
                raise Violation(f"message of opcode {event.opcode} carries {type(event.data).__name__}")
            size = len(event.data.encode()) if isinstance(event.data, str) else len(event.data)
            if size > max_size:
                raise Violation(f"a message of {size} bytes passed max_message_size {max_size}")
        elif isinstance(event, Ping | Pong):
            if type(event.payload) is not bytes or len(event.payload) > 125:
                raise Violation("a control payload that is not bytes of at most 125")
        elif isinstance(event, Close):
            if not (is_sendable_close_code(event.code) or event.code == CLOSE_STATUS_ERROR) or not last:
                raise Violation(f"close code {event.code}, or a Close that is not the last event")
        elif isinstance(event, ProtocolError):
            if event.code not in ERROR_CODES or not last:
                raise Violation(f"protocol error {event.code}, or one that is not the last event")
        else:
            raise Violation(f"unknown event {event!r}")


def check_unpack(frame: bytes) -> str:
    try:
        result = unpack(frame)
    except ValueError:
        return "ValueError"
    if not isinstance(result, Frame):
        raise Violation(f"unpack returned {result!r}")
    if isinstance(result, CloseFrame) != (result.opcode == Opcode.CLOSE):
        raise Violation("a close frame that is not a CloseFrame, or the reverse")
    if type(result.data) is not (str if result.opcode == TEXT else bytes):
        raise Violation(f"unpack gave {type(result.data).__name__} data for opcode {result.opcode}")
    return "frame"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100_000, help="streams to fuzz (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    outcomes: dict[str, int] = {}
    unpacked: dict[str, int] = {}
    began = time.perf_counter()
    for index in range(args.count):
        deflate = PerMessageDeflate() if rng.random() < 0.4 else None
        max_size = rng.choice([rng.randint(0, 300), 100_000, 2 * 2**20])
        stream, expected, first = make_stream(rng, deflate)
        roll = rng.random()
        if roll < 0.1:
            stream, first = rng.randbytes(rng.randint(0, 200)), rng.randbytes(rng.randint(0, 20))
        elif roll < 0.75:
            stream, first = mutate(rng, stream), mutate(rng, first)
        cuts = cut_points(rng, len(stream))
        try:
            events = run(stream, cuts, max_size, deflate)
            check_events(events, max_size)
            if events != run(stream, [], max_size, deflate):
                raise Violation("the events depend on how the stream is cut into reads")
            if roll >= 0.75 and max_size == 2 * 2**20 and events != expected:
                raise Violation(f"a valid stream gave {events!r}, not {expected!r}")
            unpack_outcome = check_unpack(first)
        except Exception as failure:
            print(f"FAILED input {index} (seed {args.seed}): {failure!r}")
            print(f"  max_message_size={max_size} deflate={deflate is not None}\n  stream={stream!r}")
            print(f"  cuts={cuts!r}\n  unpack input={first!r}")
            return 1
        last = events[-1] if events else None
        outcome = "clean"
        if isinstance(last, ProtocolError):
            outcome = f"error {last.code}"
        elif isinstance(last, Close):
            outcome = "close"
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        unpacked[unpack_outcome] = unpacked.get(unpack_outcome, 0) + 1
    elapsed = time.perf_counter() - began
    print(
        f"{args.count} streams passed through FrameParser and unpack in {elapsed:.1f} s "
        f"({args.count / elapsed:,.0f} streams/s, seed {args.seed})"
    )
    print("  parser: " + "  ".join(f"{name}: {count}" for name, count in sorted(outcomes.items())))
    print("  unpack: " + "  ".join(f"{name}: {count}" for name, count in sorted(unpacked.items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
