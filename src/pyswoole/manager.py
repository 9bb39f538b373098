"""The manager: forks the workers, reaps them, replaces the ones that die, and stops them all.

Shaped like gunicorn's arbiter: signal handlers only record the signal and wake the loop (through
``signal.set_wakeup_fd``); the loop acts. The manager runs no event loop and no user code but its own
callbacks (ManagerStart, ManagerStop, WorkerError), so forking from it is safe.

A worker that dies soon after it started (an exception in WorkerStart, an import error) is restarted after a
growing delay, so that a broken deploy logs a line a second instead of spinning a core.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import time
from collections import deque
from typing import TYPE_CHECKING

from . import log
from .constants import Mode, WorkerStatus
from .log import logger
from .shm import Global, Slot

if TYPE_CHECKING:
    from .server import Server

FAST_EXIT = 1.0  # a worker that dies within this many seconds of starting counts as a crash loop
MAX_BACKOFF = 8.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Manager:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.worker_num: int = server.setting["worker_num"]
        self.task_worker_num: int = server.setting["task_worker_num"]
        self.pids: dict[int, int] = {}  # pid -> worker id
        self.started_at: dict[int, float] = {}  # worker id -> start time of the current incarnation
        self.failures: dict[int, int] = {}  # worker id -> consecutive fast crashes
        self.respawn_at: dict[int, float] = {}  # worker id -> when a delayed restart is due
        self.signals: deque[int] = deque()
        self.running = True

    def run(self) -> None:
        server = self.server
        log.set_role("manager")
        server._manager_pid = os.getpid()
        server._shared.globals[Global.MANAGER_PID] = server._manager_pid  # type: ignore[union-attr]
        # PROCESS mode: the manager is the master's child and must not outlive it.
        self.master_pid = os.getppid() if server.mode == Mode.PROCESS else 0
        wake_read, wake_write = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {sig: signal.signal(sig, self._record) for sig in (*STOP_SIGNALS, signal.SIGCHLD)}
        try:
            # As Swoole: task workers first (ids after the event workers), then the event workers.
            for worker_id in range(self.worker_num, self.worker_num + self.task_worker_num):
                self.spawn(worker_id)
            for worker_id in range(self.worker_num):
                self.spawn(worker_id)
            server._call_event("manager_start", server)
            while self.running:
                if self.master_pid and os.getppid() != self.master_pid:
                    logger.warning("master process is gone, the manager stops")
                    self.running = False
                    break
                self._handle_signals()
                if not self.running:
                    break
                self._reap()
                self._respawn_due()
                self._sleep(wake_read)
            if server.mode == Mode.BASE:  # PROCESS mode: the master runs it
                server._call_event("before_shutdown", server)
            self._stop_workers()
            server._call_event("manager_stop", server)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _record(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _sleep(self, wake_read: int) -> None:
        timeout = 1.0
        if self.respawn_at:
            timeout = max(0.0, min(timeout, min(self.respawn_at.values()) - time.monotonic()))
        if self.signals:
            return
        try:
            select.select([wake_read], [], [], timeout)
            while os.read(wake_read, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass

    def _handle_signals(self) -> None:
        while self.signals:
            signum = self.signals.popleft()
            if signum in STOP_SIGNALS:
                self.running = False

    # Children -------------------------------------------------------------------------------------------

    def spawn(self, worker_id: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            self.pids[pid] = worker_id
            self.started_at[worker_id] = time.monotonic()
            return
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for sig in (*STOP_SIGNALS, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            self.server._run_worker(worker_id)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            logger.exception("worker %d failed", worker_id)
            code = 255
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker_id = self.pids.pop(pid, None)
            if worker_id is None:
                logger.warning("unknown child process %d exited", pid)
                continue
            self._on_worker_exit(worker_id, pid, status)

    def _on_worker_exit(self, worker_id: int, pid: int, status: int) -> None:
        server = self.server
        exit_code = os.waitstatus_to_exitcode(status)
        signo = -exit_code if exit_code < 0 else 0
        exit_code = max(exit_code, 0)
        slot = server._shared.slot(worker_id)
        slot[Slot.STATUS] = int(WorkerStatus.EXIT)
        slot[Slot.CONNECTION_NUM] = 0  # its sockets died with it
        if exit_code or signo:
            logger.warning("worker(pid=%d, id=%d) abnormal exit, status=%d, signal=%d", pid, worker_id, exit_code, signo)
            server._call_event("worker_error", server, worker_id, pid, exit_code, signo)
        if not self.running:
            return
        lived = time.monotonic() - self.started_at.get(worker_id, 0.0)
        if (exit_code or signo) and lived < FAST_EXIT:
            failures = self.failures[worker_id] = self.failures.get(worker_id, 0) + 1
            delay = min(MAX_BACKOFF, 0.1 * 2 ** failures)
            logger.warning("worker %d died %.2fs after starting; restarting it in %.1fs", worker_id, lived, delay)
            self.respawn_at[worker_id] = time.monotonic() + delay
        else:
            self.failures.pop(worker_id, None)
            self.spawn(worker_id)

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for worker_id, due in list(self.respawn_at.items()):
            if due <= now and self.running:
                del self.respawn_at[worker_id]
                self.spawn(worker_id)

    def _stop_workers(self) -> None:
        """SIGTERM every worker, wait for them, SIGKILL whoever outlives twice max_wait_time."""
        self.respawn_at.clear()
        for pid in self.pids:
            _kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 2 * self.server.setting["max_wait_time"]
        while self.pids and time.monotonic() < deadline:
            self._reap()
            if self.pids:
                time.sleep(0.01)
        if self.pids:
            logger.warning("wait timeout, all worker processes will be forcibly terminated")
            for pid in self.pids:
                _kill(pid, signal.SIGKILL)
            while self.pids:
                pid, status = os.waitpid(-1, 0)
                worker_id = self.pids.pop(pid, None)
                if worker_id is not None:
                    self._on_worker_exit(worker_id, pid, status)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
