"""The framing of a hosted application's response is the server's to keep right: a body that does not match the
Content-Length the application gave must not desynchronise a keep-alive connection, under ASGI or WSGI."""

from __future__ import annotations

import pytest
from hostkit import raw_exchange

pytestmark = pytest.mark.timeout(90)

THEN_PROBE = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # a second request on the same connection


@pytest.fixture(scope="module", params=["asgi_probe:app", "wsgi_probe:app"])
def probe(request, serve_module):
    return serve_module(request.param, "--workers", "1", "--no-access-log")


def test_a_body_over_its_content_length_is_refused_and_nothing_is_smuggled(probe):
    received = raw_exchange(probe.port, b"GET /long HTTP/1.1\r\nHost: x\r\n\r\n" + THEN_PROBE)

    assert received.startswith(b"HTTP/1.1 500") and b"abcdef" not in received


def test_a_body_short_of_its_content_length_closes_the_connection(probe):
    received = raw_exchange(probe.port, b"GET /short HTTP/1.1\r\nHost: x\r\n\r\n" + THEN_PROBE)

    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"\r\n\r\nabc")  # closed, not reused
