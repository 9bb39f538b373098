"""The node's registration: kept alive by one process of the node, swept by the others once it runs out.

The keeper runs in the manager (or in the only process of a single-process server), with the blocking client: the
manager has no event loop, and a registration refreshed every third of ``cluster_node_ttl`` costs one round trip.
Each refresh also sweeps the nodes whose registration ran out (their group memberships go, their name leaves the
node list: any live node may do it, the script does it once), and, every ``cluster_node_ttl``, the memberships of
this node's sessions that closed unseen (a worker killed with its sessions, a close while Redis was away).

Invariant: a node is live exactly while its key exists; ``nodes()``, ``members()`` and the redelivery of tasks all
read liveness from that key, so they agree.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..log import logger
from . import wire
from .link import Error
from .wire import Keys

if TYPE_CHECKING:
    from .link import Link

SESSION_SWEEP_BATCH = 1000


def live_and_dead(link: Link) -> tuple[list[str], list[str]]:
    """(live node names, names whose registration ran out); raises the Redis error."""
    live, dead = link.script("NODES")(args=[wire.PREFIX])
    return sorted(name.decode() for name in live), [name.decode() for name in dead]


class Keeper:
    """Registers this node, refreshes its TTL, sweeps dead nodes and this node's closed sessions."""

    def __init__(self, link: Link, node: str, info: dict[str, object], ttl: float, alive: Callable[[int], bool]):
        self.link = link
        self.node = node
        self.info = json.dumps(info)
        self.ttl = ttl
        self.alive = alive  # is this session of the node still open (shared memory says)
        self._next_refresh = 0.0
        self._next_session_sweep = 0.0
        self._registered = False

    def tick(self) -> float:
        """Refresh if due; the seconds until the next call is due."""
        now = time.monotonic()
        if now >= self._next_refresh:
            ok = self._refresh(now)
            # After a failure, try again soon (the TTL runs meanwhile), never more than ~10 times a second.
            self._next_refresh = now + (self.ttl / 3 if ok else min(0.5, self.ttl / 6))
        return max(0.0, self._next_refresh - time.monotonic())

    def _refresh(self, now: float) -> bool:
        link = self.link
        try:
            if not self._registered:
                self._take_name()
            link.script("REGISTER")(args=[wire.PREFIX, self.node, self.info, int(self.ttl * 1000)])
            self._registered = True
            _, dead = live_and_dead(link)
            for name in dead:
                removed = link.script("SWEEP")(args=[wire.PREFIX, name, "0"])
                if removed >= 0:
                    logger.warning(
                        "cluster: node %r is gone (its registration ran out): %d membership(s) removed", name, removed
                    )
            if now >= self._next_session_sweep:
                self._next_session_sweep = now + self.ttl
                self._sweep_sessions()
        except Error as exc:
            link.failed(exc)
            return False
        link.succeeded()
        return True

    def _take_name(self) -> None:
        """On the first contact: what a previous run under this name left (memberships) is removed."""
        before: Any = self.link.client().get(Keys.node(self.node))
        if before is not None and before.decode() != self.info:
            logger.warning(
                "cluster: node name %r was still registered (%s): a previous run that ended less than "
                "cluster_node_ttl ago, or another server with the same name (names must be unique)",
                self.node,
                before.decode(errors="replace"),
            )
        self.link.script("SWEEP")(args=[wire.PREFIX, self.node, "1"])

    def _sweep_sessions(self) -> None:
        client = self.link.client()
        closed = [int(fd) for fd in client.sscan_iter(Keys.node_sessions(self.node), count=SESSION_SWEEP_BATCH)]
        closed = [fd for fd in closed if not self.alive(fd)]
        for start in range(0, len(closed), SESSION_SWEEP_BATCH):
            self.link.script("CLOSE")(args=[wire.PREFIX, self.node, *closed[start : start + SESSION_SWEEP_BATCH]])

    def leave(self) -> None:
        """The node stops: its registration and every membership go at once (the others need not wait)."""
        try:
            self.link.script("SWEEP")(args=[wire.PREFIX, self.node, "1"])
        except Error as exc:
            logger.warning("cluster: node %r could not unregister (%s); it drops out within its TTL", self.node, exc)
