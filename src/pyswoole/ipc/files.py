"""Open files passed from a worker to a reactor thread (SCM_RIGHTS), for PROCESS mode's ``sendfile``.

A worker's ``sendfile()`` (and ASGI's ``http.response.pathsend``) is written to the client by the reactor
thread that owns the connection. Handing it only the path would let the file change or vanish between the
worker's call and the reactor's open: a FastAPI ``FileResponse`` whose background task deletes the file would
lose that race. So the worker opens the file and passes the descriptor over a *file channel*, one datagram
socketpair per reactor thread, made before the first fork like the worker pipes. The SEND_FILE package that
follows on the ordinary pipe carries the same random token; the reactor claims the descriptor by it.

Invariant: the descriptor's datagram is sent before its package, so when the reactor reads the package, the
descriptor is already in the channel (or was never sent: token 0, and the reactor opens the path itself, as
before). The worker closes its own copy at once; the kernel holds the passed one until it is claimed.
"""

from __future__ import annotations

import array
import os
import socket
import struct
from typing import Final

_TOKEN: Final = struct.Struct("=Q")
_FD_SIZE: Final = array.array("i").itemsize
_ANCILLARY_SPACE: Final = socket.CMSG_SPACE(_FD_SIZE)
UNCLAIMED_KEPT: Final = 256  # read past while claiming another; those whose package never comes (a worker that died
# between its two sends) are closed oldest first; one evicted while still in flight is opened by path instead


def new_token() -> int:
    """A token no other passed file carries: random, so a worker that died leaving its descriptor unclaimed
    cannot collide with a later process given the same pid."""
    return int.from_bytes(os.urandom(8), "little") or 1


def pass_file(channel: socket.socket, token: int, fd: int) -> bool:
    """Send a duplicate of ``fd`` with ``token`` over ``channel``; False if the channel is full or closed
    (the caller then sends the path alone)."""
    try:
        channel.sendmsg([_TOKEN.pack(token)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    except OSError:
        return False
    return True


class FileInbox:
    """The reactor thread's end of its file channel: descriptors by token, read when a package claims one."""

    def __init__(self, channel: socket.socket) -> None:
        self._channel = channel
        self._unclaimed: dict[int, int] = {}

    def claim(self, token: int) -> int:
        """The descriptor passed with ``token``, now the caller's to close; -1 if it never came."""
        fd = self._unclaimed.pop(token, -1)
        while fd < 0:
            try:
                data, ancillary, _, _ = self._channel.recvmsg(_TOKEN.size, _ANCILLARY_SPACE)
            except OSError:  # BlockingIOError: the channel is empty
                return -1
            received = _descriptors(ancillary)
            if len(data) != _TOKEN.size or len(received) != 1:
                for stray in received:
                    os.close(stray)
                continue
            (passed,) = _TOKEN.unpack(data)
            if passed == token:
                fd = received[0]
            else:
                self._keep(passed, received[0])
        return fd

    def _keep(self, token: int, fd: int) -> None:
        stale = self._unclaimed.pop(token, -1)  # a token sent twice: the later descriptor wins
        if stale >= 0:
            os.close(stale)
        elif len(self._unclaimed) >= UNCLAIMED_KEPT:  # the oldest first: its package is the least likely to come
            os.close(self._unclaimed.pop(next(iter(self._unclaimed))))
        self._unclaimed[token] = fd

    def close(self) -> None:
        for fd in self._unclaimed.values():
            os.close(fd)
        self._unclaimed.clear()


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - len(data) % _FD_SIZE])
    return list(fds)
