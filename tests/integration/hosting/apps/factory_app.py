"""An application factory for ``--factory``: ``create_app()`` returns the ASGI probe."""

from __future__ import annotations

from asgi_probe import app


def create_app():
    return app
