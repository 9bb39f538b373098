"""The compiled part of ``WebSocketServer``: ``push``, the call a Message callback makes per message.

As ``runtime.handle.ServerHandle`` does for ``send``: ``pyswoole.server.WebSocketServer`` (interpreted) derives
from this native class as well as from ``HttpServer``, so that ``push`` runs compiled.
"""

from __future__ import annotations

from typing import Final

from mypy_extensions import mypyc_attr

from ..constants import ErrorCode
from ..log import logger
from ..runtime.handle import ServerHandle, send_bytes
from . import frames
from .frames import FIN, Frame
from .session import deflate_of

_NOT_RUNNING: Final = int(ErrorCode.SERVER_NOT_RUNNING)
_NOT_EXIST: Final = int(ErrorCode.SESSION_NOT_EXIST)
_UNCONNECTED: Final = int(ErrorCode.WEBSOCKET_UNCONNECTED)
_PACK_FAILED: Final = int(ErrorCode.WEBSOCKET_PACK_FAILED)


@mypyc_attr(allow_interpreted_subclasses=True)
class WebSocketHandle(ServerHandle):
    def push(self, fd: int, data: str | bytes | Frame, opcode: int | None = None, flags: int = FIN) -> bool:
        """Send one message to WebSocket session ``fd``, from any worker, task worker or user process.

        ``opcode=None`` sends TEXT for ``str`` and BINARY for ``bytes``; ``flags`` are Swoole's (``FIN``, and
        ``COMPRESS`` to deflate it where the client agreed to permessage-deflate). False, with
        ``get_last_error()`` set, for a closed session or one that is not (yet) a WebSocket.
        """
        rt = self._rt
        if rt.foreign_thread():
            return bool(rt.in_loop_thread(self.push, fd, data, opcode, flags))
        if not rt.started:
            return self._fail(_NOT_RUNNING)
        state = rt.factory.protocol_flags(fd)
        if state <= 0:
            return self._fail(_NOT_EXIST if state < 0 else _UNCONNECTED)
        try:
            frame = frames.message(data, opcode, flags, deflate_of(state))
        except ValueError as exc:
            logger.warning("push to session %d: %s", fd, exc)
            return self._fail(_PACK_FAILED)
        code = send_bytes(rt, fd, frame)
        return self._fail(code) if code else True
