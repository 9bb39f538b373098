"""When shared state may be made: before the server starts, in the process that forks all the others.

Every Table, Atomic and Lock is an anonymous shared mapping, seen by the processes forked after it was made and by
no other. ``Server.start()`` therefore calls :func:`seal` before it forks anything; from then on this process, and
every process it forks, refuses to make new ones. Invariant: sealing is one-way for the life of the process.
"""

from __future__ import annotations

from ..errors import ServerError

_sealed = False


def seal() -> None:
    """Refuse new Tables, Atomics and Locks from now on, here and in every process forked from here."""
    global _sealed
    _sealed = True


def check_creatable(what: str) -> None:
    """Raise ServerError if shared state can no longer be made (the server has started)."""
    if _sealed:
        raise ServerError(
            f"unable to create {what} after the server has started: make it before start(), "
            "so that every process of the server shares it"
        )
