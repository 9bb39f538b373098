"""Swoole's numbers: run modes, socket types, worker states, IPC event types and error codes.

The values are Swoole's own, so that a reader of the reference model (and a user porting PHP code)
recognises every number that crosses the API or shows up in a log line.
"""

from __future__ import annotations

import enum


class Mode(enum.IntEnum):
    BASE = 1
    PROCESS = 2


class SockType(enum.IntEnum):
    """Socket types. ``SSL`` is a flag OR-ed onto a stream type: ``SockType.TCP | SockType.SSL``."""

    TCP = 1
    UDP = 2
    TCP6 = 3
    UDP6 = 4
    UNIX_STREAM = 5
    UNIX_DGRAM = 6
    SSL = 512


SSL_FLAG = int(SockType.SSL)
STREAM_TYPES = frozenset({SockType.TCP, SockType.TCP6, SockType.UNIX_STREAM})
DGRAM_TYPES = frozenset({SockType.UDP, SockType.UDP6, SockType.UNIX_DGRAM})
UNIX_TYPES = frozenset({SockType.UNIX_STREAM, SockType.UNIX_DGRAM})
INET6_TYPES = frozenset({SockType.TCP6, SockType.UDP6})


class WorkerStatus(enum.IntEnum):
    BUSY = 1
    IDLE = 2
    EXIT = 3


class EventType(enum.IntEnum):
    """Types of the messages that travel between processes (the IPC header's ``type``)."""

    RECV_DATA = 0
    RECV_DGRAM = 1
    SEND_DATA = 2
    SEND_FILE = 3
    CLOSE = 4
    CONNECT = 5
    CLOSE_FORCE = 6
    CLOSE_FORWARD = 7
    TASK = 8
    FINISH = 9
    PIPE_MESSAGE = 10
    PAUSE_RECV = 11
    RESUME_RECV = 12
    BUFFER_FULL = 13
    BUFFER_EMPTY = 14
    INCOMING = 15
    SHUTDOWN = 16
    COMMAND_REQUEST = 17
    COMMAND_RESPONSE = 18
    SHUTDOWN_SIGNAL = 19
    # pyswoole's own, for the protocol rooms (PROTOCOL_EVENTS_FROM on): they go to the session's protocol.
    HTTP_REQUEST = 32  # reactor -> worker: one whole, parsed request (http.parser.pack_request)
    HTTP_RESPONSE_END = 33  # worker -> reactor: the current request is answered (ext_flags: what next)
    WEBSOCKET_MESSAGE = 34  # reactor -> worker: one whole message (ext_flags: opcode)
    WEBSOCKET_SEND = 35  # any process -> the session's owner: frame and send one message (ext_flags: opcode, flags)
    WEBSOCKET_CLOSE = 36  # any process -> the session's owner: start the close handshake (data: code, reason)


PROTOCOL_EVENTS_FROM = 32


class ErrorCode(enum.IntEnum):
    """Swoole's error numbers, as returned by ``Server.get_last_error()``."""

    SUCCESS = 0
    NO_PAYLOAD = 550
    FILE_NOT_EXIST = 700  # sendfile(): the file cannot be opened
    UNREGISTERED_SIGNAL = 721
    SESSION_CLOSED_BY_SERVER = 1001
    SESSION_CLOSED_BY_CLIENT = 1002
    SESSION_CLOSING = 1003
    SESSION_CLOSED = 1004
    SESSION_NOT_EXIST = 1005
    SESSION_INVALID_ID = 1006
    SESSION_DISCARD_TIMEOUT_DATA = 1007
    OUTPUT_BUFFER_OVERFLOW = 1009
    OUTPUT_SEND_YIELD = 1010
    PACKAGE_LENGTH_TOO_LARGE = 1201
    PACKAGE_LENGTH_NOT_FOUND = 1202
    DATA_LENGTH_TOO_LARGE = 1203
    PACKAGE_MALFORMED_DATA = 1204
    TASK_DISPATCH_FAIL = 2002
    TASK_TIMEOUT = 2003
    SERVER_NOT_RUNNING = 9001
    TOO_MANY_SOCKET = 9002
    WORKER_TERMINATED = 9003
    INVALID_PARAMS = 9004
    NO_IDLE_WORKER = 9007
    ONLY_START_ONE = 9008
    SEND_IN_MASTER = 9009
    INVALID_COMMAND = 9012
    SERVER_IS_NOT_REGULAR_FILE = 9013  # sendfile(): a folder, a device...
    SEND_TO_WORKER_TIMEOUT = 9014
    INVALID_CALLBACK = 9015
    WORKER_EXIT_TIMEOUT = 9101
    ABNORMAL_PIPE_DATA = 9102
    UNPROCESSED_DATA = 9103
    HTTP_CONTEXT_UNAVAILABLE = 7106  # a Response that can no longer take the call (ended, detached)
    WEBSOCKET_BAD_CLIENT = 8501
    WEBSOCKET_BAD_OPCODE = 8502
    WEBSOCKET_UNCONNECTED = 8503  # not a WebSocket session (or not upgraded yet)
    WEBSOCKET_HANDSHAKE_FAILED = 8504
    WEBSOCKET_PACK_FAILED = 8505
    # pyswoole's own, for the cluster (server.cluster)
    CLUSTER_NOT_CONFIGURED = 9501  # a cluster call on a server without the cluster setting
    CLUSTER_UNAVAILABLE = 9502  # Redis cannot be reached now (the call did nothing; the node reconnects by itself)
    CLUSTER_QUEUE_FULL = 9503  # too much already waits for Redis (this worker's outbox, or the shared task queue)


# Process-role symbols used in Swoole's log line prefix: "[date #pid.worker_id]".
ROLE_SYMBOL = {"master": "#", "manager": "$", "worker": "*", "task_worker": "^", "user": "@"}

LOG_LEVELS = {0: "DEBUG", 1: "TRACE", 2: "INFO", 3: "NOTICE", 4: "WARNING", 5: "ERROR", 6: "NONE"}
