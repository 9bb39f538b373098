"""``pyswoole serve``'s options: uvicorn's defaults, the settings they stand for, ``--set`` values, and the
combinations refused before anything starts."""

from __future__ import annotations

import argparse

import pytest

from pyswoole.hosting.serve import UsageError, add_parser, check, parse_set, settings_for


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="pyswoole")
    add_parser(parser.add_subparsers())
    return parser.parse_args(["serve", *argv, "main:app"])


def test_the_defaults_are_uvicorns(monkeypatch):
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)
    args = parse()

    assert (args.host, args.port, args.uds) == ("127.0.0.1", 8000, None)
    assert (args.lifespan, args.interface, args.ws, args.factory, args.root_path) == ("auto", "auto", "auto", False, "")
    assert (args.log_level, args.access_log, args.proxy_headers) == ("info", True, True)
    assert args.forwarded_allow_ips == "127.0.0.1" and args.app_dir == "."
    assert args.mode == "process"
    assert settings_for(args) == {"worker_num": 1, "log_level": 2, "http_access_log": True}


def test_the_options_stand_for_swoole_settings():
    args = parse("--workers", "4", "--reactors", "2", "--task-workers", "3", "--max-requests", "100",
                 "--max-requests-jitter", "7", "--timeout", "30", "--graceful-timeout", "9", "--log-level", "warning",
                 "--log-file", "log.txt", "--pid-file", "pid", "--daemonize", "--no-access-log",
                 "--ssl-certfile", "c.pem", "--ssl-keyfile", "k.pem", "--ssl-keyfile-password", "pw",
                 "--ssl-ca-certs", "ca.pem")  # fmt: skip

    assert settings_for(args) == {
        "worker_num": 4, "reactor_num": 2, "task_worker_num": 3, "max_request": 100, "max_request_grace": 7,
        "worker_timeout": 30.0, "max_wait_time": 9.0, "log_level": 4, "log_file": "log.txt", "pid_file": "pid",
        "daemonize": True, "http_access_log": False, "ssl_cert_file": "c.pem", "ssl_key_file": "k.pem",
        "ssl_passphrase": "pw", "ssl_client_cert_file": "ca.pem", "ssl_verify_peer": True,
    }  # fmt: skip


@pytest.mark.parametrize(("name", "level"), [("critical", 5), ("error", 5), ("warning", 4), ("info", 2),
                                             ("trace", 1), ("debug", 0)])  # fmt: skip
def test_uvicorns_log_levels_become_swooles(name, level):
    assert settings_for(parse("--log-level", name))["log_level"] == level


def test_set_takes_python_literals_or_else_the_text_and_wins_over_the_options():
    settings = parse_set(["a=8", "b=True", "c=[1, 'x']", "d=2M", "e=", "f= spaced text", "g=1=2"])

    assert settings == {"a": 8, "b": True, "c": [1, "x"], "d": "2M", "e": "", "f": " spaced text", "g": "1=2"}
    assert settings_for(parse("--workers", "2", "--set", "worker_num=3"))["worker_num"] == 3


@pytest.mark.parametrize("pair", ["worker_num", "=3"])
def test_set_needs_key_equals_value(pair):
    with pytest.raises(UsageError, match="expected KEY=VALUE"):
        parse_set([pair])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--workers", "0"], "at least 1"),
        (["--ssl-keyfile", "k.pem"], "go together"),
        (["--task-workers", "2"], "need a Task callback"),
        (["--set", "task_worker_num=2"], "need a Task callback"),
        (["--task-handler", "tasks:run"], "needs task workers"),
        (["--app-dir", "/no/such/dir"], "no such directory"),
    ],
)
def test_wrong_combinations_are_usage_errors(argv, message):
    args = parse(*argv)
    with pytest.raises(UsageError, match=message):
        check(args, settings_for(args))
