"""systemd's protocols, without libsystemd: readiness notification, the watchdog, socket activation.

- :func:`notify` sends one datagram to ``$NOTIFY_SOCKET`` (a path, or ``@name`` in the abstract namespace), as
  ``sd_notify`` does. Without that variable it does nothing: the same server runs under systemd and outside it.
- :class:`Watchdog` says when ``WATCHDOG=1`` is due: every half ``WATCHDOG_USEC``, if the watchdog is meant for
  this process (``WATCHDOG_PID`` unset or ours).
- :class:`Notifier` is the server's life cycle as systemd hears it, each message sent once per change of state.
- :func:`listen_fds` takes the sockets systemd passed (``LISTEN_FDS`` of them from fd 3, for ``LISTEN_PID``),
  as ``sd_listen_fds`` does; invariant: they come back in the order systemd passed them, close-on-exec, as
  sockets of their real family and type.

The unit files in ``examples/systemd/`` show the settings these rely on (``Type=notify``, ``NotifyAccess=all``:
the manager, not the main process, sends most notifications).
"""

from __future__ import annotations

import fcntl
import math
import os
import socket
import time
from collections.abc import Mapping

LISTEN_FDS_START = 3


def notify(message: str) -> bool:
    """Send ``message`` (``READY=1``, ``RELOADING=1``, ``STOPPING=1``, ``WATCHDOG=1``, ``STATUS=...``; several
    separated by newlines) to systemd. False when there is no ``NOTIFY_SOCKET`` or the send failed: systemd
    going away must not take the server with it."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address or address[0] not in "/@":  # vsock: addresses are for VMs, not for a service's process
        return False
    if address[0] == "@":
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.sendto(message.encode(), address)
    except OSError:
        return False
    return True


class Watchdog:
    """When to send ``WATCHDOG=1``: every :attr:`interval` seconds (half ``WATCHDOG_USEC``), from a loop that
    calls :meth:`ping_if_due` at least that often (its select timeout bounded by :meth:`due_in`)."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = time.monotonic()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> Watchdog | None:
        """The watchdog systemd asked for, or None when it asked for none, or for another process."""
        usec = environ.get("WATCHDOG_USEC", "")
        pid = environ.get("WATCHDOG_PID", "")
        if not usec.isdigit() or int(usec) == 0:
            return None
        if pid and (not pid.isdigit() or int(pid) != os.getpid()):
            return None
        return cls(int(usec) / 2_000_000)

    def due_in(self) -> float:
        """Seconds until the next ping is due (0 when it is due now)."""
        return max(0.0, self._next - time.monotonic())

    def ping_if_due(self) -> bool:
        """Send ``WATCHDOG=1`` if it is due; True when it was sent."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval
        return notify("WATCHDOG=1")


class Notifier:
    """What the process that watches the workers tells systemd (``Type=notify``): ``READY=1`` once they have all
    started, ``RELOADING=1`` when a reload begins (then ``READY=1`` again once it is over), ``STOPPING=1`` once,
    and ``WATCHDOG=1`` when due. Each state is said once; without ``NOTIFY_SOCKET`` nothing is sent."""

    def __init__(self) -> None:
        self.watchdog = Watchdog.from_environment()
        self.ready = False  # READY=1 was said, and no RELOADING=1 since
        self.stopping = False

    def notify_ready(self) -> None:
        if not self.ready and not self.stopping:
            self.ready = True
            notify("READY=1")

    def notify_reloading(self) -> None:
        self.ready = False
        # MONOTONIC_USEC: systemd (Type=notify-reload) matches the reload it asked for with this one.
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")

    def notify_stopping(self) -> None:
        if not self.stopping:
            self.stopping = True
            notify("STOPPING=1")

    def ping(self) -> None:
        """``WATCHDOG=1`` if it is due; call at least every :meth:`due_in` seconds while the loop is healthy."""
        if self.watchdog is not None:
            self.watchdog.ping_if_due()

    def due_in(self) -> float:
        return self.watchdog.due_in() if self.watchdog is not None else math.inf


def listen_fds(unset_environment: bool = True) -> list[socket.socket]:
    """The sockets systemd passed to this process (socket activation), in order; [] when it passed none.

    With ``unset_environment`` the ``LISTEN_*`` variables are removed, so that the processes this one starts do
    not take the sockets for theirs.
    """
    pid = os.environ.get("LISTEN_PID", "")
    count = os.environ.get("LISTEN_FDS", "")
    if unset_environment:
        for name in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(name, None)
    if not pid or not count:
        return []
    if not pid.isdigit() or not count.isdigit():
        raise ValueError(f"LISTEN_PID={pid!r} LISTEN_FDS={count!r}: not numbers")
    if int(pid) != os.getpid():
        return []
    sockets = []
    for fd in range(LISTEN_FDS_START, LISTEN_FDS_START + int(count)):
        fcntl.fcntl(fd, fcntl.F_SETFD, fcntl.fcntl(fd, fcntl.F_GETFD) | fcntl.FD_CLOEXEC)
        try:
            sockets.append(socket.socket(fileno=fd))  # family, type and protocol are read from the fd
        except OSError as exc:
            raise ValueError(f"LISTEN_FDS: fd {fd} is not a socket ({exc.strerror})") from None
    return sockets
