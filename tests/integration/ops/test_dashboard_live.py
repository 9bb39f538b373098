"""The dashboard in headless Chromium against a real running server under load: the page's numbers are the
server's, and they move.

``--virtual-time-budget`` runs the page's one-second poll timer many times in a fraction of a real second, while
each fetch goes to the real admin server; with snapshots published every 50 ms, successive polls see the load
move. Set ``PYSWOOLE_SCREENSHOT=<path>`` to keep the screenshot the test takes (docs/images/dashboard.png is one).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from managerkit import incarnations
from serverkit import ServerProcess, wait_until

pytestmark = pytest.mark.timeout(120)

TOKEN = "dashboard-s3cret"


def element_text(dom: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>([^<]*)<', dom)
    assert match, f"no element {element_id}"
    return match.group(1)


def number(text: str) -> float:
    return float(text.replace(",", "")) if re.fullmatch(r"[\d,]+(\.\d+)?", text) else -1.0


@pytest.fixture
def busy_server(start_ops_server: Callable[..., ServerProcess], echo_load: Callable[..., object]) -> ServerProcess:
    server = start_ops_server(
        "PROCESS", worker_num=2, task_worker_num=1, stats_timer_interval=50, admin_server_token=TOKEN
    )
    server.wait_events("worker_start", 3)
    echo_load(server.port, clients=4)
    return server


def test_the_dashboard_shows_the_live_servers_numbers_as_they_move(
    busy_server: ServerProcess, chromium: Callable[..., str], tmp_path: Path
):
    url = busy_server.admin_url + "/#token=" + TOKEN  # type: ignore[attr-defined]
    pids = [found[-1] for found in incarnations(busy_server).values()]

    def moving() -> str | None:
        dom = chromium(url, "--window-size=1280,1000", "--virtual-time-budget=20000", "--dump-dom")
        return dom if number(element_text(dom, "rps")) > 0 else None

    dom = wait_until(moving, timeout=60, interval=0.5, message="the dashboard never showed requests per second")

    assert int(re.search(r'<body[^>]*data-updated="(\d+)"', dom).group(1)) >= 3  # type: ignore[union-attr]
    assert 'class="live ok"' in dom
    assert element_text(dom, "connections") == "4"
    assert number(element_text(dom, "requests")) > 0
    assert number(element_text(dom, "workers-busy")) + number(element_text(dom, "workers-idle")) == 2
    assert element_text(dom, "mode") == "PROCESS"
    assert element_text(dom, "master-pid") == str(busy_server.pid)
    memory = element_text(dom, "memory")
    assert memory.endswith(" MiB") and number(memory[:-4]) > 30  # three processes of some 25 MiB each
    workers_table = dom[dom.index('id="workers"') :]
    assert all(f">{pid}<" in workers_table for pid in pids)

    screenshot = tmp_path / "dashboard.png"
    chromium(url, "--window-size=1280,1560", "--hide-scrollbars", "--virtual-time-budget=60000",
             f"--screenshot={screenshot}")  # fmt: skip
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    if os.environ.get("PYSWOOLE_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["PYSWOOLE_SCREENSHOT"])


def test_without_the_token_the_page_asks_for_it_and_shows_nothing(
    busy_server: ServerProcess, chromium: Callable[..., str]
):
    dom = chromium(
        busy_server.admin_url + "/",  # type: ignore[attr-defined]
        "--window-size=1280,1000",
        "--virtual-time-budget=3000",
        "--dump-dom",
    )

    assert re.search(r'id="tokenbox" style="display: flex;"', dom)
    assert "this admin server needs its token" in dom
    assert 'data-updated="0"' in dom
    assert element_text(dom, "connections") == "—"
