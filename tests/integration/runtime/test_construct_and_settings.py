"""Construction binds at once; set() validates; on() names events; start() checks its callbacks.

Construction, set() and on() need no running server, so most of these run in the test process.
The start() checks run in a server process: a start() that wrongly succeeded would block.
"""

from __future__ import annotations

import errno
import gc
import os
import socket

import pytest

import pyswoole
from pyswoole import Mode, Server, ServerError, SockType


def _bind_probe(port: int) -> OSError | None:
    """Try to bind a plain socket (without SO_REUSEADDR) to 127.0.0.1:port; the error, if any."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(("127.0.0.1", port))
    except OSError as exc:
        return exc
    finally:
        probe.close()
    return None


# -- construction -------------------------------------------------------------------------------


def test_constructor_binds_an_ephemeral_port_at_once_and_reports_it():
    server = Server("127.0.0.1", 0)

    assert isinstance(server.port, int) and server.port > 0
    refusal = _bind_probe(server.port)
    assert refusal is not None and refusal.errno == errno.EADDRINUSE


def test_constructor_raises_server_error_with_eaddrinuse_when_the_port_is_taken():
    occupant = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    occupant.bind(("127.0.0.1", 0))
    occupant.listen()
    try:
        with pytest.raises(ServerError) as caught:
            Server("127.0.0.1", occupant.getsockname()[1])
    finally:
        occupant.close()

    assert caught.value.code == errno.EADDRINUSE


def test_constructor_raises_server_error_with_the_errno_for_an_address_not_on_this_host():
    with pytest.raises(ServerError) as caught:
        Server("192.0.2.1", 0)  # TEST-NET-1: never a local address

    assert caught.value.code == errno.EADDRNOTAVAIL


def test_a_failed_construction_leaks_no_file_descriptor():
    occupant = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    occupant.bind(("127.0.0.1", 0))
    occupant.listen()
    gc.collect()  # sockets of servers built by earlier tests must not close during the count
    before = len(os.listdir("/proc/self/fd"))
    try:
        for _ in range(5):
            with pytest.raises(ServerError):
                Server("127.0.0.1", occupant.getsockname()[1])
    finally:
        occupant.close()

    assert len(os.listdir("/proc/self/fd")) == before - 1


def test_constructor_rejects_a_port_out_of_range_naming_the_port():
    with pytest.raises((ServerError, ValueError)) as caught:
        Server("127.0.0.1", 70000)

    message = str(caught.value)
    assert "70000" in message or "port" in message.lower()


def test_defaults_are_base_mode_and_tcp():
    server = Server("127.0.0.1", 0)

    assert server.mode == Mode.BASE
    assert server.sock_type == SockType.TCP
    assert server.host == "127.0.0.1"


def test_swoole_constants_are_the_enum_members():
    assert pyswoole.SWOOLE_BASE == Mode.BASE
    assert pyswoole.SWOOLE_PROCESS == Mode.PROCESS
    assert pyswoole.SWOOLE_SOCK_TCP == SockType.TCP
    assert pyswoole.SWOOLE_SOCK_UDP == SockType.UDP
    assert pyswoole.SWOOLE_SOCK_TCP6 == SockType.TCP6
    assert pyswoole.SWOOLE_SOCK_UDP6 == SockType.UDP6
    assert pyswoole.SWOOLE_SOCK_UNIX_STREAM == SockType.UNIX_STREAM
    assert pyswoole.SWOOLE_SOCK_UNIX_DGRAM == SockType.UNIX_DGRAM


# -- set() --------------------------------------------------------------------------------------


def test_set_rejects_an_unknown_key_naming_it_and_the_closest_valid_key():
    server = Server("127.0.0.1", 0)

    with pytest.raises(ValueError) as caught:
        server.set(worker_nmu=2)

    assert "worker_nmu" in str(caught.value)
    assert "worker_num" in str(caught.value).replace("worker_nmu", "")


def test_set_rejects_a_value_of_the_wrong_type_naming_the_key():
    server = Server("127.0.0.1", 0)

    with pytest.raises(ValueError, match="worker_num"):
        server.set(worker_num="two")


def test_set_takes_a_dict_or_keywords_and_merges_successive_calls():
    server = Server("127.0.0.1", 0)

    server.set({"worker_num": 2})
    server.set(max_request=50)

    assert server.setting["worker_num"] == 2
    assert server.setting["max_request"] == 50


@pytest.mark.parametrize(
    ("key", "text", "size"),
    [("buffer_output_size", "2M", 2 * 1024 * 1024), ("package_max_length", "64K", 64 * 1024)],
)
def test_size_settings_accept_suffixed_strings(key, text, size):
    server = Server("127.0.0.1", 0)

    server.set(**{key: text})

    assert server.setting[key] == size


def test_an_unparsable_size_is_rejected_naming_the_key():
    server = Server("127.0.0.1", 0)

    with pytest.raises(ValueError, match="buffer_output_size"):
        server.set(buffer_output_size="lots")


# -- on() ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("spelling", ["WorkerStart", "workerstart", "worker_start", "WORKER_START"])
def test_event_names_are_case_insensitive_in_swoole_or_snake_case_spelling(spelling):
    server = Server("127.0.0.1", 0)

    def on_worker_start(server, worker_id):
        pass

    server.on(spelling, on_worker_start)

    assert server.get_callback("WorkerStart") is on_worker_start
    assert server.get_callback("worker_start") is on_worker_start


def test_on_works_as_a_decorator_that_returns_the_function():
    server = Server("127.0.0.1", 0)

    @server.on("Receive")
    def on_receive(server, fd, reactor_id, data):
        pass

    assert callable(on_receive) and on_receive.__name__ == "on_receive"
    assert server.get_callback("receive") is on_receive


def test_registering_an_event_again_replaces_the_callback():
    server = Server("127.0.0.1", 0)

    def first(server, fd, reactor_id, data):
        pass

    def second(server, fd, reactor_id, data):
        pass

    server.on("Receive", first)
    server.on("Receive", second)

    assert server.get_callback("Receive") is second


def test_get_callback_of_an_unset_event_is_none():
    server = Server("127.0.0.1", 0)

    assert server.get_callback("Connect") is None


def test_an_unknown_event_name_is_rejected_naming_it():
    server = Server("127.0.0.1", 0)

    with pytest.raises(ValueError, match="Recieve"):
        server.on("Recieve", lambda *args: None)


# -- start() checks -----------------------------------------------------------------------------

START_WITHOUT = """
server = Server(host, 0, Mode.BASE, sock_type)
try:
    server.start()
    record("started")
except ServerError as exc:
    record("refused", message=str(exc))
try:
    os.waitpid(-1, os.WNOHANG)
    record("children", forked=True)
except ChildProcessError:
    record("children", forked=False)
"""


@pytest.mark.parametrize(
    ("sock_type", "missing"),
    [(SockType.TCP, "receive"), (SockType.UDP, "packet")],
    ids=["tcp-without-receive", "udp-without-packet"],
)
def test_start_without_the_required_callback_raises_before_forking(start_server, sock_type, missing):
    server = start_server(START_WITHOUT, host="127.0.0.1", sock_type=int(sock_type))

    assert server.wait_exit() == 0
    assert server.kinds() == ["refused", "children"]
    assert missing in server.events("refused")[0]["message"].lower()
    assert server.events("children")[0]["forked"] is False


SET_AND_ON_AFTER_START = """
server = recording_server(worker_num=1)

@server.on("WorkerStart")
def on_worker_start(server, worker_id):
    for name, call in [("set", lambda: server.set(max_request=5)),
                       ("on", lambda: server.on("Connect", lambda *a: None))]:
        try:
            call()
            record("allowed", method=name)
        except ServerError as exc:
            record("refused", method=name, message=str(exc))
    server.shutdown()

serve(server)
"""


def test_set_and_on_after_start_raise_server_error(start_server):
    server = start_server(SET_AND_ON_AFTER_START)

    assert server.wait_exit() == 0
    assert [e["method"] for e in server.events("refused")] == ["set", "on"]
    assert server.events("allowed") == []


def test_setting_holds_the_defaults_once_started(start_server):
    server = start_server("""
        server = recording_server()
        server.on("WorkerStart", lambda s, wid: (record("setting", setting=dict(s.setting)), s.shutdown()))
        serve(server)
    """)

    setting = server.wait_event("setting")["setting"]
    assert setting["worker_num"] == 1
    assert server.wait_exit() == 0
