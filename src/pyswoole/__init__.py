"""pyswoole: Swoole's multi-process, event-driven TCP, HTTP and WebSocket server, rebuilt for Python."""

from importlib.metadata import version as _version

from .constants import ErrorCode, Mode, SockType, WorkerStatus
from .errors import ServerError
from .port import Port
from .runtime.process import Process
from .server import Server

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

__all__ = [
    "Server",
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
]
