"""A BASE worker holds the responses its ASGI tasks complete to the end of the loop pass, so that they leave
together (``runtime/held_output.py``); what an application does after its response, or a loop that stands still,
must not keep a response from its client for long. Raw keep-alive connections, timed as they are read: a
``Connection: close`` response leaves at once, with the close."""

from __future__ import annotations

import selectors
import socket
import time

import pytest
from hostkit import raw_exchange

from serverkit import wait_until

pytestmark = pytest.mark.timeout(90)

BODIES = {"/": b"probe", "/block": b"blocked", "/block-then-await": b"blocked", "/then-block": b"answered"}


def ask(port: int, target: str) -> socket.socket:
    """A keep-alive connection with one request sent on it."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    return sock


def arrivals(requests: dict[str, tuple[socket.socket, str]], timeout: float = 10.0) -> dict[str, float]:
    """time.monotonic() at which each named request's response was complete (its body read)."""
    pending = {}
    with selectors.DefaultSelector() as selector:
        for name, (sock, target) in requests.items():
            selector.register(sock, selectors.EVENT_READ, name)
            pending[name] = (sock, BODIES[target.partition("?")[0]], bytearray())
        done: dict[str, float] = {}
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            for key, _ in selector.select(deadline - time.monotonic()):
                name = key.data
                sock, body, received = pending[name]
                chunk = sock.recv(65536)
                received += chunk
                if received.endswith(body) or not chunk:
                    done[name] = time.monotonic()
                    assert received.startswith(b"HTTP/1.1 200"), bytes(received)
                    selector.unregister(sock)
                    del pending[name]
    assert not pending, f"no complete response for {sorted(pending)}"
    return done


@pytest.mark.parametrize("mode", ["base", "process"])
def test_a_response_leaves_before_what_its_application_does_after_it(serve, mode):
    served = serve("asgi_probe:app", "--mode", mode, "--workers", "1", "--no-access-log")
    target = "/then-block?seconds=2"
    sent = time.monotonic()
    with ask(served.port, target) as sock:
        answered = arrivals({"it": (sock, target)})["it"]

    assert answered - sent < 1.0  # not after the 2 s the application blocks for once it has answered
    assert raw_exchange(served.port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").endswith(b"probe")  # and it serves on


def test_a_client_that_half_closes_after_its_request_still_gets_the_response(serve):
    served = serve("asgi_probe:app", "--mode", "base", "--workers", "1", "--no-access-log")
    for _ in range(10):  # the EOF is read in the pass after the request's, while the response is held
        with socket.create_connection(("127.0.0.1", served.port), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"probe")


@pytest.mark.parametrize("slow", ["/block?seconds=0.3", "/block-then-await?seconds=0.3"])
def test_once_the_loop_stood_still_while_output_waited_responses_leave_at_once(serve, tmp_path, slow):
    served = serve("asgi_probe:app", "--mode", "base", "--workers", "1", "--no-access-log")
    port = served.port

    def while_blocked(round: int, targets: dict[str, str]) -> dict[str, float]:
        """Block the worker, send ``targets`` meanwhile on connections it already reads (so that one pass after
        the block reads them all, in order), and time their responses."""
        requests = {}
        for name, target in targets.items():
            sock = ask(port, "/")  # the connection is accepted and read: its next request wakes the same poll
            arrivals({name: (sock, "/")})
            requests[name] = (sock, target)
        mark = tmp_path / f"blocking-{round}"
        first = ask(port, f"/block?seconds=0.3&mark={mark}")
        try:
            wait_until(mark.exists, message="the worker never began to block")
            for sock, target in requests.values():
                sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            return arrivals({"first": (first, "/block"), **requests})
        finally:
            for sock, _ in requests.values():
                sock.close()
            first.close()

    # The first time: the fast response is held for the end of the pass, and the blocking call after it in the
    # same pass keeps it waiting.
    times = while_blocked(1, {"fast": "/", "slow": slow})
    assert times["fast"] > times["slow"] - 0.1
    # The worker saw its loop stand still while output waited: for a while it writes each response at once.
    times = while_blocked(2, {"fast": "/", "slow": slow})
    assert times["fast"] < times["slow"] - 0.15
