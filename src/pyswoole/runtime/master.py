"""PROCESS mode's master: the main thread accepts, reactor threads do the sockets' I/O.

By the time a Master runs, the manager has been forked (fork before threads: forking a threaded process is
unsafe). The main thread's loop listens on every stream port, allocates each new connection's session and
record, and hands the socket to reactor thread ``fd % reactor_num``. It also runs Start, BeforeShutdown,
the master's timers and signals: SIGTERM/SIGINT shut the server down; a pidfd tells it that the manager died.

Shutdown: BeforeShutdown -> stop accepting -> reactor threads stop reading -> SIGTERM the manager and wait for
it (its workers finish what they have, their answers still go out, and run WorkerStop; it runs ManagerStop) ->
reactor threads flush and close their connections -> back in ``start()``, Shutdown.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from typing import TYPE_CHECKING

from .. import log
from ..errors import ServerError
from ..ipc.shm import Global, Slot
from ..log import logger
from ..port import Port, PortHandlers
from .callbacks import CallbackRunner
from .loop import run_until_complete
from .reactor import ReactorThread
from .timers import Timers

if TYPE_CHECKING:
    from .context import Runtime

ACCEPT_BATCH = 64
# The signals the master's loop handles. boot blocks them before forking the manager, and the master unblocks
# them once its handlers are in place: a stop asked for at once (a worker whose application failed to start
# calls shutdown()) or an early reload then waits a moment instead of meeting the default action, which would
# kill the master and leave its children without it.
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN)


class Master:
    def __init__(self, rt: Runtime, manager_pid: int) -> None:
        self.rt = rt
        self.manager_pid = manager_pid
        self.shared = rt.shared
        primary = rt.ports[0]
        handlers = {port.fileno: PortHandlers(port, primary) for port in rt.ports}
        self.reactors = [ReactorThread(rt, i, handlers) for i in range(rt.setting["reactor_num"])]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.timers: Timers | None = None
        self._manager_fd = -1
        self._too_many = log.Throttle()
        self._stopped: asyncio.Future[None] | None = None

    def run(self) -> None:
        rt = self.rt
        log.set_role("master")
        rt.set_title("master")
        loop = self.loop = rt.new_loop()
        self.timers = Timers(loop)
        self.runner = CallbackRunner(loop)
        run_until_complete(loop, self._serve())

    async def _serve(self) -> None:
        loop = self.loop
        assert loop is not None
        rt = self.rt
        self._stopped = loop.create_future()
        for reactor in self.reactors:
            reactor.start()
        for reactor in self.reactors:
            if not reactor.ready.wait(10):
                raise ServerError(f"reactor thread {reactor.reactor_id} did not start")
        for port in rt.ports:
            if port.is_stream:
                loop.add_reader(port.fileno, self._accept, port)
        loop.add_signal_handler(signal.SIGTERM, self.shutdown)
        loop.add_signal_handler(signal.SIGINT, self.shutdown)
        for forwarded in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGRTMIN):
            loop.add_signal_handler(forwarded, self._forward_to_manager, forwarded)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)  # what came meanwhile is handled now
        self._manager_fd = os.pidfd_open(self.manager_pid)  # readable once the manager has exited
        loop.add_reader(self._manager_fd, self._manager_exited)
        self.shared.globals[Global.MASTER_PID] = os.getpid()
        rt.enter_master(self)
        rt.call_event("start", rt.server)
        await self._stopped
        rt.call_event("before_shutdown", rt.server)
        for port in rt.ports:
            if port.is_stream:
                loop.remove_reader(port.fileno)
        self.timers.clear_all()  # type: ignore[union-attr]
        self._forget_manager_fd()
        await loop.run_in_executor(None, self._stop_reading)
        await loop.run_in_executor(None, self._stop_manager)
        await loop.run_in_executor(None, self._stop_reactors)
        rt.leave_master()

    def _forward_to_manager(self, signum: int) -> None:
        """Reload signals are the manager's business; the master also reopens its log (logrotate)."""
        log.reopen()
        if self.manager_pid:
            os.kill(self.manager_pid, signum)

    def shutdown(self) -> None:
        if self._stopped is not None and not self._stopped.done():
            self._stopped.set_result(None)

    # Accept ---------------------------------------------------------------------------------------------

    def _accept(self, port: Port) -> None:
        shared = self.shared
        table = shared.table
        reactors = self.reactors
        for _ in range(ACCEPT_BATCH):
            try:
                sock, address = port.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                logger.warning("accept on %r failed: %s", port, exc)
                return
            fd = sock.fileno()
            reactor = reactors[fd % len(reactors)]
            session_id = shared.allocate_session()
            if session_id < 0:
                if self._too_many.ready():
                    logger.warning("Too many connections [max_connection=%d], connection refused", table.size)
                reactor.slot[Slot.ABORT] += 1
                sock.close()
                continue
            sock.setblocking(False)  # its port's socket options are set by the reactor (Connection)
            base = table.open(session_id, fd, reactor.reactor_id, port.fileno, address)
            reactor.slot[Slot.ACCEPT] += 1
            reactor.slot[Slot.CONNECTION_NUM] += 1
            reactor.call(reactor.adopt, sock, port, session_id, base)

    # Shutdown -------------------------------------------------------------------------------------------

    def _manager_exited(self) -> None:
        self._forget_manager_fd()
        _, status = os.waitpid(self.manager_pid, 0)
        logger.error("Fatal Error: manager process exit (status %d); shutting down", status)
        self.manager_pid = 0
        self.shutdown()

    def _forget_manager_fd(self) -> None:
        if self._manager_fd >= 0:
            self.loop.remove_reader(self._manager_fd)  # type: ignore[union-attr]
            os.close(self._manager_fd)
            self._manager_fd = -1

    def _stop_reading(self) -> None:
        events = []
        for reactor in self.reactors:
            done = threading.Event()
            events.append(done)
            reactor.call(reactor.stop_reading, done)
        for done in events:
            done.wait(1)

    def _stop_reactors(self) -> None:
        events = []
        for reactor in self.reactors:
            done = threading.Event()
            events.append(done)
            reactor.call(reactor.shutdown, done)
        for reactor, done in zip(self.reactors, events, strict=False):
            done.wait(self.rt.setting["max_wait_time"] + 1)
            reactor.thread.join(1)

    def _stop_manager(self) -> None:
        """SIGTERM the manager and wait for it: it stops the workers; SIGKILL it if it hangs."""
        pid = self.manager_pid
        if not pid:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + 2 * self.rt.setting["max_wait_time"] + 2
        while time.monotonic() < deadline:
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                return
            if done:
                return
            time.sleep(0.01)
        logger.warning("manager process %d did not stop in time, killed", pid)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
