"""pyswoole: Swoole's multi-process, event-driven TCP/UDP server, rebuilt for Python."""

from .constants import ErrorCode, Mode, SockType, WorkerStatus
from .errors import ServerError
from .port import Port
from .process import Process
from .server import Server
from .state import Atomic, AtomicLong, Lock, Table

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
    "Server", "Port", "Process", "Mode", "SockType", "ServerError", "ErrorCode", "WorkerStatus",
    "SWOOLE_BASE", "SWOOLE_PROCESS", "SWOOLE_SOCK_TCP", "SWOOLE_SOCK_TCP6", "SWOOLE_SOCK_UDP",
    "SWOOLE_SOCK_UDP6", "SWOOLE_SOCK_UNIX_STREAM", "SWOOLE_SOCK_UNIX_DGRAM", "SWOOLE_SSL",
]
__all__ += ["Table", "Atomic", "AtomicLong", "Lock"]
