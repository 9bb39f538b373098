"""Settings: Swoole's names and defaults, validation, clamping and size strings.

``normalize()`` checks one ``set()`` call and returns it under canonical names with parsed values;
``resolve()`` turns the merged settings into what ``server.setting`` shows at start: defaults filled and the
rules between keys that Swoole applies at create/start_check. Invariants: nothing here touches a socket or a
process, neither function mutates its input, and a value the user gave is kept, rejected with a ``ValueError``
naming its key, or (only where Swoole clamps it) clamped with a warning naming its key.
"""

from __future__ import annotations

import difflib
import logging
import math
import os
import re
import resource
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from .constants import LOG_LEVELS, Mode

_log = logging.getLogger("pyswoole")

EVENT_LOOPS = ("auto", "uvloop", "asyncio")

_UINT16_MAX = 2**16 - 1
_UINT32_MAX = 2**32 - 1
_INT32_MAX = 2**31 - 1
_SESSION_LIST_SIZE = 2**20  # Swoole's session table: more connections than slots cannot be tracked
IPC_BODY_SIZE = 8152  # Swoole refuses framing offsets beyond one IPC message body
_MIN_PACKAGE_MAX_LENGTH = 65536
_HASH_DISPATCH_MODES = frozenset({2, 4, 8})  # a connection always reaches the same worker

# Swoole's pack() codes for package_length_type, as struct formats ("=" native order, standard sizes).
PACKAGE_LENGTH_TYPES: dict[str, str] = {
    "c": "b",
    "C": "B",
    "s": "=h",
    "S": "=H",
    "n": ">H",
    "v": "<H",
    "i": "=i",
    "I": "=I",
    "l": "=l",
    "L": "=L",
    "N": ">L",
    "V": "<L",
    "q": "=q",
    "Q": "=Q",
    "J": ">Q",
    "P": "<Q",
}

_Check = Callable[[str, Any], Any]
_Clamp = Literal["", "low", "high", "both"]


def _adjusted(key: str, given: Any, used: Any, reason: str) -> Any:
    _log.warning("%s: %r %s; using %r", key, given, reason, used)
    return used


# ---- sizes -------------------------------------------------------------------------------------------------

_SIZE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*([kmg]?)b?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}


def parse_size(key: str, value: int | str) -> int:
    """Bytes from an int or a string such as ``"2M"``, ``"64k"``, ``"1.5MB"``, ``"512"``.

    Units are binary (K = 1024) and case-insensitive, a trailing ``B`` is optional; a fraction is allowed when
    it comes to a whole number of bytes. Ints pass unchanged: ranges are the caller's business.
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{key}: expected an int or a size string such as '2M', got {value!r}")
    if isinstance(value, int):
        return value
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise ValueError(f"{key}: cannot parse {value!r} as a size")
    number, unit = match.groups()
    size = Decimal(number) * _SIZE_UNITS[unit.lower()]
    if size != size.to_integral_value():
        raise ValueError(f"{key}: {value!r} is not a whole number of bytes")
    return int(size)


# ---- value checks: each takes (key as the user spelled it, value) and returns the stored value ---------------


def _bounded(key: str, value: Any, lo: float | None, hi: float | None, clamp: _Clamp) -> Any:
    if lo is not None and value < lo:
        if clamp in ("low", "both"):
            return _adjusted(key, value, lo, f"is below {lo}")
        raise ValueError(f"{key}: {value!r} is below the minimum {lo}")
    if hi is not None and value > hi:
        if clamp in ("high", "both"):
            return _adjusted(key, value, hi, f"is above {hi}")
        raise ValueError(f"{key}: {value!r} is above the maximum {hi}")
    return value


def _expect_int(key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key}: expected an int, got {value!r}")
    return value


def _int(lo: int | None, hi: int | None, clamp: _Clamp = "") -> _Check:
    return lambda key, value: _bounded(key, _expect_int(key, value), lo, hi, clamp)


def _size(lo: int, hi: int | None, clamp: _Clamp = "") -> _Check:
    return lambda key, value: _bounded(key, parse_size(key, value), lo, hi, clamp)


def _int_choice(allowed: Collection[int]) -> _Check:
    def check(key: str, value: Any) -> int:
        if _expect_int(key, value) not in allowed:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(str, allowed))}")
        return int(value)

    return check


def _seconds(min_positive: float | None = None) -> _Check:
    """A number of seconds >= 0; Swoole's timers cannot go below ``min_positive``, so smaller values are raised."""

    def check(key: str, value: Any) -> int | float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValueError(f"{key}: expected a number of seconds, got {value!r}")
        seconds: int | float = _bounded(key, value, 0, None, "")
        if min_positive is not None and 0 < seconds < min_positive:
            seconds = _adjusted(key, seconds, min_positive, f"is below the {min_positive} s timer resolution")
        return seconds

    return check


def _bool(key: str, value: Any) -> bool:
    # 0/1 are what PHP configs ported as-is use; anything else is more likely a mistake than a flag.
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"{key}: expected a bool, got {value!r}")


def _text(key: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{key}: expected a non-empty str, got {value!r}")
    return value


def _path(absolute: bool = False) -> _Check:
    def check(key: str, value: Any) -> str:
        path = os.fspath(value) if isinstance(value, os.PathLike) else value
        path = _text(key, path)
        if absolute and not os.path.isabs(path):
            raise ValueError(f"{key}: {path!r} must be an absolute path")
        return path

    return check


def _callable(key: str, value: Any) -> Callable[..., Any]:
    if not callable(value):
        raise ValueError(f"{key}: expected a callable, got {value!r}")
    function: Callable[..., Any] = value
    return function


def _str_choice(allowed: Collection[str]) -> _Check:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or value not in allowed:
            raise ValueError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")
        return value

    return check


def _str_list(key: str, value: Any) -> list[str]:
    """One name or a list of names (index files, locations, subprotocols)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(item, str) and item for item in items):
        raise ValueError(f"{key}: expected a str or a list of non-empty str, got {value!r}")
    return list(items)


def _url_prefixes(key: str, value: Any) -> list[str]:
    prefixes = _str_list(key, value)
    for prefix in prefixes:
        if not prefix.startswith("/"):
            raise ValueError(f"{key}: {prefix!r} must start with '/'")
    return prefixes


def _address(key: str, value: Any) -> str:
    """``host:port`` (an IPv6 host in brackets), checked here; where it may bind is checked at start."""
    text = _text(key, value)
    host, colon, port = text.rpartition(":")
    if not colon or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{key}: expected 'host:port', got {value!r}")
    return text


def _redis_url(key: str, value: Any) -> str:
    url = _text(key, value)
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"{key}: expected a redis://, rediss:// or unix:// URL, got {value!r}")
    return url


def _positive_seconds(key: str, value: Any) -> int | float:
    seconds: int | float = _seconds()(key, value)
    if seconds < 0.5:
        raise ValueError(f"{key}: {value!r} is below the minimum 0.5 s")
    return seconds


def _package_eof(key: str, value: Any) -> bytes:
    if isinstance(value, str):
        value = value.encode()
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ValueError(f"{key}: expected str or bytes, got {value!r}")
    eof = bytes(value)
    if not eof:
        raise ValueError(f"{key}: cannot be empty")
    if len(eof) > 8:
        raise ValueError(f"{key}: {eof!r} is {len(eof)} bytes, the maximum is 8")
    return eof


def _package_length_type(key: str, value: Any) -> str:
    if not isinstance(value, str) or value not in PACKAGE_LENGTH_TYPES:
        raise ValueError(f"{key}: {value!r} is not one of the pack codes {' '.join(PACKAGE_LENGTH_TYPES)}")
    return value


def _socket_buffer_size(key: str, value: Any) -> int:
    size = parse_size(key, value)
    # Swoole's convention: zero or negative means "no limit", which its C int stores as INT_MAX.
    return _INT32_MAX if size <= 0 else _bounded(key, size, None, _INT32_MAX, "high")


def _cpu_list(key: str, value: Any) -> list[int]:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{key}: expected a list of cpu numbers, got {value!r}")
    return [_bounded(key, _expect_int(key, cpu), 0, None, "") for cpu in value]


def _sni_certs(key: str, value: Any) -> dict[str, dict[str, str]]:
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping of host name to certificate files, got {value!r}")
    certs = {}
    for host, files in value.items():
        if not isinstance(files, Mapping):
            raise ValueError(f"{key}[{host!r}]: expected a mapping with ssl_cert_file and ssl_key_file")
        certs[_text(key, host)] = {
            name: _path()(f"{key}[{host!r}].{name}", files.get(name)) for name in ("ssl_cert_file", "ssl_key_file")
        }
    return certs


# ---- the tables --------------------------------------------------------------------------------------------

_NO_DEFAULT: Any = object()


@dataclass(frozen=True)
class _Setting:
    check: _Check
    default: Any = _NO_DEFAULT


# Server-level settings (swoole-model.md §3.1). Keys without a default here are either absent unless set, or
# get a default that depends on the mode, the cpu count or other keys: see resolve().
_SERVER_SETTINGS: dict[str, _Setting] = {
    "worker_num": _Setting(_int(0, _UINT32_MAX, "both")),
    "reactor_num": _Setting(_int(0, _UINT16_MAX, "both")),
    "task_worker_num": _Setting(_int(0, _UINT32_MAX, "both"), 0),
    "max_request": _Setting(_int(0, _UINT32_MAX), 0),
    "max_request_grace": _Setting(_int(0, _UINT32_MAX)),
    "task_max_request": _Setting(_int(0, _UINT32_MAX), 0),
    "task_max_request_grace": _Setting(_int(0, _UINT32_MAX)),
    "max_connection": _Setting(_int(0, _SESSION_LIST_SIZE, "high")),
    # Swoole clamps to [0, 255] and runs unknown modes as 3; an error tells the user their mode does not exist.
    "dispatch_mode": _Setting(_int_choice(range(1, 11)), 2),
    "dispatch_func": _Setting(_callable),
    "daemonize": _Setting(_bool, False),
    "pid_file": _Setting(_path()),
    "log_file": _Setting(_path()),
    "log_level": _Setting(_int(min(LOG_LEVELS), max(LOG_LEVELS), "both"), 2),
    "log_date_format": _Setting(_text, "%F %T"),
    "log_date_with_microseconds": _Setting(_bool, False),
    # SWOOLE_LOG_ROTATION_SINGLE, MONTHLY, DAILY, HOURLY, EVERY_MINUTE
    "log_rotation": _Setting(_int_choice(range(5)), 0),
    "heartbeat_check_interval": _Setting(_int(0, _UINT16_MAX, "both"), 0),
    "max_wait_time": _Setting(_seconds(), 3),
    "reload_async": _Setting(_bool, True),
    "enable_coroutine": _Setting(_bool, True),
    "task_enable_coroutine": _Setting(_bool, False),
    "task_ipc_mode": _Setting(_int_choice(range(1, 5)), 1),
    "message_queue_key": _Setting(_int(-(2**31), _INT32_MAX), 0),
    "task_tmpdir": _Setting(_path(absolute=True), "/tmp"),
    # pyswoole's: a task() finish_callback whose result has not come after this many seconds is dropped (0: kept).
    "task_finish_timeout": _Setting(_seconds(), 300),
    "task_object": _Setting(_bool, False),
    "discard_timeout_request": _Setting(_bool, False),
    "enable_unsafe_event": _Setting(_bool, False),
    "enable_delay_receive": _Setting(_bool, False),
    "enable_reuse_port": _Setting(_bool, False),
    "single_thread": _Setting(_bool, False),
    "send_yield": _Setting(_bool, False),
    "send_timeout": _Setting(_seconds(min_positive=0.001), 0),
    "buffer_output_size": _Setting(_size(1, _UINT32_MAX), _UINT32_MAX),
    "buffer_input_size": _Setting(_size(1, _UINT32_MAX), 2 * 2**20),
    "max_queued_bytes": _Setting(_size(0, _UINT32_MAX), 0),
    "max_concurrency": _Setting(_int(1, _UINT32_MAX)),
    "worker_max_concurrency": _Setting(_int(1, _UINT32_MAX)),
    "start_session_id": _Setting(_int(0, _UINT32_MAX, "high"), 0),
    "user": _Setting(_text),
    "group": _Setting(_text),
    "chroot": _Setting(_path(absolute=True)),
    "open_cpu_affinity": _Setting(_bool, False),
    "cpu_affinity_ignore": _Setting(_cpu_list),
    "stats_file": _Setting(_path()),
    "stats_timer_interval": _Setting(_int(1, _UINT32_MAX), 1000),
    # pyswoole's own
    "event_loop": _Setting(_str_choice(EVENT_LOOPS), "auto"),
    "max_worker_rss": _Setting(_size(0, None), 0),  # 0: no limit
    "worker_timeout": _Setting(_seconds(), 0),  # 0: no limit
    "process_name": _Setting(_text, "pyswoole"),  # prefix of the process titles
    "log_format": _Setting(_str_choice(("swoole", "json")), "swoole"),
    "admin_server": _Setting(_address),
    "admin_server_token": _Setting(_text),
    "http_access_log": _Setting(_bool, False),
    "http_access_log_format": _Setting(_text, '%(h)s "%(r)s" %(s)s %(b)s %(D)sus'),
    # the cluster (docs/cluster.md): a Redis URL, this node's name, how long a silent node counts as alive, how
    # long a dead node's task stays pending before another node runs it, and where task() sends tasks
    "cluster": _Setting(_redis_url),
    "cluster_node": _Setting(_text),
    "cluster_node_ttl": _Setting(_positive_seconds, 10),
    "cluster_task_timeout": _Setting(_positive_seconds, 30),
    "task_backend": _Setting(_str_choice(("local", "cluster")), "local"),
}

# Port-level settings (§3.2): given to server.set() they apply to the primary port; Port.set() takes only these.
_PORT_SETTINGS: dict[str, _Setting] = {
    "backlog": _Setting(_int(0, _UINT16_MAX, "both"), 512),
    "socket_buffer_size": _Setting(_socket_buffer_size, 8 * 2**20),
    # 0 leaves the kernel's own buffer size alone
    "kernel_socket_recv_buffer_size": _Setting(_size(0, _INT32_MAX), 0),
    "kernel_socket_send_buffer_size": _Setting(_size(0, _INT32_MAX), 0),
    "buffer_high_watermark": _Setting(_size(0, _UINT32_MAX), 0),
    "buffer_low_watermark": _Setting(_size(0, _UINT32_MAX), 0),
    "open_tcp_nodelay": _Setting(_bool, True),
    "tcp_defer_accept": _Setting(_int(0, _INT32_MAX), 0),
    "tcp_fastopen": _Setting(_bool, False),
    "open_tcp_keepalive": _Setting(_bool, False),
    # Linux refuses larger values at setsockopt() time, long after set() returned.
    "tcp_keepidle": _Setting(_int(1, 32767), 3600),
    "tcp_keepinterval": _Setting(_int(1, 32767), 60),
    "tcp_keepcount": _Setting(_int(1, 127), 5),
    "tcp_user_timeout": _Setting(_int(0, _UINT32_MAX), 0),
    "open_eof_check": _Setting(_bool, False),
    "open_eof_split": _Setting(_bool, False),
    "package_eof": _Setting(_package_eof, b"\r\n\r\n"),
    "open_length_check": _Setting(_bool, False),
    "package_length_type": _Setting(_package_length_type, "N"),
    "package_length_offset": _Setting(_int(0, IPC_BODY_SIZE, "low"), 0),
    "package_body_offset": _Setting(_int(0, IPC_BODY_SIZE, "low"), 4),
    "package_length_func": _Setting(_callable),
    "package_max_length": _Setting(_size(0, _UINT32_MAX, "both"), 2 * 2**20),
    "heartbeat_idle_time": _Setting(_int(0, _UINT16_MAX, "both"), 0),
    "max_idle_time": _Setting(_seconds(min_positive=0.001), 0),
    "ssl_cert_file": _Setting(_path()),
    "ssl_key_file": _Setting(_path()),
    "ssl_passphrase": _Setting(_text),
    "ssl_protocols": _Setting(_int(0, None)),  # bitmask of Swoole's SWOOLE_SSL_* protocol flags
    "ssl_ciphers": _Setting(_text),
    "ssl_ecdh_curve": _Setting(_text),
    "ssl_dhparam": _Setting(_path()),
    "ssl_prefer_server_ciphers": _Setting(_bool),
    "ssl_verify_peer": _Setting(_bool),
    "ssl_verify_depth": _Setting(_int(0, _INT32_MAX)),
    "ssl_allow_self_signed": _Setting(_bool),
    "ssl_client_cert_file": _Setting(_path()),
    "ssl_cafile": _Setting(_path()),
    "ssl_capath": _Setting(_path()),
    "ssl_compress": _Setting(_bool),
    "ssl_sni_certs": _Setting(_sni_certs),
    # HTTP (HttpServer's ports have open_http_protocol on unless they turn it off)
    "open_http_protocol": _Setting(_bool),
    "http_parse_post": _Setting(_bool, True),
    "http_parse_cookie": _Setting(_bool, True),
    "http_parse_files": _Setting(_bool, True),
    "upload_tmp_dir": _Setting(_path()),
    "upload_max_filesize": _Setting(_size(0, _UINT32_MAX), 0),
    "http_compression": _Setting(_bool, True),
    "http_compression_level": _Setting(_int(1, 9, "both"), 1),
    "compression_min_length": _Setting(_size(0, _UINT32_MAX), 20),
    "document_root": _Setting(_path()),
    "enable_static_handler": _Setting(_bool, False),
    "static_handler_locations": _Setting(_url_prefixes),
    "http_index_files": _Setting(_str_list),
    "http_autoindex": _Setting(_bool, False),
    "http_header_max_size": _Setting(_size(1024, _UINT32_MAX), 64 * 2**10),  # pyswoole's
    "http_header_timeout": _Setting(_seconds(min_positive=0.001), 30),  # pyswoole's; 0: no limit
    # WebSocket (WebSocketServer's ports have open_websocket_protocol on)
    "open_websocket_protocol": _Setting(_bool),
    "websocket_subprotocol": _Setting(_str_list),
    "websocket_compression": _Setting(_bool, False),
    "open_websocket_ping_frame": _Setting(_bool, False),
    "open_websocket_pong_frame": _Setting(_bool, False),
    "open_websocket_close_frame": _Setting(_bool, False),
}

_SETTINGS = {**_SERVER_SETTINGS, **_PORT_SETTINGS}
PORT_KEYS: frozenset[str] = frozenset(_PORT_SETTINGS)

_ALIASES = {
    "max_conn": "max_connection",
    "output_buffer_size": "buffer_output_size",
    "input_buffer_size": "buffer_input_size",
    "package_body_start": "package_body_offset",
    "task_use_object": "task_object",
}

# Keys Swoole knows that mean nothing in pyswoole: accepted and kept as given, so that a config ported from
# PHP keeps working, with one warning per key per process.
_PHP_RUNTIME = "configures PHP's coroutine runtime, which pyswoole does not have"
_NO_PROTOCOL = "configures a protocol server that pyswoole does not implement"
_IGNORED: dict[str, str] = {
    **dict.fromkeys(
        (
            "hook_flags",
            "max_coroutine",
            "enable_preemptive_scheduler",
            "enable_deadlock_check",
            "c_stack_size",
            "socket_dontwait",
            "exit_condition",
            "event_object",
            "enable_signalfd",
            "aio_core_worker_num",
            "aio_worker_num",
            "aio_max_wait_time",
            "aio_max_idle_time",
            "dns_server",
            "socket_connect_timeout",
            "socket_read_timeout",
            "socket_write_timeout",
            "socket_timeout",
            "display_errors",
            "trace_flags",
            "bootstrap",
            "init_arguments",
        ),
        _PHP_RUNTIME,
    ),
    **dict.fromkeys(
        (
            "open_http2_protocol",
            "open_mqtt_protocol",
            "open_redis_protocol",
        ),
        _NO_PROTOCOL,
    ),
    "ssl_method": "is deprecated by Swoole in favour of ssl_protocols",
}

_warned_ignored: set[str] = set()


def _unknown(key: str) -> ValueError:
    known = [*_SETTINGS, *_ALIASES, *_IGNORED]
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ValueError(f"unknown setting {key!r}{hint}")


def normalize(settings: Mapping[str, Any]) -> dict[str, Any]:
    """Validate the keys and values of one ``set()`` call; return them under canonical names, parsed.

    Unknown keys, wrong types and out-of-range values raise ``ValueError`` naming the key; values that Swoole
    clamps are clamped with a warning. Applying it again to its own result changes nothing and logs nothing new.
    """
    normalized: dict[str, Any] = {}
    spelled_as: dict[str, str] = {}
    for key, value in settings.items():
        if not isinstance(key, str):
            raise ValueError(f"setting names are strings, got {key!r}")
        if key in _IGNORED:
            if key not in _warned_ignored:
                _warned_ignored.add(key)
                _log.warning("%s: %s; ignored", key, _IGNORED[key])
            normalized[key] = value
            continue
        name = _ALIASES.get(key, key)
        if name not in _SETTINGS:
            raise _unknown(key)
        if name in spelled_as:
            raise ValueError(f"{spelled_as[name]!r} and {key!r} are the same setting; give only one")
        spelled_as[name] = key
        normalized[name] = _SETTINGS[name].check(key, value)
    return normalized


# ---- resolve: defaults and the rules between keys (create() and start_check(), swoole-model.md §1.4-1.5) ----


def _open_files_limit() -> int | None:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


def _capped(key: str, value: int, limit: int, what: str, *, warn: bool = True) -> int:
    if value <= limit:
        return value
    # Only a value the user gave is worth a warning; a default that meets a limit just follows it.
    return _adjusted(key, value, limit, f"is above {what}") if warn else limit


def _resolve_process_counts(effective: dict[str, Any], given: dict[str, Any], mode: Mode, cpus: int) -> None:
    worker_num = given.get("worker_num", 1 if mode is Mode.BASE else cpus) or cpus
    worker_num = _capped("worker_num", worker_num, cpus * 1000, f"cpu_count*1000 ({cpus * 1000})")
    task_worker_num = _capped(
        "task_worker_num", effective["task_worker_num"], cpus * 1000, f"cpu_count*1000 ({cpus * 1000})"
    )
    if mode is Mode.BASE:
        if given.get("reactor_num", worker_num) != worker_num:
            _adjusted("reactor_num", given["reactor_num"], worker_num, "is ignored: BASE workers are the reactors")
        reactor_num = worker_num
    else:
        explicit = "reactor_num" in given
        reactor_num = given.get("reactor_num", min(cpus, 8)) or cpus
        reactor_num = _capped("reactor_num", reactor_num, cpus * 4, f"cpu_count*4 ({cpus * 4})")
        # A Python dispatch_func or package_length_func runs in the one thread that does all the I/O.
        if "dispatch_func" in given or "package_length_func" in given:
            effective["single_thread"] = True
        if effective["single_thread"]:
            reactor_num = _capped("reactor_num", reactor_num, 1, "1 with single_thread", warn=explicit)
        reactor_num = _capped("reactor_num", reactor_num, worker_num, f"worker_num ({worker_num})", warn=explicit)
    effective.update(worker_num=worker_num, task_worker_num=task_worker_num, reactor_num=reactor_num)


def _resolve_request_grace(effective: dict[str, Any], given: dict[str, Any]) -> None:
    # The grace spreads the restarts of workers that started together, so they do not all recycle at once.
    for limit, grace in (("max_request", "max_request_grace"), ("task_max_request", "task_max_request_grace")):
        if grace not in given:
            effective[grace] = effective[limit] // 2 if effective[limit] > 10 else 0


def _resolve_max_connection(effective: dict[str, Any], given: dict[str, Any]) -> None:
    # The floor that depends on the listening sockets' fds (model §1.5) is the server's, which owns the sockets.
    limit = _open_files_limit()
    default = 100_000 if limit is None else min(100_000, limit)
    max_connection = given.get("max_connection") or default
    if limit is not None:
        max_connection = _capped("max_connection", max_connection, limit, f"the open-files limit (ulimit -n {limit})")
    effective["max_connection"] = max_connection


def _resolve_heartbeat(effective: dict[str, Any]) -> None:
    interval, idle = effective["heartbeat_check_interval"], effective["heartbeat_idle_time"]
    if interval > 0 and idle == 0:
        idle = interval * 2
    if idle > 0:
        # Detection takes up to idle + interval; this keeps it within 1.5 * idle.
        expected = idle // 2 if idle > 2 else 1
        if interval == 0:
            interval = expected
        interval = _capped("heartbeat_check_interval", interval, expected, f"heartbeat_idle_time/2 ({idle}/2)")
    effective.update(heartbeat_check_interval=interval, heartbeat_idle_time=idle)


def _resolve_cross_checks(effective: dict[str, Any], mode: Mode, cpus: int) -> None:
    if effective["package_max_length"] < _MIN_PACKAGE_MAX_LENGTH:
        effective["package_max_length"] = _adjusted(
            "package_max_length", effective["package_max_length"], _MIN_PACKAGE_MAX_LENGTH, "is below the minimum"
        )
    if effective["open_eof_split"]:
        effective["open_eof_check"] = True
    if effective["enable_coroutine"] and not effective["reload_async"]:
        effective["reload_async"] = _adjusted("reload_async", False, True, "is not allowed with enable_coroutine on")
    if mode is Mode.PROCESS and effective["send_yield"] and effective["dispatch_mode"] not in _HASH_DISPATCH_MODES:
        effective["send_yield"] = _adjusted(
            "send_yield", True, False, f"needs a dispatch_mode in {sorted(_HASH_DISPATCH_MODES)}"
        )
    if mode is Mode.PROCESS and effective["dispatch_mode"] == 7:
        _log.warning("dispatch_mode: 7 (STREAM) is deprecated and behaves like 3 (IDLE_WORKER)")
    if effective["task_enable_coroutine"] and effective["task_ipc_mode"] in (2, 3):
        raise ValueError("task_enable_coroutine: cannot be used with task_ipc_mode 2 or 3 (message queues)")
    if effective["task_backend"] == "cluster" and "cluster" not in effective:
        raise ValueError("task_backend: 'cluster' needs the cluster setting (a Redis URL)")
    if len(effective.get("cpu_affinity_ignore", ())) >= cpus:
        raise ValueError(f"cpu_affinity_ignore: must leave at least one of the {cpus} cpus")


def resolve(settings: Mapping[str, Any], mode: Mode, cpu_count: int | None = None) -> dict[str, Any]:
    """The effective settings at start, as ``server.setting`` shows them.

    ``settings`` is the merge of every ``set()`` call (raw or already normalized). Every key with a default is
    filled (worker and reactor counts by mode and cpu count), then Swoole's create/start_check rules apply;
    each clamp of a value the user gave is logged as a warning naming the key.
    """
    mode = Mode(mode)
    cpus = (os.cpu_count() or 1) if cpu_count is None else cpu_count
    if cpus < 1:
        raise ValueError(f"cpu_count must be at least 1, got {cpus}")
    given = normalize(settings)
    effective = {name: spec.default for name, spec in _SETTINGS.items() if spec.default is not _NO_DEFAULT}
    effective.update(given)
    _resolve_process_counts(effective, given, mode, cpus)
    _resolve_request_grace(effective, given)
    _resolve_max_connection(effective, given)
    _resolve_heartbeat(effective)
    _resolve_cross_checks(effective, mode, cpus)
    return effective
