"""top.render: the screen of `pyswoole top`, from the current snapshot and the one before it."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pyswoole.ops.top import COLUMNS, TABLE_TITLE_ROW, render


@pytest.fixture
def previous(snapshot: dict[str, Any]) -> dict[str, Any]:
    earlier = copy.deepcopy(snapshot)
    earlier["time"] -= 2.0
    earlier["server"]["request_count"] -= 500
    earlier["workers"][0]["requests"] -= 300
    earlier["workers"][1]["requests"] -= 200
    return earlier


def row_of(lines: list[str], pid: int) -> list[str]:
    [row] = [line for line in lines[TABLE_TITLE_ROW + 1 :] if f" {pid} " in line]
    return row.split()


def test_header_names_the_server_and_its_numbers(snapshot: dict[str, Any], previous: dict[str, Any]) -> None:
    lines = render(snapshot, previous, 200, 40)
    assert "PROCESS" in lines[0] and "master 4100" in lines[0] and "manager 4101" in lines[0]
    assert "up 00:01:40" in lines[0]  # time 1_800_000_100.5, started 1_800_000_000
    assert "connections 7" in lines[1]
    assert "requests/s 250.0" in lines[1]  # 500 requests in 2 s
    assert "requests 5,000" in lines[1]
    assert "tasks queued 3" in lines[1]
    assert "workers 1 busy / 1 idle" in lines[1]
    assert "restarts 7 (crash 1, max_request 4, reload 2)" in lines[2]
    assert lines[TABLE_TITLE_ROW] == COLUMNS


def test_one_row_per_process_with_its_rate(snapshot: dict[str, Any], previous: dict[str, Any]) -> None:
    lines = render(snapshot, previous, 200, 40)
    assert len(lines) == TABLE_TITLE_ROW + 1 + 4
    assert row_of(lines, 4102) == ["0", "worker", "4102", "busy", "3,000", "150.0", "30.0", "4"]
    assert row_of(lines, 4104) == ["2", "task_worker", "4104", "idle", "40", "0.0", "24.0", "0"]
    assert row_of(lines, 4105)[:4] == ["3", "user", "4105", "exit"]


def test_no_rates_without_a_previous_snapshot(snapshot: dict[str, Any]) -> None:
    lines = render(snapshot, None, 200, 40)
    assert "requests/s -" in lines[1]
    assert row_of(lines, 4102)[5] == "-"


def test_a_restarted_worker_has_no_rate_across_its_restart(snapshot: dict[str, Any], previous: dict[str, Any]) -> None:
    previous["workers"][0]["pid"] = 999
    lines = render(snapshot, previous, 200, 40)
    assert row_of(lines, 4102)[5] == "-"
    assert row_of(lines, 4103)[5] == "100.0"


def test_days_of_uptime(snapshot: dict[str, Any]) -> None:
    snapshot["time"] = snapshot["server"]["start_time"] + 2 * 86400 + 3 * 3600 + 4 * 60 + 5
    assert "up 2d 03:04:05" in render(snapshot, None, 200, 40)[0]


def test_rows_that_do_not_fit_are_counted(snapshot: dict[str, Any]) -> None:
    lines = render(snapshot, None, 200, TABLE_TITLE_ROW + 3)
    assert len(lines) == TABLE_TITLE_ROW + 3
    assert lines[-2].split()[2] == "4102"
    assert lines[-1].strip() == "... 3 more"


def test_a_snapshot_with_no_workers(snapshot: dict[str, Any]) -> None:
    snapshot["workers"] = []
    assert render(snapshot, None, 200, 40)[-1] == COLUMNS


@given(width=st.integers(0, 300), height=st.integers(0, 60))
def test_every_line_fits_the_screen(width: int, height: int) -> None:
    snapshot = {"time": 100.0, "mode": "BASE", "server": {"start_time": 1, "request_count": 10**12},
                "workers": [{"id": n, "type": "worker", "pid": 10_000 + n, "status": "idle", "requests": 10**9,
                             "rss_bytes": 2**40, "connections": 5} for n in range(50)]}  # fmt: skip
    lines = render(snapshot, None, width, height)
    assert len(lines) <= height
    assert all(len(line) <= width for line in lines)
