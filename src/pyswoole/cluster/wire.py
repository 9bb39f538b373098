"""What cluster nodes write to Redis and to each other: key names, delivery batches, task results. Sans-IO.

A *delivery batch* is what one PUBLISH carries to one node's channel: a version byte, then records, each a
send or a push to one session of that node, or a broadcast to many (the broadcast record is built half by the
sender, half by the Redis script that appends the receiving node's member list, so it is always the last
record of its batch). Invariants: ``decode_batch(encode(...))`` gives back exactly what was encoded; a batch
that is malformed raises ``WireError`` as a whole, never half-delivers garbage.

Keys: every name the cluster uses sits under ``pyswoole:``; a user string inside a key (a group, a node name
that is not the key's last part) is length-prefixed, so that two different (group, node) pairs never share a
key whatever characters they hold.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

VERSION: Final = 0xC1
SEND: Final = 1
PUSH: Final = 2
BROADCAST: Final = 3

# WebSocket opcodes: the sender decides (TEXT for str, BINARY for bytes, unless told), the receiver pushes.
TEXT: Final = 1
BINARY: Final = 2

_SEND_HEAD: Final = struct.Struct(">BQI")  # kind, fd, data length
_PUSH_HEAD: Final = struct.Struct(">BBBQI")  # kind, opcode, flags, fd, data length
_BROADCAST_HEAD: Final = struct.Struct(">BBBI")  # kind, opcode, flags, data length
_U32: Final = struct.Struct(">I")
_EXCLUDE_ITEM: Final = struct.Struct(">HQ")  # node name length, fd
_RESULT_HEAD: Final = struct.Struct(">QI")  # task id, flags

PREFIX: Final = "pyswoole:"
STREAM_GROUP: Final = "pyswoole"


class WireError(ValueError):
    """A batch or a result that does not decode (a foreign publisher, a version from the future)."""


def _part(text: str) -> str:
    """A user string as one unambiguous part of a key: its UTF-8 length, a colon, the string."""
    return f"{len(text.encode())}:{text}"


class Keys:
    """The Redis names of one cluster (Lua scripts build the per-group ones the same way, see scripts.py)."""

    nodes: Final = PREFIX + "nodes"  # set: every node name that registered and was not swept yet
    tasks: Final = PREFIX + "tasks"  # stream: the task queue shared by every node's task workers

    @staticmethod
    def node(name: str) -> str:
        """A node's registration (its info, with a TTL that the node keeps refreshing)."""
        return f"{PREFIX}node:{name}"

    @staticmethod
    def channel(name: str) -> str:
        """The pub/sub channel a node's postman listens on."""
        return f"{PREFIX}ch:{name}"

    @staticmethod
    def group_nodes(group: str) -> str:
        """Set: the nodes that have members in ``group``."""
        return f"{PREFIX}gn:{_part(group)}"

    @staticmethod
    def group_members(group: str, node: str) -> str:
        """Set: the sessions (fds) of ``node`` in ``group``."""
        return f"{PREFIX}g:{_part(group)}:{node}"

    @staticmethod
    def node_groups(node: str) -> str:
        """Set: the groups where ``node`` has members (to sweep a dead node's)."""
        return f"{PREFIX}ng:{node}"

    @staticmethod
    def node_sessions(node: str) -> str:
        """Set: the fds of ``node`` that are in some group (to sweep sessions that closed unseen)."""
        return f"{PREFIX}ns:{node}"

    @staticmethod
    def session_groups(node: str, fd: int) -> str:
        """Set: the groups of one session."""
        return f"{PREFIX}s:{_part(node)}:{fd}"

    @staticmethod
    def results(node: str, worker_id: int, pid: int, waiting: bool) -> str:
        """List: task results for one event worker incarnation; ``waiting``: those its task_wait blocks on."""
        return f"{PREFIX}r:{_part(node)}:{worker_id}:{pid}:{'w' if waiting else 'a'}"


# Delivery batches ----------------------------------------------------------------------------------------


def encode_send(fd: int, data: bytes) -> bytes:
    return _SEND_HEAD.pack(SEND, fd, len(data)) + data


def encode_push(fd: int, data: bytes, opcode: int, flags: int) -> bytes:
    return _PUSH_HEAD.pack(PUSH, opcode, flags, fd, len(data)) + data


def encode_broadcast_head(data: bytes, opcode: int, flags: int, exclude: list[tuple[str, int]]) -> bytes:
    """A whole batch but for its tail, the receiving node's member fds, which the broadcast script appends as
    ASCII decimals separated by commas. The receiver pushes to its WebSocket sessions with ``opcode`` and
    ``flags``, and sends the raw data to the others."""
    parts = [bytes([VERSION]), _BROADCAST_HEAD.pack(BROADCAST, opcode, flags, len(data)), data]
    parts.append(_U32.pack(len(exclude)))
    for node, fd in exclude:
        name = node.encode()
        parts.append(_EXCLUDE_ITEM.pack(len(name), fd) + name)
    return b"".join(parts)


@dataclass(frozen=True, slots=True)
class Delivery:
    """One record of a batch: data for one session (``fds`` of one) or for many (a broadcast)."""

    kind: int
    fds: tuple[int, ...]
    data: bytes
    opcode: int = 0
    flags: int = 0
    exclude: tuple[tuple[str, int], ...] = ()


def decode_batch(batch: bytes) -> list[Delivery]:
    """The records of one batch, in order; ``WireError`` for anything malformed."""
    if not batch or batch[0] != VERSION:
        raise WireError(f"not a pyswoole delivery batch (first byte {batch[:1]!r})")
    view = memoryview(batch)
    pos, end = 1, len(batch)
    out: list[Delivery] = []
    try:
        while pos < end:
            kind = batch[pos]
            if kind == SEND:
                _, fd, size = _SEND_HEAD.unpack_from(batch, pos)
                pos += _SEND_HEAD.size
                out.append(Delivery(SEND, (fd,), _take(view, pos, size)))
                pos += size
            elif kind == PUSH:
                _, opcode, flags, fd, size = _PUSH_HEAD.unpack_from(batch, pos)
                pos += _PUSH_HEAD.size
                out.append(Delivery(PUSH, (fd,), _take(view, pos, size), opcode, flags))
                pos += size
            elif kind == BROADCAST:
                out.append(_decode_broadcast(batch, view, pos))
                break  # the member list runs to the end of the batch
            else:
                raise WireError(f"unknown record kind {kind}")
    except struct.error as exc:
        raise WireError(f"truncated batch: {exc}") from None
    return out


def _take(view: memoryview, pos: int, size: int) -> bytes:
    if pos + size > len(view):
        raise WireError(f"record of {size} bytes runs past the end of the batch")
    return bytes(view[pos : pos + size])


def _decode_broadcast(batch: bytes, view: memoryview, pos: int) -> Delivery:
    _, opcode, flags, size = _BROADCAST_HEAD.unpack_from(batch, pos)
    pos += _BROADCAST_HEAD.size
    data = _take(view, pos, size)
    pos += size
    (count,) = _U32.unpack_from(batch, pos)
    pos += _U32.size
    exclude = []
    for _ in range(count):
        name_size, fd = _EXCLUDE_ITEM.unpack_from(batch, pos)
        pos += _EXCLUDE_ITEM.size
        exclude.append((_take(view, pos, name_size).decode(errors="replace"), fd))
        pos += name_size
    tail = batch[pos:]
    try:
        fds = tuple(int(fd) for fd in tail.split(b",")) if tail else ()
    except ValueError:
        raise WireError(f"bad member list {tail[:40]!r}") from None
    return Delivery(BROADCAST, fds, data, opcode, flags, tuple(exclude))


# Group members and task results --------------------------------------------------------------------------


def members_from_reply(reply: list[bytes]) -> list[tuple[str, int]]:
    """The members script's flat reply ``[node, fd, node, fd, ...]`` as ``(node, fd)`` pairs."""
    return [(reply[i].decode(), int(reply[i + 1])) for i in range(0, len(reply) - 1, 2)]


def encode_result(task_id: int, flags: int, payload: bytes) -> bytes:
    return _RESULT_HEAD.pack(task_id, flags) + payload


def decode_result(entry: bytes) -> tuple[int, int, bytes]:
    """(task id, flags, payload) of one result list entry."""
    if len(entry) < _RESULT_HEAD.size:
        raise WireError(f"task result of {len(entry)} bytes is shorter than its header")
    task_id, flags = _RESULT_HEAD.unpack_from(entry)
    return task_id, flags, entry[_RESULT_HEAD.size :]
