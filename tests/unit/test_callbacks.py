"""The callback runner's tasks: named ``pyswoole`` (no per-task name formatting), made by the loop's task factory
when the application set one."""

from __future__ import annotations

import asyncio
from typing import Any

from pyswoole.runtime.callbacks import TASK_NAME, CallbackRunner


def test_a_spawned_coroutine_runs_as_a_task_named_pyswoole_and_its_result_reaches_then() -> None:
    loop = asyncio.new_event_loop()
    results: list[Any] = []
    names: list[str] = []

    async def callback() -> int:
        task = asyncio.current_task()
        assert task is not None
        names.append(task.get_name())
        return 7

    try:
        runner = CallbackRunner(loop)
        runner.spawn(callback(), results.append)
        loop.run_until_complete(asyncio.wait_for(_until(lambda: bool(results)), 5))
    finally:
        loop.close()
    assert names == [TASK_NAME] and results == [7]


def test_a_task_factory_the_application_set_makes_the_task() -> None:
    loop = asyncio.new_event_loop()
    made: list[asyncio.Task[Any]] = []

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        task = asyncio.Task(coro, loop=loop, **kwargs)
        made.append(task)
        return task

    loop.set_task_factory(factory)
    results: list[Any] = []

    async def callback() -> str:
        return "done"

    coroutine = callback()
    try:
        CallbackRunner(loop).spawn(coroutine, results.append)
        loop.run_until_complete(asyncio.wait_for(_until(lambda: bool(results)), 5))
    finally:
        loop.close()
    # The factory also makes the test's own tasks: the callback's is among them.
    assert [task for task in made if task.get_coro() is coroutine] and results == ["done"]


async def _until(condition: Any) -> None:
    while not condition():
        await asyncio.sleep(0.001)
