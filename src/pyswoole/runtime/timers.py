"""Per-process timers on the process's event loop: ``tick`` (repeating) and ``after`` (one-shot).

Timer ids are unique within a process. A tick re-arms from its scheduled time, not from when its callback
finished, so a slow callback does not make the period drift.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from ..log import logger


class Timers:
    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._handles: dict[int, asyncio.TimerHandle] = {}
        self._last_id = 0

    def __len__(self) -> int:
        return len(self._handles)

    def tick(self, ms: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> int:
        timer_id = self._new_id(ms, callback)
        interval = ms / 1000

        def fire(due: float) -> None:
            self._handles[timer_id] = self._loop.call_at(due + interval, fire, due + interval)
            self._run(callback, (timer_id, *args))

        start = self._loop.time() + interval
        self._handles[timer_id] = self._loop.call_at(start, fire, start)
        return timer_id

    def after(self, ms: int, callback: Callable[..., Any], args: tuple[Any, ...]) -> int:
        timer_id = self._new_id(ms, callback)

        def fire() -> None:
            del self._handles[timer_id]
            self._run(callback, args)

        self._handles[timer_id] = self._loop.call_later(ms / 1000, fire)
        return timer_id

    def clear(self, timer_id: int) -> bool:
        handle = self._handles.pop(timer_id, None)
        if handle is None:
            return False
        handle.cancel()
        return True

    def clear_all(self) -> None:
        for handle in self._handles.values():
            handle.cancel()
        self._handles.clear()

    def _new_id(self, ms: int, callback: Callable[..., Any]) -> int:
        if not callable(callback):
            raise TypeError(f"timer callback must be callable, not {type(callback).__name__}")
        if not isinstance(ms, int) or isinstance(ms, bool) or ms < 1:
            raise ValueError(f"timer interval must be an int >= 1 ms, not {ms!r}")
        self._last_id += 1
        return self._last_id

    def _run(self, callback: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            result = callback(*args)
            if inspect.iscoroutine(result):
                self._loop.create_task(result)
        except Exception:
            logger.exception("timer callback %r failed", callback)
