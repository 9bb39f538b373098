"""``interface_of``: an ``async`` callable is ASGI, a callable of two positional parameters is WSGI."""

from __future__ import annotations

import pytest

from pyswoole.hosting.mount import interface_of


async def asgi_function(scope, receive, send):
    pass


def wsgi_function(environ, start_response):
    return []


class AsgiClass:
    async def __call__(self, scope, receive, send):
        pass


class WsgiClass:
    def __call__(self, environ, start_response):
        return []


@pytest.mark.parametrize(
    ("app", "interface"),
    [(asgi_function, "asgi"), (AsgiClass(), "asgi"), (wsgi_function, "wsgi"), (WsgiClass(), "wsgi")],
)
def test_the_interface_is_told_from_the_callable(app, interface):
    assert interface_of(app) == interface


def test_an_explicit_interface_is_taken_as_given():
    assert interface_of(wsgi_function, "asgi") == "asgi"


def test_a_callable_that_is_neither_asks_for_the_interface():
    with pytest.raises(ValueError, match="pass interface='asgi' or interface='wsgi'"):
        interface_of(lambda a, b, c: None)


def test_an_unknown_interface_and_a_non_callable_are_refused():
    with pytest.raises(ValueError, match="interface: 'rsgi'"):
        interface_of(asgi_function, "rsgi")
    with pytest.raises(ValueError, match="must be callable, not int"):
        interface_of(42)
