"""Where a response's bytes go when the connection's own worker does not write them: any session, from any
process of the server, through the factory. PROCESS mode's worker-side responses use it, and so does
``Response.create(server, fd)`` anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

from ..constants import EventType
from ..ipc import codec

if TYPE_CHECKING:
    from ..runtime.context import Runtime

# HTTP_RESPONSE_END's ext_flags: what the session's owner does once the current request is answered.
KEEP_ALIVE: Final = 1
UPGRADED: Final = 2  # the request was a WebSocket upgrade, accepted: the connection now speaks WebSocket


class SessionSink:
    """Where a response's bytes go when it is not written by the connection's own worker: any session, from any
    process of the server, through the factory (``Response.create`` uses it too)."""

    __slots__ = ("rt", "session_id")

    def __init__(self, rt: Runtime, session_id: int) -> None:
        self.rt = rt
        self.session_id = session_id

    def send(self, data: bytes) -> bool:
        code = self.rt.factory.send(self.session_id, data)
        if code:
            # Refused (a closed session, or an output over socket_buffer_size): the response cannot be completed,
            # and a client left waiting for the rest would wait forever.
            self.rt.factory.close(self.session_id, True)
            return self.rt.fail(code)
        worker = self.rt.worker
        if worker is not None:
            worker.count_send(len(data))
        return True

    def send_soon(self, data: bytes) -> bool:
        return self.send(data)  # the worker's pipe writes go out once per loop pass already

    def sendfile(self, path: str, offset: int, length: int) -> bool:
        code = self.rt.factory.sendfile(self.session_id, path, offset, length)
        if code:
            self.rt.factory.close(self.session_id, True)  # as for send: the head promised this body
            return self.rt.fail(code)
        return True

    def finish(self, keep_alive: bool) -> None:
        if keep_alive:
            self._to_owner(KEEP_ALIVE)
        else:
            code = self.rt.factory.close(self.session_id, False)
            if code:
                self.rt.fail(code)

    def upgraded(self, flags: int) -> None:
        self._to_owner(KEEP_ALIVE | UPGRADED)

    def fail(self, code: int) -> bool:
        return self.rt.fail(code)

    def _to_owner(self, what: int) -> None:
        message = codec.Message(EventType.HTTP_RESPONSE_END, self.session_id, ext_flags=what)
        code = self.rt.factory.to_owner(self.session_id, message)
        if code:
            self.rt.fail(code)
