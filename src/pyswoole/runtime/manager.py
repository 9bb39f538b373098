"""The manager: forks and supervises the workers, task workers and user processes; reloads and stops them.

Shaped like gunicorn's arbiter: signal handlers only record the signal and wake the loop (through
``signal.set_wakeup_fd``); the loop acts, one small method per action. The manager runs no event loop and no
user code but its own callbacks (ManagerStart/Stop, WorkerError, BeforeReload/AfterReload), so forking from
it is safe.

* A child that exits is replaced in the same slot and id. One that dies soon after it started (an import
  error, a crash in WorkerStart) is restarted after a growing delay, so a broken deploy logs a line a
  second instead of spinning a core.
* Reload (SIGUSR1: every worker and task worker; SIGUSR2: task workers only): BeforeReload, then each old
  worker gets SIGTERM and drains. With ``reload_async`` its replacement starts at once; without, one worker
  at a time. AfterReload when the last old one is gone; whoever outlives ``max_wait_time`` is killed.
* An event worker whose loop stops beating for ``worker_timeout`` seconds is killed and replaced.
* Every replacement is counted by its cause in shared memory (``stats.RESTART_CAUSES``), every reload too.
* The operators' side lives in its loop as well: the admin server's sockets are in its poll(), systemd hears
  READY=1 once every worker and task worker has started (their slots show their pids), RELOADING=1/READY=1
  around a reload, STOPPING=1, and WATCHDOG=1 while the loop turns. A one-process server has no manager:
  :class:`OpsThread` does that part for it.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .. import log
from ..constants import Mode, WorkerStatus
from ..ipc.shm import ExitCause, Global, Slot
from ..log import logger
from ..ops import systemd
from . import stats

if TYPE_CHECKING:
    from ..ops.admin import AdminServer
    from .context import Runtime

FAST_EXIT = 1.0  # a worker that dies within this many seconds of starting counts as a crash loop
MAX_BACKOFF = 8.0
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
RELOAD_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)
HANDLED_SIGNALS = (*STOP_SIGNALS, *RELOAD_SIGNALS, signal.SIGCHLD, signal.SIGRTMIN)
HEARTBEAT_STALE_MS = 2000  # a one-process server's loop beats every second at most; twice that is a stall


class Manager:
    def __init__(self, rt: Runtime, run_child: Callable[[int], None], admin: AdminServer | None = None) -> None:
        """``run_child(worker_id)`` serves as that worker, task worker or user process in a forked child;
        ``admin``, bound before the fork, is served from this manager's loop."""
        self.rt = rt
        self.run_child = run_child
        self.admin = admin
        setting = rt.setting
        self.worker_num: int = setting["worker_num"]
        self.task_worker_num: int = setting["task_worker_num"]
        self.user_ids = range(
            self.worker_num + self.task_worker_num, self.worker_num + self.task_worker_num + len(rt.processes)
        )
        self.pids: dict[int, int] = {}  # pid -> worker id
        self.current: dict[int, int] = {}  # worker id -> pid of its current incarnation
        self.started_at: dict[int, float] = {}  # worker id -> start time of the current incarnation
        self.failures: dict[int, int] = {}  # worker id -> consecutive fast crashes
        self.respawn_at: dict[int, float] = {}  # worker id -> when a delayed restart is due
        self.signals: deque[int] = deque()
        self.terminated: set[int] = set()  # pids this manager sent SIGTERM: dying of it is no error
        self.timed_out: set[int] = set()  # pids killed for worker_timeout
        self.running = True
        self.master_pid = 0
        # Reload in progress: old pids still to go, pids waiting for their SIGTERM (rolling), the deadline.
        self.reloading: set[int] = set()
        self.reload_queue: deque[int] = deque()
        self.reload_deadline = 0.0
        self.worker_timeout: float = setting["worker_timeout"]
        self._next_stats = 0.0
        self._wake_fds: tuple[int, int] = (-1, -1)
        self.notifier: systemd.Notifier | None = None

    def run(self) -> None:
        rt = self.rt
        log.set_role("manager")
        rt.set_title("manager")
        rt.manager = self
        rt.manager_pid = os.getpid()
        rt.shared.globals[Global.MANAGER_PID] = rt.manager_pid
        # PROCESS mode: the manager is the master's child and must not outlive it.
        self.master_pid = os.getppid() if rt.mode == Mode.PROCESS else 0
        if self.master_pid and os.environ.get("WATCHDOG_PID") == str(self.master_pid):
            os.environ["WATCHDOG_PID"] = str(os.getpid())  # systemd watches the master; this loop pings for it
        notifier = self.notifier = systemd.Notifier()
        wake_read, wake_write = self._wake_fds = os.pipe()
        os.set_blocking(wake_read, False)
        os.set_blocking(wake_write, False)
        previous_wakeup = signal.set_wakeup_fd(wake_write)
        previous = {sig: signal.signal(sig, self._record) for sig in HANDLED_SIGNALS}
        try:
            # As Swoole: task workers first (their ids follow the event workers'), event workers, user processes.
            for worker_id in (
                *range(self.worker_num, self.worker_num + self.task_worker_num),
                *range(self.worker_num),
                *self.user_ids,
            ):
                self.spawn(worker_id)
            rt.call_event("manager_start", rt.server)
            while self.running:
                if self.master_pid and os.getppid() != self.master_pid:
                    logger.warning("master process is gone, the manager stops")
                    break
                if not self._handle_signals():
                    break
                self._reap()
                self._respawn_due()
                self._advance_reload()
                self._check_heartbeats()
                self._write_stats()
                if not notifier.ready and not self.reloading and self._all_started():
                    notifier.notify_ready()
                notifier.ping()
                self._sleep(wake_read)
            self.running = False
            notifier.notify_stopping()
            if rt.mode == Mode.BASE:  # PROCESS mode: the master runs it
                rt.call_event("before_shutdown", rt.server)
            self._stop_children()
            rt.call_event("manager_stop", rt.server)
        finally:
            signal.set_wakeup_fd(previous_wakeup)
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            os.close(wake_read)
            os.close(wake_write)

    def _record(self, signum: int, frame: object) -> None:
        self.signals.append(signum)

    def _sleep(self, wake_read: int) -> None:
        if self.signals:
            return
        timeout = min(1.0, self._next_stats - time.monotonic())  # stats_timer_interval may be shorter
        if self.respawn_at:
            timeout = min(timeout, min(self.respawn_at.values()) - time.monotonic())
        if self.reloading or self.worker_timeout or (self.notifier is not None and not self.notifier.ready):
            timeout = min(timeout, 0.1)
        if self.notifier is not None:
            timeout = min(timeout, self.notifier.due_in())
        wait(wake_read, self.admin, timeout)

    def _handle_signals(self) -> bool:
        """Act on the signals recorded since the last pass; False once one of them stops the manager."""
        while self.signals:
            signum = self.signals.popleft()
            if signum in STOP_SIGNALS:
                self.running = False
            elif signum in RELOAD_SIGNALS:
                self.reload(only_task_workers=signum == signal.SIGUSR2)
            elif signum == signal.SIGRTMIN:
                log.reopen()
                for pid in list(self.pids):
                    _kill(pid, signal.SIGRTMIN)
        return self.running

    # Children -------------------------------------------------------------------------------------------

    def spawn(self, worker_id: int) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        manager_pid = os.getpid()
        pid = os.fork()
        if pid:
            self.pids[pid] = worker_id
            self.current[worker_id] = pid
            self.started_at[worker_id] = time.monotonic()
            return
        code = 0
        try:
            signal.set_wakeup_fd(-1)
            for fd in self._wake_fds:
                os.close(fd)
            if self.admin is not None:
                self.admin.close()  # this process's copy: the manager alone serves it
            for sig in HANDLED_SIGNALS:
                signal.signal(sig, signal.SIG_DFL)
            # The manager forwards SIGRTMIN (reopen the log) to every child, and its default action is to
            # terminate: task workers and user processes keep this handler (event workers install their own).
            signal.signal(signal.SIGRTMIN, lambda signum, frame: log.reopen())
            if worker_id in self.user_ids:
                _die_with_parent(manager_pid)
            self.run_child(worker_id)
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
            self._on_exit(worker_id, pid, status)

    def _on_exit(self, worker_id: int, pid: int, status: int) -> None:
        rt = self.rt
        exit_code = os.waitstatus_to_exitcode(status)
        signo = -exit_code if exit_code < 0 else 0
        exit_code = max(exit_code, 0)
        was_reloading = pid in self.reloading
        self.reloading.discard(pid)
        asked_to_stop = pid in self.terminated
        self.terminated.discard(pid)
        timed_out = pid in self.timed_out
        self.timed_out.discard(pid)
        abnormal = bool(exit_code or signo and not (asked_to_stop and signo == signal.SIGTERM))
        if abnormal:
            logger.warning(
                "worker(pid=%d, id=%d) abnormal exit, status=%d, signal=%d", pid, worker_id, exit_code, signo
            )
            rt.call_event("worker_error", rt.server, worker_id, pid, exit_code, signo)
        if self.current.get(worker_id) != pid:
            return  # an old incarnation, replaced already (reload_async): nothing more to do
        del self.current[worker_id]
        slot = rt.shared.slot(worker_id)
        if was_reloading:
            cause = Global.RESTARTS_RELOAD
        elif timed_out:
            cause = Global.RESTARTS_WORKER_TIMEOUT
        elif abnormal:
            cause = Global.RESTARTS_CRASH
        else:
            cause = self._own_exit_cause(worker_id, slot)
        slot[Slot.STATUS] = int(WorkerStatus.EXIT)
        slot[Slot.CONNECTION_NUM] = 0  # its sockets died with it
        slot[Slot.RSS_BYTES] = 0
        slot[Slot.EXIT_CAUSE] = 0
        if not self.running:
            return
        rt.shared.globals[cause] += 1  # a replacement follows, now or after the back-off
        lived = time.monotonic() - self.started_at.get(worker_id, 0.0)
        # A user process whose callback returns at once would otherwise spin too: any quick exit of one counts.
        crashed = exit_code or signo or worker_id in self.user_ids
        if crashed and lived < FAST_EXIT and not was_reloading:
            failures = self.failures[worker_id] = self.failures.get(worker_id, 0) + 1
            delay = min(MAX_BACKOFF, 0.1 * 2**failures)
            logger.warning("worker %d died %.2fs after starting; restarting it in %.1fs", worker_id, lived, delay)
            self.respawn_at[worker_id] = time.monotonic() + delay
        else:
            self.failures.pop(worker_id, None)
            self.spawn(worker_id)

    def _own_exit_cause(self, worker_id: int, slot: memoryview) -> int:
        """Why a process that exited cleanly, unasked, left: what it wrote in its slot (max_worker_rss), else
        max_request when its count reached the limit, else another reason of its own (``server.stop()``)."""
        if slot[Slot.EXIT_CAUSE] == ExitCause.MAX_WORKER_RSS:
            return Global.RESTARTS_MAX_WORKER_RSS
        setting = self.rt.setting
        done = slot[Slot.REQUEST] - slot[Slot.REQUEST_BASE]
        if worker_id < self.worker_num:
            done += slot[Slot.FAILED] - slot[Slot.FAILED_BASE]
            limit = setting["max_request"]
        elif worker_id < self.worker_num + self.task_worker_num:
            limit = setting["task_max_request"]
        else:
            return Global.RESTARTS_EXIT
        return Global.RESTARTS_MAX_REQUEST if 0 < limit <= done else Global.RESTARTS_EXIT

    def _all_started(self) -> bool:
        """Every event worker and task worker runs: its slot shows the pid of its current process."""
        shared = self.rt.shared
        return all(
            shared.slot(worker_id)[Slot.PID] == self.current.get(worker_id, -1)
            for worker_id in range(self.worker_num + self.task_worker_num)
        )

    def _respawn_due(self) -> None:
        now = time.monotonic()
        for worker_id, due in list(self.respawn_at.items()):
            if due <= now and self.running:
                del self.respawn_at[worker_id]
                self.spawn(worker_id)

    # Reload ---------------------------------------------------------------------------------------------

    def reload(self, only_task_workers: bool) -> bool:
        """Start a graceful reload; False if one is already running or there is nothing to reload."""
        rt = self.rt
        if self.reloading:
            return False
        ids = (
            range(self.worker_num, self.worker_num + self.task_worker_num)
            if only_task_workers
            else range(self.worker_num + self.task_worker_num)
        )
        if only_task_workers and not self.task_worker_num:
            logger.warning("cannot reload task workers, task workers is not started")
            return False
        logger.info("Server is reloading %s now", "task workers" if only_task_workers else "all workers")
        rt.shared.globals[Global.RELOADS] += 1
        if self.notifier is not None:
            self.notifier.notify_reloading()
        rt.call_event("before_reload", rt.server)
        pids = [self.current[worker_id] for worker_id in ids if worker_id in self.current]
        self.reloading = set(pids)
        self.reload_deadline = time.monotonic() + rt.setting["max_wait_time"]
        if rt.setting["reload_async"] and not only_task_workers:
            for pid in pids:
                worker_id = self.pids[pid]
                self._terminate(pid)
                del self.current[worker_id]  # the old one drains on; its slot goes to a new one now
                rt.shared.globals[Global.RESTARTS_RELOAD] += 1
                self.spawn(worker_id)
        else:
            self.reload_queue = deque(pids)
            self._next_in_rolling_reload()
        self._advance_reload()
        return True

    def _next_in_rolling_reload(self) -> None:
        while self.reload_queue:
            pid = self.reload_queue.popleft()
            if pid in self.reloading:
                self.reload_deadline = time.monotonic() + self.rt.setting["max_wait_time"]
                self._terminate(pid)
                return

    def _advance_reload(self) -> None:
        if not self.reloading and not self.reload_queue:
            if self.reload_deadline:
                self.reload_deadline = 0.0
                self.rt.call_event("after_reload", self.rt.server)
            return
        in_flight = self.reloading - set(self.reload_queue)
        if not in_flight:
            self._next_in_rolling_reload()
        elif time.monotonic() >= self.reload_deadline:
            for pid in in_flight:
                logger.warning("force kill worker process(pid=%d, id=%d)", pid, self.pids.get(pid, -1))
                _kill(pid, signal.SIGKILL)
            self.reload_deadline = time.monotonic() + 1.0

    # Health ---------------------------------------------------------------------------------------------

    def _check_heartbeats(self) -> None:
        """Kill an event worker whose loop has not beaten for worker_timeout seconds (it is wedged)."""
        if not self.worker_timeout:
            return
        now_ms = int(time.monotonic() * 1000)
        limit_ms = self.worker_timeout * 1000
        for worker_id in range(self.worker_num):
            pid = self.current.get(worker_id)
            beat = self.rt.shared.slot(worker_id)[Slot.HEARTBEAT_MS]
            if pid is not None and beat and now_ms - beat > limit_ms and pid not in self.reloading:
                logger.warning(
                    "worker(pid=%d, id=%d) has not answered for %.1fs (worker_timeout), killed",
                    pid,
                    worker_id,
                    (now_ms - beat) / 1000,
                )
                _kill(pid, signal.SIGKILL)
                self.timed_out.add(pid)
                self.rt.shared.slot(worker_id)[Slot.HEARTBEAT_MS] = 0

    def _write_stats(self) -> None:
        now = time.monotonic()
        if now >= self._next_stats:
            self._next_stats = now + self.rt.setting["stats_timer_interval"] / 1000
            stats.publish(self.rt)

    # Stop -----------------------------------------------------------------------------------------------

    def _stop_children(self) -> None:
        """SIGTERM every child, wait for them, SIGKILL whoever outlives twice max_wait_time."""
        self.respawn_at.clear()
        for pid in self.pids:
            self._terminate(pid)
        deadline = time.monotonic() + 2 * self.rt.setting["max_wait_time"]
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
                    self._on_exit(worker_id, pid, status)

    def _terminate(self, pid: int) -> None:
        self.terminated.add(pid)
        _kill(pid, signal.SIGTERM)


class OpsThread:
    """A one-process server has no manager: this thread does the manager's part for operators. It serves the admin
    server with the snapshot the process's loop published last (the loop's own state is not this thread's to
    read), and tells systemd READY=1 once the worker runs, WATCHDOG=1 while its loop beats (the heartbeat its
    housekeeping writes), STOPPING=1 once it stops. Nothing forks in such a server, so a thread is safe."""

    def __init__(self, rt: Runtime, admin: AdminServer | None) -> None:
        self.rt = rt
        self.admin = admin
        self.notifier = systemd.Notifier()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="pyswoole-ops", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        os.write(self._wake_write, b"x")
        self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)
        self.notifier.notify_stopping()

    def _run(self) -> None:
        slot = self.rt.shared.slot(0)
        notifier = self.notifier
        pid = os.getpid()
        while not self._stopping:
            if slot[Slot.PID] == pid:
                if slot[Slot.STATUS] == WorkerStatus.EXIT:
                    notifier.notify_stopping()
                else:
                    notifier.notify_ready()
            beat = slot[Slot.HEARTBEAT_MS]
            if beat and time.monotonic() * 1000 - beat < HEARTBEAT_STALE_MS:
                notifier.ping()
            # Clients wait in the backlog until the loop has published its first snapshot.
            admin = self.admin if stats.latest is not None else None
            wait(self._wake_read, admin, min(1.0 if notifier.ready else 0.1, notifier.due_in()))


def wait(wake_read: int, admin: AdminServer | None, timeout: float) -> None:
    """Wait up to ``timeout`` seconds for the wake pipe (drained) or the admin server's sockets (served).

    poll(), not select(): the admin server's sockets may be numbered past FD_SETSIZE in a busy process."""
    poller = select.poll()
    poller.register(wake_read, select.POLLIN)
    readers, writers = admin.fds() if admin is not None else ([], [])
    for fd in readers:
        poller.register(fd, select.POLLIN)
    for fd in writers:
        poller.register(fd, select.POLLOUT)
    try:
        ready = poller.poll(max(0, int(timeout * 1000)))
    except InterruptedError:
        return
    for fd, _ in ready:
        if fd != wake_read:
            admin.on_ready(fd)  # type: ignore[union-attr]
            continue
        try:
            while os.read(wake_read, 512):
                pass
        except (BlockingIOError, InterruptedError):
            pass


def _die_with_parent(parent_pid: int) -> None:
    """Have the kernel SIGTERM this child when the manager dies. Workers notice that by themselves, but a
    user process runs only the user's code: orphaned, it would live on (holding the listening sockets)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent_pid:  # the manager died before the prctl
        os._exit(0)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
