"""The postman's delivery of one batch, against a recording server: what one session gets from a batch leaves in
one write and in order, WebSocket sessions get frames and plain ones bytes, and what cannot be delivered is
counted by reason (the Redis side is tested in tests/integration/cluster)."""

from __future__ import annotations

from pyswoole import ErrorCode, WebSocketServer
from pyswoole.cluster import counters, wire
from pyswoole.cluster.counters import Counters
from pyswoole.cluster.delivery import Postman
from pyswoole.cluster.link import Link


class RecordingServer:
    """Sessions 1 and 2 are WebSockets, 3 is plain TCP, anything else is gone."""

    pack = staticmethod(WebSocketServer.pack)

    def __init__(self) -> None:
        self.writes: list[tuple[int, bytes]] = []
        self.error = 0

    def send(self, fd: int, data: bytes) -> bool:
        if fd not in (1, 2, 3):
            self.error = ErrorCode.SESSION_NOT_EXIST
            return False
        self.writes.append((fd, data))
        return True

    def push(self, fd: int, data: bytes, opcode: int, flags: int) -> bool:
        return self.send(fd, self.pack(data, opcode, flags))

    def get_last_error(self) -> int:
        return self.error


def postman() -> tuple[Postman, RecordingServer, Counters]:
    server = RecordingServer()
    counts = Counters(2)
    return (
        Postman(Link("redis://unused"), "me", counts, server, lambda fd: fd in (1, 2, 3), lambda fd: fd in (1, 2)),
        server,
        counts,
    )


def batch(*records: bytes) -> bytes:
    return bytes([wire.VERSION]) + b"".join(records)


def test_what_one_session_gets_from_a_batch_leaves_in_one_write_in_order():
    mail, server, counts = postman()
    mail.deliver(
        batch(
            wire.encode_push(1, b"a", wire.TEXT, 1),
            wire.encode_push(2, b"x", wire.BINARY, 1),
            wire.encode_send(1, b"raw"),
            wire.encode_push(1, b"b", wire.TEXT, 1),
        )
    )
    text = WebSocketServer.pack
    assert server.writes == [(1, text(b"a", 1) + b"raw" + text(b"b", 1)), (2, text(b"x", 2))]
    assert counts.totals()["delivered"] == 4


def test_pushes_that_cannot_be_delivered_are_counted_by_reason():
    mail, server, counts = postman()
    mail.deliver(batch(wire.encode_push(3, b"to plain", 1, 1), wire.encode_push(9, b"to nobody", 1, 1)))
    mail.deliver(batch(wire.encode_send(9, b"to nobody")))
    mail.deliver(b"garbage")
    totals = counts.totals()
    assert server.writes == []
    assert (totals["dropped_not_websocket"], totals["dropped_gone"], totals["malformed"]) == (1, 2, 1)


def test_a_broadcast_frames_for_websockets_sends_bytes_to_plain_sessions_and_skips_the_excluded():
    mail, server, counts = postman()
    head = wire.encode_broadcast_head(b"all", wire.TEXT, 1, [("me", 2), ("other", 1)])
    mail.deliver(head + b"1,2,3,9")
    assert server.writes == [(1, WebSocketServer.pack(b"all", 1)), (3, b"all")]
    assert counts.totals()[counters.FIELDS[counters.DROPPED_GONE]] == 1
