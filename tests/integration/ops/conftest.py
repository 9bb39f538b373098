"""The ``admin`` fixture: an AdminServer on 127.0.0.1, served by a select() loop in a thread."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opskit import AdminFactory, SelectLoop, make_snapshot

from pyswoole.ops.admin import AdminServer


@pytest.fixture
def admin() -> Iterator[AdminFactory]:
    """admin(token=None, snapshot=..., **options) -> the loop serving a new AdminServer on 127.0.0.1."""
    loops: list[SelectLoop] = []

    def start(
        token: str | None = None, snapshot: Callable[[], Mapping[str, Any]] = make_snapshot, **options: Any
    ) -> SelectLoop:
        server = AdminServer(options.pop("host", "127.0.0.1"), 0, token, snapshot, **options)
        loops.append(SelectLoop(server))
        return loops[-1]

    yield start
    for loop in loops:
        loop.stop()
