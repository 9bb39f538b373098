"""A snapshot of the shape the server publishes every second, for the tests of the operations blocks."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture
def snapshot() -> dict[str, Any]:
    return {
        "time": 1_800_000_100.5,
        "server": {
            "start_time": 1_800_000_000,
            "connection_num": 7,
            "accept_count": 120,
            "close_count": 113,
            "abort_count": 2,
            "request_count": 5000,
            "response_count": 4990,
            "dispatch_count": 5000,
            "total_recv_bytes": 640_000,
            "total_send_bytes": 638_720,
            "worker_num": 2,
            "task_worker_num": 1,
            "user_worker_num": 1,
            "idle_worker_num": 1,
            "task_idle_worker_num": 1,
            "tasking_num": 3,
            "task_count": 40,
            "pipe_packet_msg_id": 9,
            "session_round": 120,
            "coroutine_num": 0,
        },
        "master_pid": 4100,
        "manager_pid": 4101,
        "mode": "PROCESS",
        "workers": [
            {
                "id": 0,
                "type": "worker",
                "pid": 4102,
                "status": "busy",
                "requests": 3000,
                "dispatch": 3000,
                "rss_bytes": 31_457_280,
                "connections": 4,
                "started": 1_800_000_001.25,
            },
            {
                "id": 1,
                "type": "worker",
                "pid": 4103,
                "status": "idle",
                "requests": 2000,
                "dispatch": 2000,
                "rss_bytes": 29_360_128,
                "connections": 3,
                "started": 1_800_000_001.5,
            },
            {
                "id": 2,
                "type": "task_worker",
                "pid": 4104,
                "status": "idle",
                "requests": 40,
                "dispatch": 40,
                "rss_bytes": 25_165_824,
                "connections": 0,
                "started": 1_800_000_001.75,
            },
            {
                "id": 3,
                "type": "user",
                "pid": 4105,
                "status": "exit",
                "requests": 0,
                "dispatch": 0,
                "rss_bytes": 0,
                "connections": 0,
                "started": 1_800_000_002.0,
            },
        ],
        "restarts": {"crash": 1, "max_request": 4, "max_worker_rss": 0, "worker_timeout": 0, "reload": 2},
        "reloads": 1,
        "dropped_pipe_messages": 5,
        "http": {"1xx": 0, "2xx": 4800, "3xx": 10, "4xx": 170, "5xx": 10},
    }
