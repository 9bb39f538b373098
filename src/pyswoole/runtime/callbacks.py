"""Running the user's callbacks in one process: plain ones at once, ``async def`` ones as tasks of the
process's loop, so that a slow coroutine does not stall other connections. Whatever a callback raises is
logged with its traceback and the process serves on; ``then(result)`` runs when the callback is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from ..log import logger

Then = Callable[[Any], None]


class CallbackRunner:
    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.tasks: set[asyncio.Task[Any]] = set()  # coroutines in flight (a graceful stop waits for them)

    def call(self, callback: Callable[..., Any], args: tuple[Any, ...], then: Then | None = None) -> bool:
        """Call a callback; True if it ran (or its coroutine was started) without raising."""
        try:
            result = callback(*args)
        except Exception:
            logger.exception("%s callback failed", getattr(callback, "__qualname__", callback))
            result, ok = None, False
        else:
            ok = True
        if result is not None and asyncio.iscoroutine(result):  # None (most callbacks): no ABC check
            if self.loop is not None:
                self.spawn(result, then)
                return ok
            logger.error("%s is async, but this process runs no event loop", callback.__qualname__)
            result.close()
            result = None
        if then is not None:
            then(result)
        return ok

    def spawn(self, coroutine: Coroutine[Any, Any, Any], then: Then | None = None) -> None:
        """Run a coroutine as a task of the loop; log what it raises; ``then(its result)`` when it is over."""
        task = self.loop.create_task(coroutine)  # type: ignore[union-attr]
        self.tasks.add(task)

        def done(task: asyncio.Task[Any]) -> None:
            self.tasks.discard(task)
            value = None
            if not task.cancelled():
                exc = task.exception()
                if exc is not None:
                    logger.error(
                        "callback %s failed",
                        getattr(coroutine, "__qualname__", coroutine),
                        exc_info=(type(exc), exc, exc.__traceback__),
                    )
                else:
                    value = task.result()
            if then is not None:
                then(value)

        task.add_done_callback(done)
