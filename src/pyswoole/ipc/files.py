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

import os
import socket
import struct
from typing import Final

_TOKEN: Final = struct.Struct("=Q")
_MAX_FDS: Final = 4  # room for a few strays: any beyond are closed by the kernel, and the datagram dropped here
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
        socket.send_fds(channel, [_TOKEN.pack(token)], [fd])
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
                data, received, _, _ = socket.recv_fds(self._channel, _TOKEN.size, _MAX_FDS)
            except OSError:  # BlockingIOError: the channel is empty
                return -1
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
