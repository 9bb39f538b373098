"""The dashboard in a real headless Chromium against a real AdminServer: its numbers move every second."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

from opskit import AdminFactory, make_snapshot


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no element {element_id}"
    return match.group(1)


def test_the_dashboard_refreshes_and_shows_the_numbers(admin: AdminFactory, chromium: Callable[..., str]) -> None:
    started = time.time()
    calls = {"n": 0}

    def snapshot() -> dict[str, Any]:
        calls["n"] += 1
        # a virtual second per poll: 250 requests per second
        return make_snapshot(requests=5000 + 250 * calls["n"], now=started + calls["n"])

    loop = admin(snapshot=snapshot)
    dom = chromium(loop.url + "/", "--window-size=1280,1000", "--virtual-time-budget=6000", "--dump-dom")
    updated = int(re.search(r'<body[^>]*data-updated="(\d+)"', dom).group(1))  # type: ignore[union-attr]
    assert updated >= 3
    assert calls["n"] == updated
    assert element_text(dom, "rps") == "250"
    assert element_text(dom, "connections") == "7"
    assert element_text(dom, "workers-busy") == "1"
    assert element_text(dom, "workers-idle") == "1"
    assert element_text(dom, "tasking") == "3"
    assert element_text(dom, "memory") == "82.0 MiB"
    assert dom.count("<tr>") >= 4  # the table head and one row per process
    assert 'class="live ok"' in dom
