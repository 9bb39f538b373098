"""The IPC message codec: what pyswoole processes write to each other's AF_UNIX SOCK_DGRAM pipes.

Sans-IO like h11: ``encode`` turns a ``Message`` into datagrams and a ``Reassembler`` turns received
datagrams back into messages. Neither touches a socket; the reactor, workers and task workers only move
the bytes.

Every datagram is Swoole's 40-byte ``DataHead`` (swoole-model.md §5.1) followed by payload. A message
whose payload fits in one datagram travels with flags 0; a larger one is split into chunks flagged
CHUNK|BEGIN, CHUNK, ..., CHUNK|END (§5.3). Two invariants hold on the wire:

* ``len`` in the header is the total payload length of the logical message, in every chunk;
* ``msg_id`` is unique per message among concurrent senders (e.g. ``(pid << 32) | counter``), because
  the receiver keys partial messages by it alone and chunks of several messages may interleave.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

__all__ = [
    "FLAG_BEGIN",
    "FLAG_CHUNK",
    "FLAG_END",
    "HEADER",
    "HEADER_SIZE",
    "MAX_DATAGRAM",
    "MAX_PAYLOAD",
    "IpcError",
    "Message",
    "Reassembler",
    "MessageIds",
    "encode",
    "pack",
    "pack_datagram",
    "unpack_datagram",
    "pack_sendfile",
    "unpack_sendfile",
]

# fd, msg_id, len, reactor_id, type, flags, server_fd, ext_flags, reserved, time.
# Native byte order like Swoole's DataHead, but standard sizes and no padding, so the layout is fixed.
HEADER: Final = struct.Struct("=qQIhBBHHId")
HEADER_SIZE: Final = 40

# One datagram, header included. On ENOBUFS/EMSGSIZE Swoole's writers fall back to 2048 (§5.3): a caller
# does the same by passing a smaller max_datagram to encode().
MAX_DATAGRAM: Final = 65536
MAX_PAYLOAD: Final = MAX_DATAGRAM - HEADER_SIZE

FLAG_CHUNK: Final = 4
FLAG_BEGIN: Final = 8
FLAG_END: Final = 16
_CHUNK_FLAGS: Final = FLAG_CHUNK | FLAG_BEGIN | FLAG_END


class IpcError(Exception):
    """A datagram that is not a valid pyswoole IPC message (or chunk of one)."""


# Not frozen, and the __init__ written out: one Message is built per event, a frozen dataclass's __init__ goes
# through object.__setattr__ per field (~4x slower), and the compiled build runs a generated __init__ as
# interpreted code.
@dataclass(slots=True, init=False)
class Message:
    """One logical IPC message; ``type`` is an ``EventType`` value."""

    type: int
    fd: int  # session id, or task id for TASK/FINISH/PIPE_MESSAGE
    reactor_id: int  # reactor id, or source worker id; int16, may be -1
    server_fd: int
    ext_flags: int
    time: float
    data: bytes

    def __init__(
        self,
        type: int,
        fd: int = 0,
        reactor_id: int = 0,
        server_fd: int = 0,
        ext_flags: int = 0,
        time: float = 0.0,
        data: bytes = b"",
    ) -> None:
        self.type = type
        self.fd = fd
        self.reactor_id = reactor_id
        self.server_fd = server_fd
        self.ext_flags = ext_flags
        self.time = time
        self.data = data


def pack(event_type: int, fd: int, reactor_id: int, server_fd: int, time: float, data: bytes) -> bytes:
    """The one datagram of a message whose payload fits in it (``len(data) <= MAX_PAYLOAD``), msg_id 0: the
    per-package path, which builds no ``Message``. Only chunks need a msg_id."""
    return HEADER.pack(fd, 0, len(data), reactor_id, event_type, 0, server_fd, 0, 0, time) + data


def encode(message: Message, msg_id: int, max_datagram: int = MAX_DATAGRAM) -> list[bytes]:
    """Return the datagrams that carry ``message``, to be sent in order on one pipe.

    Raises ``ValueError`` if a header field is out of range for its C type or ``max_datagram`` leaves
    no room for payload.
    """
    data = message.data
    size = len(data)
    try:
        if size <= max_datagram - HEADER_SIZE:
            # Hot path: one pack and one concatenation.
            return [
                HEADER.pack(
                    message.fd,
                    msg_id,
                    size,
                    message.reactor_id,
                    message.type,
                    0,
                    message.server_fd,
                    message.ext_flags,
                    0,
                    message.time,
                )
                + data
            ]
        headers = [
            HEADER.pack(
                message.fd,
                msg_id,
                size,
                message.reactor_id,
                message.type,
                flags,
                message.server_fd,
                message.ext_flags,
                0,
                message.time,
            )
            for flags in (FLAG_CHUNK | FLAG_BEGIN, FLAG_CHUNK, FLAG_CHUNK | FLAG_END)
        ]
    except struct.error as exc:
        failure = ValueError(f"message does not fit the IPC header: {exc}")
        failure.__cause__ = exc  # said outright: mypyc's build drops the cause of "raise ... from"
        raise failure
    return _chunks(headers, data, max_datagram - HEADER_SIZE)


def _chunks(headers: list[bytes], data: bytes, chunk_size: int) -> list[bytes]:
    if chunk_size <= 0:
        raise ValueError(f"max_datagram must exceed the {HEADER_SIZE}-byte header")
    begin, middle, end = headers
    view = memoryview(data)
    last = len(data) - chunk_size  # data is longer than one chunk, so BEGIN and END are distinct
    datagrams = [begin + view[:chunk_size]]
    offset = chunk_size
    while offset < last:
        datagrams.append(middle + view[offset : offset + chunk_size])
        offset += chunk_size
    datagrams.append(end + view[offset:])
    return datagrams


# What a reader of a batch needs from each header: HEADER without msg_id and reserved, so that unpacking
# builds two objects fewer per message.
_ROUTE: Final = struct.Struct("=q8xIhBBHH4xd")
_FLAGS_OFFSET: Final = 23


class _Partial:
    """A chunked message between BEGIN and END: the BEGIN header's fields and the payload so far."""

    __slots__ = ("message", "length", "buffer")

    def __init__(self, message: Message, length: int) -> None:
        self.message = message
        self.length = length
        # Grown as chunks arrive rather than allocated at BEGIN, so a bogus ``len`` costs no memory.
        self.buffer = bytearray()


class Reassembler:
    """Turns the datagrams read from one pipe back into messages.

    ``dropped`` counts what was discarded without an error: continuation chunks of unknown messages
    (Swoole's 9102 "abnormal pipeline data") and partial messages evicted to respect ``max_pending``
    or superseded by a new BEGIN with the same ``msg_id``.
    """

    def __init__(self, max_message: int = 64 * 1024 * 1024, max_pending: int = 1024) -> None:
        self.max_message = max_message
        self.max_pending = max_pending
        self.dropped = 0
        # Insertion-ordered, so the first key is the oldest partial message.
        self._partials: dict[int, _Partial] = {}

    @property
    def pending(self) -> int:
        """Number of partial messages waiting for more chunks."""
        return len(self._partials)

    def feed(self, datagram: bytes | memoryview) -> Message | None:
        """Take one datagram; return the message it completes, or ``None``.

        Raises ``IpcError`` for a malformed datagram or a message longer than ``max_message``.
        The datagram may be a view of a reused receive buffer: nothing keeps a reference to it.
        """
        if len(datagram) < HEADER_SIZE:
            raise IpcError(f"datagram of {len(datagram)} bytes is shorter than the IPC header")
        fd, msg_id, length, reactor_id, event_type, flags, server_fd, ext_flags, _, time = HEADER.unpack_from(datagram)
        if length > self.max_message:
            raise IpcError(f"message of {length} bytes exceeds max_message={self.max_message}")
        if flags and flags != _CHUNK_FLAGS:  # CHUNK|BEGIN|END is a whole message too
            return self._feed_chunk(
                datagram, fd, msg_id, length, reactor_id, event_type, flags, server_fd, ext_flags, time
            )
        data = datagram[HEADER_SIZE:]
        if type(data) is not bytes:  # a view of a receive buffer the caller will reuse: copy it out
            data = bytes(data)
        if len(data) != length:
            raise IpcError(f"header announces {length} bytes, datagram carries {len(data)}")
        return Message(event_type, fd, reactor_id, server_fd, ext_flags, time, data)

    def feed_batch(
        self,
        datagram: bytes,
        on_message: Callable[[Message], object],
        hot_type: int = -1,
        on_hot: Callable[[int, int, int, float, bytes], object] | None = None,
    ) -> None:
        """Take one datagram that may carry several whole messages back to back (a writer's batch, see
        ``pipes.PipeWriter``) and hand on each message it completes, in order: one of ``hot_type`` as
        ``on_hot(fd, reactor_id, server_fd, time, data)`` without building a ``Message`` (the per-package
        path of PROCESS mode), any other as ``on_message(message)``. A chunk always travels alone.

        Raises ``IpcError`` like ``feed``; the messages before the bad bytes have been handed on.
        """
        end = len(datagram)
        if end < HEADER_SIZE or datagram[_FLAGS_OFFSET] and datagram[_FLAGS_OFFSET] != _CHUNK_FLAGS:
            message = self.feed(datagram)
            if message is not None:
                on_message(message)
            return
        unpack = _ROUTE.unpack_from
        offset = 0
        while offset < end:
            if end - offset < HEADER_SIZE:
                raise IpcError(f"{end - offset} trailing bytes are shorter than the IPC header")
            fd, length, reactor_id, event_type, flags, server_fd, ext_flags, time = unpack(datagram, offset)
            start = offset + HEADER_SIZE
            offset = start + length
            if offset > end:
                raise IpcError(f"header announces {length} bytes, datagram carries {end - start}")
            if flags and flags != _CHUNK_FLAGS:
                raise IpcError(f"a chunk (flags {flags:#x}) inside a batch")
            data = datagram[start:offset]
            if event_type == hot_type:
                on_hot(fd, reactor_id, server_fd, time, data)  # type: ignore[misc]
            else:
                on_message(Message(event_type, fd, reactor_id, server_fd, ext_flags, time, data))

    def _feed_chunk(
        self,
        datagram: bytes | memoryview,
        fd: int,
        msg_id: int,
        length: int,
        reactor_id: int,
        event_type: int,
        flags: int,
        server_fd: int,
        ext_flags: int,
        time: float,
    ) -> Message | None:
        if not flags & FLAG_CHUNK or flags & ~_CHUNK_FLAGS:
            # DATA_PTR/OBJ_PTR/POP_PTR carry an address that means nothing in another process.
            raise IpcError(f"unsupported header flags {flags:#x}")
        partials = self._partials
        if flags & FLAG_BEGIN:
            if partials.pop(msg_id, None) is not None:
                self.dropped += 1  # its END never came and the sender has reused the id
            elif len(partials) >= self.max_pending:
                del partials[next(iter(partials))]
                self.dropped += 1
            message = Message(event_type, fd, reactor_id, server_fd, ext_flags, time)
            partial = partials[msg_id] = _Partial(message, length)
        else:
            found = partials.get(msg_id)
            if found is None:
                self.dropped += 1
                return None
            partial = found
            if length != partial.length:
                del partials[msg_id]
                raise IpcError(f"chunk of message {msg_id} announces {length} bytes, its BEGIN {partial.length}")
        buffer = partial.buffer
        if len(buffer) + len(datagram) - HEADER_SIZE > length:
            del partials[msg_id]
            raise IpcError(f"chunks of message {msg_id} overflow its announced {length} bytes")
        buffer += memoryview(datagram)[HEADER_SIZE:]
        if not flags & FLAG_END:
            return None
        del partials[msg_id]
        if len(buffer) != length:
            raise IpcError(f"message {msg_id} ended after {len(buffer)} of its {length} bytes")
        message = partial.message
        message.data = bytes(buffer)
        return message


# RECV_DGRAM payload: the sender's address travels in front of the datagram (§5.3: socket type, address,
# length, data): port, address length, address (UTF-8: an IP or a UNIX path), then the data.
_DGRAM_ADDRESS: Final = struct.Struct("=HH")


def pack_datagram(address: str, port: int, data: bytes) -> bytes:
    raw = address.encode()
    return _DGRAM_ADDRESS.pack(port, len(raw)) + raw + data


def unpack_datagram(payload: bytes) -> tuple[str, int, bytes]:
    """(address, port, data) of a RECV_DGRAM payload; IpcError if it is cut short."""
    if len(payload) < _DGRAM_ADDRESS.size:
        raise IpcError("datagram payload shorter than its address header")
    port, size = _DGRAM_ADDRESS.unpack_from(payload)
    end = _DGRAM_ADDRESS.size + size
    if len(payload) < end:
        raise IpcError("datagram payload shorter than its address")
    return payload[_DGRAM_ADDRESS.size : end].decode(errors="replace"), port, payload[end:]


_SENDFILE_RANGE: Final = struct.Struct("=qqQ")


def pack_sendfile(path: str, offset: int, length: int, token: int) -> bytes:
    """SEND_FILE payload: the byte range, the token of the open file passed with it (0: none, open the path;
    see ``files.py``), then the file's path."""
    return _SENDFILE_RANGE.pack(offset, length, token) + os.fsencode(path)


def unpack_sendfile(payload: bytes) -> tuple[str, int, int, int]:
    """(path, offset, length, token) of a SEND_FILE payload; IpcError if it is cut short."""
    if len(payload) <= _SENDFILE_RANGE.size:
        raise IpcError("sendfile payload shorter than its range and path")
    offset, length, token = _SENDFILE_RANGE.unpack_from(payload)
    return os.fsdecode(payload[_SENDFILE_RANGE.size :]), offset, length, token


class MessageIds:
    """msg_id source of one sender: unique among the senders of a server without shared state.

    The tag (pid, and thread index for reactor threads) sits above a 32-bit counter.
    """

    def __init__(self, pid: int, thread: int = 0) -> None:
        self._next = (pid << 40) | (thread << 32)
        self.sent = 0

    def __call__(self) -> int:
        self.sent += 1
        return self._next + (self.sent & 0xFFFFFFFF)


# The msg_id source of this process (reactor threads have their own). A forked child starts a new one, so
# that no two processes share a tag.
process_msg_ids = MessageIds(os.getpid())


def _new_process_msg_ids() -> None:
    global process_msg_ids
    process_msg_ids = MessageIds(os.getpid())


os.register_at_fork(after_in_child=_new_process_msg_ids)


def next_msg_id() -> int:
    """A msg_id for a message this process sends."""
    return process_msg_ids()
