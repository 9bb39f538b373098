"""Proxy headers: which peers are trusted, which address of X-Forwarded-For is the client, and what the ASGI and
WSGI middlewares change (only for a trusted peer)."""

from __future__ import annotations

import asyncio

import pytest

from pyswoole.hosting.proxy import VERDICTS_KEPT, ProxyHeadersAsgi, ProxyHeadersWsgi, TrustedHosts


def test_trusted_hosts_are_addresses_and_networks():
    trusted = TrustedHosts("127.0.0.1, 10.0.0.0/8,::1")

    assert "127.0.0.1" in trusted and "10.20.30.40" in trusted and "::1" in trusted
    assert "192.168.1.1" not in trusted and "not-an-address" not in trusted


def test_a_star_trusts_everyone_and_a_peer_without_an_address_is_trusted():
    assert "203.0.113.9" in TrustedHosts("*")
    assert "" in TrustedHosts("127.0.0.1") and None in TrustedHosts("127.0.0.1")  # a UNIX socket's peer


def test_verdicts_stay_right_past_the_number_of_peers_remembered():
    trusted = TrustedHosts("10.0.0.0/8")
    peers = [f"10.{i // 256 % 256}.{i % 256}.1" for i in range(VERDICTS_KEPT + 10)]
    outsiders = [f"192.168.{i // 256 % 256}.{i % 256}" for i in range(VERDICTS_KEPT + 10)]
    for _ in range(2):  # the second round asks again, after the remembered verdicts were dropped
        assert all(peer in trusted for peer in peers)
        assert not any(outsider in trusted for outsider in outsiders)
        assert "not an address" not in trusted


def test_a_wrong_entry_is_refused():
    with pytest.raises(ValueError, match="'localhost' is neither an IP address nor a network"):
        TrustedHosts("127.0.0.1,localhost")


@pytest.mark.parametrize(
    ("trusted", "forwarded_for", "client"),
    [
        ("127.0.0.1", "203.0.113.7", "203.0.113.7"),
        ("127.0.0.1", "203.0.113.7, 10.1.2.3", "10.1.2.3"),  # the right-most address not trusted
        ("127.0.0.1,10.0.0.0/8", "203.0.113.7, 10.1.2.3", "203.0.113.7"),
        ("*", "203.0.113.7, 10.1.2.3", "203.0.113.7"),  # every hop trusted: the first one
        ("127.0.0.1", " , ", None),
    ],
)
def test_the_client_is_the_right_most_untrusted_address(trusted, forwarded_for, client):
    assert TrustedHosts(trusted).client_of(forwarded_for) == client


def asgi_scope(client_host: str, headers: list[tuple[bytes, bytes]], kind: str = "http") -> dict:
    return {"type": kind, "scheme": "ws" if kind == "websocket" else "http", "client": (client_host, 5000),
            "headers": headers}  # fmt: skip


def run_asgi(scope: dict, trusted: str = "127.0.0.1") -> dict:
    seen = {}

    async def app(scope, receive, send):
        seen.update(scope)

    asyncio.run(ProxyHeadersAsgi(app, TrustedHosts(trusted))(scope, None, None))
    return seen


def test_asgi_middleware_sets_client_and_scheme_from_a_trusted_peer():
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-for", b"198.51.100.2"),
               (b"x-forwarded-proto", b"https")]  # fmt: skip

    scope = run_asgi(asgi_scope("127.0.0.1", headers))

    assert scope["client"] == ("198.51.100.2", 0) and scope["scheme"] == "https"


def test_asgi_middleware_gives_a_websocket_wss():
    scope = run_asgi(asgi_scope("127.0.0.1", [(b"x-forwarded-proto", b"https")], kind="websocket"))

    assert scope["scheme"] == "wss"


def test_asgi_middleware_leaves_an_untrusted_peers_request_alone():
    headers = [(b"x-forwarded-for", b"203.0.113.7"), (b"x-forwarded-proto", b"https")]

    scope = run_asgi(asgi_scope("192.0.2.1", headers))

    assert scope["client"] == ("192.0.2.1", 5000) and scope["scheme"] == "http"


def test_asgi_middleware_ignores_an_unknown_scheme_and_the_lifespan_scope():
    assert run_asgi(asgi_scope("127.0.0.1", [(b"x-forwarded-proto", b"gopher")]))["scheme"] == "http"
    assert run_asgi({"type": "lifespan"}) == {"type": "lifespan"}


def run_wsgi(environ: dict, trusted: str = "127.0.0.1") -> dict:
    seen = {}

    def app(environ, start_response):
        seen.update(environ)
        return []

    ProxyHeadersWsgi(app, TrustedHosts(trusted))(environ, lambda *args: None)
    return seen


def test_wsgi_middleware_sets_remote_addr_and_url_scheme_from_a_trusted_peer():
    environ = run_wsgi({"REMOTE_ADDR": "127.0.0.1", "wsgi.url_scheme": "http",
                        "HTTP_X_FORWARDED_FOR": "203.0.113.7,10.0.0.5", "HTTP_X_FORWARDED_PROTO": "https"},
                       trusted="127.0.0.1,10.0.0.0/8")  # fmt: skip

    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("203.0.113.7", "https")


def test_wsgi_middleware_leaves_an_untrusted_peers_request_alone():
    environ = run_wsgi({"REMOTE_ADDR": "192.0.2.1", "wsgi.url_scheme": "http",
                        "HTTP_X_FORWARDED_FOR": "203.0.113.7", "HTTP_X_FORWARDED_PROTO": "https"})  # fmt: skip

    assert (environ["REMOTE_ADDR"], environ["wsgi.url_scheme"]) == ("192.0.2.1", "http")
