"""Event loop selection: uvloop where it is installed, plain asyncio otherwise or on request."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

from ..settings import EVENT_LOOPS


def new_event_loop(kind: str = "auto") -> asyncio.AbstractEventLoop:
    """A fresh loop of the requested kind; "auto" prefers uvloop and falls back to asyncio silently."""
    if kind not in EVENT_LOOPS:
        raise ValueError(f"event_loop must be one of {EVENT_LOOPS}, not {kind!r}")
    if kind != "asyncio":
        try:
            import uvloop
        except ImportError:
            if kind == "uvloop":
                raise
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_until_complete(loop: asyncio.AbstractEventLoop, main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on ``loop`` as this thread's current loop, then close the loop."""
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        loop.close()
        asyncio.set_event_loop(None)
