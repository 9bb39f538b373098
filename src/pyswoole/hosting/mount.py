"""Which adapter serves an application: ASGI for an ``async`` callable (FastAPI, Starlette, Django's
``ASGIHandler``), WSGI for a plain one taking ``(environ, start_response)`` (Flask, Django's ``WSGIHandler``)."""

from __future__ import annotations

import inspect
from typing import Any

INTERFACES = ("auto", "asgi", "wsgi")


def interface_of(app: Any, interface: str = "auto") -> str:
    """``"asgi"`` or ``"wsgi"``; ``ValueError`` for an unknown interface, or an app that is neither."""
    if interface not in INTERFACES:
        raise ValueError(f"interface: {interface!r} is not one of {', '.join(INTERFACES)}")
    if not callable(app):
        raise ValueError(f"the application must be callable, not {type(app).__name__}")
    if interface != "auto":
        return interface
    call = app if inspect.isfunction(app) or inspect.ismethod(app) else getattr(app, "__call__", None)  # noqa: B004
    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(call):
        return "asgi"
    try:
        parameters = [
            p
            for p in inspect.signature(app).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
    except (TypeError, ValueError):
        parameters = []
    if len(parameters) == 2:
        return "wsgi"
    raise ValueError(
        f"cannot tell whether {app!r} is an ASGI or a WSGI application: pass interface='asgi' or interface='wsgi'"
    )
