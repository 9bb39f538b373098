"""`pyswoole top`'s curses loop in a real terminal (a tmux pane), reading a stats file the test writes."""

from __future__ import annotations

import json
import re
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from opskit import make_snapshot


def write_stats(path: Path, snapshot: dict[str, Any]) -> None:
    """As the server does: write aside, then rename, so that a reader never sees half a file."""
    path.with_suffix(".tmp").write_text(json.dumps(snapshot))
    path.with_suffix(".tmp").rename(path)


def test_top_shows_the_workers_and_quits_on_q(pane: Callable[[str], Any], tmp_path: Path) -> None:
    pid_file = tmp_path / "server.pid"
    stats = Path(str(pid_file) + ".stats.json")
    code = "import sys; from pyswoole.ops.top import run; sys.exit(run(sys.argv[1]))"
    top = pane(f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {shlex.quote(str(pid_file))}")

    top.wait_for(lambda screen: "no stats: is the server running" in screen)

    write_stats(stats, make_snapshot(requests=5000, now=time.time() - 60))
    screen = top.wait_for(lambda screen: "4102" in screen)
    assert re.search(r"stale: these stats are 6\ds old", screen)  # shown, and said to be stale

    now = time.time()
    write_stats(stats, make_snapshot(requests=5000, now=now))
    top.wait_for(lambda screen: "stale" not in screen and "requests 5,000" in screen)
    write_stats(stats, make_snapshot(requests=5250, now=now + 1))
    screen = top.wait_for(lambda screen: "requests/s 250.0" in screen)
    rows = {line.split()[2]: line.split() for line in screen.splitlines() if line[:4].strip().isdigit()}
    assert rows["4102"][:4] == ["0", "worker", "4102", "busy"]
    assert rows["4103"][:4] == ["1", "worker", "4103", "idle"]
    assert rows["4104"][:4] == ["2", "task_worker", "4104", "idle"]
    assert "task workers 1/1 idle" in screen  # the whole width of the pane is used, past 80 columns
    assert [line for line in screen.splitlines() if line.strip()][-1] == "q quits"

    top.tmux("send-keys", "-t", "top", "q")
    assert top.exit_status() == 0
