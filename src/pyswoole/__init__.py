"""pyswoole: Swoole's multi-process, event-driven TCP, HTTP and WebSocket server, rebuilt for Python."""

from importlib.metadata import version as _version

from . import compiled  # noqa: F401 (first: with PYSWOOLE_PURE_PYTHON=1 the modules below come from source)
from .constants import ErrorCode, Mode, SockType, WorkerStatus
from .errors import ServerError
from .http.request import Request
from .http.response import Response
from .port import Port
from .runtime.process import Process
from .server import HttpServer, Server, WebSocketServer
from .state import Atomic, AtomicLong, Lock, Table
from .websocket.frames import CloseFrame, Frame, Opcode

__version__ = _version("pyswoole")

SWOOLE_BASE = Mode.BASE
SWOOLE_PROCESS = Mode.PROCESS
SWOOLE_SOCK_TCP = SockType.TCP
SWOOLE_SOCK_TCP6 = SockType.TCP6
SWOOLE_SOCK_UDP = SockType.UDP
SWOOLE_SOCK_UDP6 = SockType.UDP6
SWOOLE_SOCK_UNIX_STREAM = SockType.UNIX_STREAM
SWOOLE_SOCK_UNIX_DGRAM = SockType.UNIX_DGRAM
SWOOLE_SSL = SockType.SSL
WEBSOCKET_OPCODE_TEXT = Opcode.TEXT
WEBSOCKET_OPCODE_BINARY = Opcode.BINARY
WEBSOCKET_OPCODE_CLOSE = Opcode.CLOSE
WEBSOCKET_OPCODE_PING = Opcode.PING
WEBSOCKET_OPCODE_PONG = Opcode.PONG

__all__ = [
    "Server",
    "HttpServer",
    "WebSocketServer",
    "Request",
    "Response",
    "Frame",
    "CloseFrame",
    "Opcode",
    "Port",
    "Process",
    "Mode",
    "SockType",
    "ServerError",
    "ErrorCode",
    "WorkerStatus",
    "SWOOLE_BASE",
    "SWOOLE_PROCESS",
    "SWOOLE_SOCK_TCP",
    "SWOOLE_SOCK_TCP6",
    "SWOOLE_SOCK_UDP",
    "SWOOLE_SOCK_UDP6",
    "SWOOLE_SOCK_UNIX_STREAM",
    "SWOOLE_SOCK_UNIX_DGRAM",
    "SWOOLE_SSL",
    "WEBSOCKET_OPCODE_TEXT",
    "WEBSOCKET_OPCODE_BINARY",
    "WEBSOCKET_OPCODE_CLOSE",
    "WEBSOCKET_OPCODE_PING",
    "WEBSOCKET_OPCODE_PONG",
    "Table",
    "Atomic",
    "AtomicLong",
    "Lock",
]
