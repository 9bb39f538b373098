"""Hosting Python web applications: ASGI (``asgi``) and WSGI (``wsgi``) on the HTTP and WebSocket servers, the
choice between them (``mount``), and the ``pyswoole serve`` command that builds a server around an application
(``serve``, with ``loader`` and ``proxy``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..constants import Mode

if TYPE_CHECKING:
    from ..runtime.context import Runtime


class ClientDisconnected(OSError):
    """The client went away before its response was complete (ASGI 2.4: ``send()`` raises a server-specific
    ``OSError``; for WSGI it stops the iteration of the result)."""


def connection_ends(rt: Runtime) -> bool:
    """Whether a response made now must announce ``Connection: close``: in BASE mode a stopping worker closes
    each connection after its response (``http.base_connection``); in PROCESS mode the reactor threads keep the
    connections across a reload."""
    worker = rt.worker
    return worker is not None and worker.stopping and rt.mode == Mode.BASE  # per response: the usual False first
