"""What a protocol room (HTTP, WebSocket) plugs into the process model, one port at a time.

A plain port's connections are the runtime's own: a ``WorkerConnection`` in BASE mode, a ``ReactorConnection`` in
PROCESS mode, whose packages go to Receive. A port whose ``app_protocol`` is set (by the facade, at start) gets
its connections from that object instead, and the messages of the protocol's own event types that reach a
worker go to it. The runtime never imports a protocol room: the rooms build on the runtime, not the reverse.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..ipc.codec import Message
    from ..port import Port, PortHandlers
    from .connection import Connection
    from .reactor import ReactorThread
    from .worker import EventWorker


class PortProtocol(Protocol):
    def worker_connection(self, worker: EventWorker, port: Port, handlers: PortHandlers) -> Connection:
        """BASE mode: a connection this worker accepted."""

    def reactor_connection(
        self, reactor: ReactorThread, port: Port, handlers: PortHandlers, session_id: int, base: int
    ) -> Connection:
        """PROCESS mode: a connection the master accepted, owned by ``reactor``."""

    def worker_message(self, worker: EventWorker, message: Message) -> None:
        """PROCESS mode: a message of the protocol's own event types from a reactor thread, in a worker."""
