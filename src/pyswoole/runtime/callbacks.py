"""Running the user's callbacks in one process: plain ones at once, ``async def`` ones as tasks of the
process's loop, so that a slow coroutine does not stall other connections. Whatever a callback raises is
logged with its traceback and the process serves on; ``then(result)`` runs when the callback is over."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Final

from ..log import logger

Then = Callable[[Any], None]

_COROUTINE_TYPES: Final[set[type]] = set()  # the types asyncio.iscoroutine said yes to
# Every task the runner starts has this name: given none, Python 3.11 formats a "Task-N" name per task (a
# sprintf per request, 1.3 % of an ASGI hello's CPU).
TASK_NAME: Final = "pyswoole"


def is_coroutine(value: object) -> bool:
    """``asyncio.iscoroutine``, with its answer cached per type in compiled code (asyncio's own cache is read by
    interpreted code, once per request on the hot path)."""
    kind = type(value)
    if kind in _COROUTINE_TYPES:
        return True
    if asyncio.iscoroutine(value):
        _COROUTINE_TYPES.add(kind)
        return True
    return False


class CallbackRunner:
    def __init__(self, loop: asyncio.AbstractEventLoop | None) -> None:
        self.loop = loop
        self.tasks: set[asyncio.Task[Any]] = set()  # coroutines in flight (a graceful stop waits for them)
        self._then: dict[asyncio.Task[Any], Then] = {}  # what to call when a task is over, for those that have one

    def call(self, callback: Callable[..., Any], args: tuple[Any, ...], then: Then | None = None) -> bool:
        """Call a callback; True if it ran (or its coroutine was started) without raising."""
        try:
            result = callback(*args)
        except Exception:
            logger.exception("%s callback failed", getattr(callback, "__qualname__", callback))
            result, ok = None, False
        else:
            ok = True
        if result is not None and is_coroutine(result):  # None (most callbacks): no type check
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
        loop = self.loop
        assert loop is not None
        # asyncio.Task directly, which takes a name at once (the loop's create_task sets it after the Task made
        # one of its own), unless the application gave the loop a task factory.
        if loop.get_task_factory() is None:
            task: asyncio.Task[Any] = asyncio.Task(coroutine, loop=loop, name=TASK_NAME)
        else:
            task = loop.create_task(coroutine)
        self.tasks.add(task)
        if then is not None:
            self._then[task] = then
        task.add_done_callback(self._task_done)  # one bound method for every task: no closure per task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self.tasks.discard(task)
        then = self._then.pop(task, None) if self._then else None
        value = None
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                logger.error(
                    "callback %s failed",
                    getattr(task.get_coro(), "__qualname__", task.get_coro()),
                    exc_info=(type(exc), exc, exc.__traceback__),
                )
            else:
                value = task.result()
        if then is not None:
            then(value)
