"""``pyswoole serve MODULE:APP``: a server built around an ASGI or WSGI application from the command line.

The options take uvicorn's spellings and defaults where the two overlap (gunicorn's where only it has one), and
``--set KEY=VALUE`` passes any Swoole setting. Every wrong input is refused with a message before any process
starts: a usage error exits 2 (as argparse), an application that cannot be loaded 1 (as uvicorn), a port in use 1
(the bind's message), a failed startup in a worker (an ASGI lifespan startup) 3 (as uvicorn and gunicorn). A
server stopped by SIGTERM or SIGINT exits 0.

Invariant: this process never imports the application (``loader``): the workers do, each on its own, so a reload
runs the code as it is on disk then.
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
from typing import Any

from .. import HttpServer, WebSocketServer
from ..constants import ErrorCode, Mode, SockType
from ..errors import ServerError
from .loader import AsgiEntry, ImportedApp, ImportedCallable, LoadError, WsgiEntry, check_in_child
from .proxy import ProxyHeadersAsgi, ProxyHeadersWsgi, TrustedHosts

EXIT_USAGE = 2
EXIT_LOAD = 1
EXIT_SERVER = 1
EXIT_STARTUP = 3

# uvicorn's --log-level names -> Swoole's log_level (Swoole has no "critical": errors are the least it shows).
LOG_LEVELS = {"critical": 5, "error": 5, "warning": 4, "info": 2, "trace": 1, "debug": 0}

DESCRIPTION = """\
Serve an ASGI application (FastAPI, Starlette, Django's asgi) or a WSGI application (Flask, Django's wsgi)
named MODULE:APP. Defaults and spellings follow uvicorn; --set passes any Swoole setting. PROCESS mode (the
default) keeps keep-alive connections open across reloads and never lets a slow client hold a worker; BASE
mode is faster on small requests. `pyswoole reload|stop|status PIDFILE` work on the server (--pid-file).
"""


class UsageError(Exception):
    """A wrong option: ``pyswoole serve`` prints it with the usage line and exits 2."""


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """The ``serve`` subcommand, added to ``pyswoole``'s subcommands."""
    parser: argparse.ArgumentParser = commands.add_parser(
        "serve", help="serve an ASGI or WSGI application", description=DESCRIPTION
    )
    parser.add_argument("app", metavar="MODULE:APP", help="the application, e.g. main:app")
    where = parser.add_argument_group("where to listen")
    where.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1; :: for IPv6)")
    where.add_argument("--port", type=int, default=8000, help="port to bind (default 8000; 0: any free port)")
    where.add_argument("--uds", metavar="PATH", help="bind a UNIX socket (--host and --port are then ignored)")
    where.add_argument("--ssl-certfile", metavar="F", help="TLS certificate (PEM); needs --ssl-keyfile")
    where.add_argument("--ssl-keyfile", metavar="F", help="TLS private key (PEM)")
    where.add_argument("--ssl-keyfile-password", metavar="P", help="the key's passphrase")
    where.add_argument("--ssl-ca-certs", metavar="F", help="CA certificates: clients must present one they signed")
    processes = parser.add_argument_group("processes")
    processes.add_argument("--workers", type=int, metavar="N", default=int(os.environ.get("WEB_CONCURRENCY", 1)),
                           help="event worker processes (default $WEB_CONCURRENCY or 1)")  # fmt: skip
    processes.add_argument("--mode", choices=("base", "process"), default="process",
                           help="process (default): reactor threads in the master own the connections; "
                                "base: each worker owns its connections")  # fmt: skip
    processes.add_argument("--reactors", type=int, metavar="N", help="PROCESS mode's reactor threads (default: CPUs)")
    processes.add_argument("--task-workers", type=int, metavar="N", help="task worker processes (default 0)")
    processes.add_argument("--task-handler", metavar="MODULE:FUNC", help="the Task callback of the task workers")
    processes.add_argument("--max-requests", type=int, metavar="N", help="recycle a worker after this many requests")
    processes.add_argument("--max-requests-jitter", type=int, metavar="N", help="plus up to this many more")
    processes.add_argument("--timeout", type=float, metavar="S", help="kill a worker stuck this long (default: never)")
    processes.add_argument("--graceful-timeout", type=float, metavar="S",
                           help="how long a stopping worker may finish its requests (default 3)")  # fmt: skip
    processes.add_argument("--daemonize", action="store_true", help="detach from the terminal")
    processes.add_argument("--pid-file", metavar="F", help="write the server's pid here (for reload|stop|status)")
    application = parser.add_argument_group("application")
    application.add_argument("--interface", choices=("auto", "asgi", "wsgi"), default="auto",
                             help="how the application is called (default: told from the callable)")  # fmt: skip
    application.add_argument("--factory", action="store_true", help="MODULE:APP is a function returning the app")
    application.add_argument("--lifespan", choices=("auto", "on", "off"), default="auto",
                             help="ASGI lifespan, once per worker (default auto)")  # fmt: skip
    application.add_argument("--ws", choices=("auto", "none"), default="auto",
                             help="WebSocket for an ASGI application (default auto; none: plain HTTP)")  # fmt: skip
    application.add_argument("--root-path", default="", metavar="P", help="the path prefix the app is mounted at")
    application.add_argument("--app-dir", default=".", metavar="DIR", help="look for MODULE here (default .)")
    application.add_argument("--proxy-headers", action=argparse.BooleanOptionalAction, default=True,
                             help="believe X-Forwarded-For/Proto from --forwarded-allow-ips (default on)")  # fmt: skip
    application.add_argument("--forwarded-allow-ips", metavar="IPS",
                             default=os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1"),
                             help="comma-separated addresses or networks, or * (default 127.0.0.1)")  # fmt: skip
    logs = parser.add_argument_group("logging")
    logs.add_argument("--access-log", action=argparse.BooleanOptionalAction, default=True,
                      help="log every request (default on)")  # fmt: skip
    logs.add_argument("--log-level", choices=tuple(LOG_LEVELS), default="info", help="(default info)")
    logs.add_argument("--log-file", metavar="F", help="write the log here instead of stderr")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="settings",
                        help="any Swoole setting, repeatable: --set package_max_length=8M")  # fmt: skip
    return parser


def parse_set(pairs: list[str]) -> dict[str, Any]:
    """``--set`` pairs: each value a Python literal when it reads as one (``8``, ``True``, ``[1, 2]``), else the
    string as written."""
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, equals, text = pair.partition("=")
        if not equals or not key.strip():
            raise UsageError(f"--set {pair!r}: expected KEY=VALUE")
        try:
            value: Any = ast.literal_eval(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            value = text
        settings[key.strip()] = value
    return settings


def settings_for(args: argparse.Namespace) -> dict[str, Any]:
    """The Swoole settings the options stand for, ``--set`` last (it wins)."""
    if args.workers < 1:
        raise UsageError(f"--workers {args.workers}: at least 1")
    settings: dict[str, Any] = {
        "worker_num": args.workers,
        "log_level": LOG_LEVELS[args.log_level],
        "http_access_log": args.access_log,
    }
    optional = {
        "reactor_num": args.reactors,
        "task_worker_num": args.task_workers,
        "max_request": args.max_requests,
        "max_request_grace": args.max_requests_jitter,
        "worker_timeout": args.timeout,
        "max_wait_time": args.graceful_timeout,
        "log_file": args.log_file,
        "pid_file": args.pid_file,
        "ssl_cert_file": args.ssl_certfile,
        "ssl_key_file": args.ssl_keyfile,
        "ssl_passphrase": args.ssl_keyfile_password,
        "ssl_client_cert_file": args.ssl_ca_certs,
    }
    settings.update((key, value) for key, value in optional.items() if value is not None)
    if args.daemonize:
        settings["daemonize"] = True
    if args.ssl_ca_certs:
        settings["ssl_verify_peer"] = True
    settings.update(parse_set(args.settings))
    return settings


def check(args: argparse.Namespace, settings: dict[str, Any]) -> None:
    """What the options must satisfy together, and the files they name."""
    if bool(args.ssl_certfile) != bool(args.ssl_keyfile):
        raise UsageError("--ssl-certfile and --ssl-keyfile go together")
    if args.ssl_ca_certs and not args.ssl_certfile:
        raise UsageError("--ssl-ca-certs needs --ssl-certfile and --ssl-keyfile")
    for option, path in (("--ssl-certfile", args.ssl_certfile), ("--ssl-keyfile", args.ssl_keyfile),
                         ("--ssl-ca-certs", args.ssl_ca_certs)):  # fmt: skip
        if path and not os.path.isfile(path):
            raise UsageError(f"{option} {path}: no such file")
    if not os.path.isdir(args.app_dir):
        raise UsageError(f"--app-dir {args.app_dir}: no such directory")
    task_workers = settings.get("task_worker_num", 0)
    if task_workers and not args.task_handler:
        raise UsageError("task workers need a Task callback: --task-handler MODULE:FUNC")
    if args.task_handler and not task_workers:
        raise UsageError("--task-handler needs task workers: --task-workers N")


def build(args: argparse.Namespace, interface: str, settings: dict[str, Any]) -> HttpServer:
    """The server, bound, set and mounted (raises ServerError for the bind, ValueError for a setting)."""
    mode = Mode.PROCESS if args.mode == "process" else Mode.BASE
    if args.uds:
        host, port, sock_type = args.uds, 0, int(SockType.UNIX_STREAM)
    else:
        host, port = args.host, args.port
        sock_type = int(SockType.TCP6 if ":" in host else SockType.TCP)
    if args.ssl_certfile:
        sock_type |= SockType.SSL
    server_class = WebSocketServer if interface == "asgi" and args.ws == "auto" else HttpServer
    server = server_class(host, port, mode, sock_type)
    server.set(settings)
    imported = ImportedApp(args.app, args.factory)
    trusted = TrustedHosts(args.forwarded_allow_ips) if args.proxy_headers else None
    if interface == "asgi":
        wrap_asgi = (lambda app: ProxyHeadersAsgi(app, trusted)) if trusted else (lambda app: app)
        server.mount(AsgiEntry(imported, wrap_asgi), "asgi", lifespan=args.lifespan, root_path=args.root_path)
    else:
        wrap_wsgi = (lambda app: ProxyHeadersWsgi(app, trusted)) if trusted else (lambda app: app)
        server.mount(WsgiEntry(imported, wrap_wsgi), "wsgi", root_path=args.root_path)
    if args.task_handler:
        server.on("Task", ImportedCallable(args.task_handler))
    return server


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """``pyswoole serve``: check everything, then serve until stopped; the exit status (see the docstring)."""
    try:
        settings = settings_for(args)
        check(args, settings)
        if args.proxy_headers:
            TrustedHosts(args.forwarded_allow_ips)  # refuse a wrong list now, not in the workers
    except (UsageError, ValueError) as exc:
        parser.error(str(exc))
    app_dir = os.path.abspath(args.app_dir)
    sys.path.insert(0, app_dir)  # the workers inherit it
    try:
        interface = check_in_child(args.app, args.factory, args.interface, args.task_handler)
    except LoadError as exc:
        print(f"pyswoole: error loading the application: {exc}", file=sys.stderr)
        return EXIT_LOAD
    try:
        server = build(args, interface, settings)
    except ServerError as exc:
        print(f"pyswoole: {exc}", file=sys.stderr)
        return EXIT_SERVER
    except ValueError as exc:
        parser.error(str(exc))
    try:
        server.start()
    except ServerError as exc:
        print(f"pyswoole: {exc}", file=sys.stderr)
        return EXIT_STARTUP if exc.code == ErrorCode.WORKER_TERMINATED else EXIT_SERVER
    except ValueError as exc:
        parser.error(str(exc))
    return 0
