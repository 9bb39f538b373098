"""Task callbacks for ``--task-handler``: ``tasks:handle`` answers each task with ``done:<data>`` from the task
worker's pid."""

from __future__ import annotations

import os


def handle(server, task_id, src_worker_id, data):
    return f"done:{data}:{os.getpid()}"
