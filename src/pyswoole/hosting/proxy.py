"""Proxy headers: the client's address and scheme as a trusted reverse proxy reports them.

``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only when the connection comes from a trusted address
(``--forwarded-allow-ips``; default ``127.0.0.1``, as uvicorn and gunicorn): :class:`ProxyHeadersAsgi` rewrites the
ASGI scope's ``client`` and ``scheme``, :class:`ProxyHeadersWsgi` the environ's ``REMOTE_ADDR`` and
``wsgi.url_scheme``. The client is the right-most address of ``X-Forwarded-For`` that is not itself trusted (each
proxy appends the address it saw, so that is the last one a trusted party vouches for).

Invariant: a request from an untrusted peer is passed on unchanged, whatever headers it carries.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Final

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Dicts, as ASGI specifies them: the compiled build reads them with dict operations, not generic mapping calls.
Scope = dict[str, Any]
Message = dict[str, Any]


VERDICTS_KEPT: Final = 4096  # peers whose verdict TrustedHosts remembers


class TrustedHosts:
    """The addresses whose proxy headers count: ``"*"`` (all), or addresses and networks (``10.0.0.0/8``).

    A peer without an IP address (a UNIX socket's) is trusted: only a local process can have connected.
    """

    def __init__(self, hosts: str | Sequence[str]) -> None:
        items = [item.strip() for item in (hosts.split(",") if isinstance(hosts, str) else hosts) if item.strip()]
        self.everyone = "*" in items
        self.networks: list[Network] = []
        for item in items:
            if item == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ValueError(f"forwarded_allow_ips: {item!r} is neither an IP address nor a network") from None
        # Every request asks about its peer, and parsing an address costs more than the rest of the check: the
        # verdicts are kept, for a bounded number of peers (emptied when full).
        self._verdicts: dict[object, bool] = {}

    def __contains__(self, host: object) -> bool:
        if self.everyone or not host:
            return True
        verdict = self._verdicts.get(host)
        if verdict is None:
            if len(self._verdicts) >= VERDICTS_KEPT:
                self._verdicts.clear()
            verdict = self._verdicts[host] = self._trusted(str(host))
        return verdict

    def _trusted(self, host: str) -> bool:
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def client_of(self, forwarded_for: str) -> str | None:
        """The client named by an ``X-Forwarded-For`` value, or None when it names none."""
        hosts = [host.strip() for host in forwarded_for.split(",") if host.strip()]
        for host in reversed(hosts):
            if host not in self:
                return host
        return hosts[0] if hosts else None  # every hop trusted: the first one is the client


def _scheme(proto: str, websocket: bool) -> str | None:
    proto = proto.split(",")[-1].strip().lower()  # the proxy nearest to us appended last
    if proto in ("https", "wss"):
        return "wss" if websocket else "https"
    if proto in ("http", "ws"):
        return "ws" if websocket else "http"
    return None


class ProxyHeadersAsgi:
    """ASGI middleware: ``scope["client"]`` and ``scope["scheme"]`` from a trusted proxy's headers."""

    def __init__(self, app: Any, trusted: TrustedHosts) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(
        self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
    ) -> Awaitable[None]:
        # Not a coroutine itself: the scope is rewritten now, and the server awaits the application's coroutine.
        kind = scope["type"]
        if kind in ("http", "websocket"):
            client = scope.get("client")
            if (client[0] if client else None) in self.trusted:
                forwarded_for: list[str] = []  # a repeated header's values, joined as one list
                forwarded_proto = None
                for name, value in scope["headers"]:
                    if name == b"x-forwarded-for":
                        forwarded_for.append(value.decode("latin-1"))
                    elif name == b"x-forwarded-proto":
                        forwarded_proto = value.decode("latin-1")
                if forwarded_proto is not None:
                    scheme = _scheme(forwarded_proto, kind == "websocket")
                    if scheme is not None:
                        scope["scheme"] = scheme
                if forwarded_for:
                    host = self.trusted.client_of(",".join(forwarded_for))
                    if host is not None:
                        scope["client"] = (host, 0)
        result: Awaitable[None] = self.app(scope, receive, send)
        return result


class ProxyHeadersWsgi:
    """WSGI middleware: ``REMOTE_ADDR`` and ``wsgi.url_scheme`` from a trusted proxy's headers."""

    def __init__(self, app: Any, trusted: TrustedHosts) -> None:
        self.app = app
        self.trusted = trusted

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REMOTE_ADDR") in self.trusted:
            forwarded_proto = environ.get("HTTP_X_FORWARDED_PROTO")
            if forwarded_proto is not None:
                scheme = _scheme(forwarded_proto, False)
                if scheme is not None:
                    environ["wsgi.url_scheme"] = scheme
            forwarded_for = environ.get("HTTP_X_FORWARDED_FOR")
            if forwarded_for is not None:
                host = self.trusted.client_of(forwarded_for)
                if host is not None:
                    environ["REMOTE_ADDR"] = host
        result: Iterable[bytes] = self.app(environ, start_response)
        return result
