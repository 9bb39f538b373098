"""One process's way to Redis: its clients, made on first use in that process, and whether Redis answers.

A forked child never uses its parent's connections: the clients are made lazily and remade when the pid
changes, so each process (worker, task worker, manager, master) has its own pool. An event worker uses the
asyncio client for what may wait (publishing, the subscription, blocking reads) and the blocking client for the
calls whose answer the caller needs at once (``join``, ``members``, ``task_wait``...); other processes have no
loop of their own to spare and use the blocking client only.

Redis away: the first failure is logged once (a warning), calls then fail fast with ``CLUSTER_UNAVAILABLE`` for
``RETRY_AFTER`` seconds before the next one tries again (redis-py reconnects and backs off by itself); the first
success after an outage is logged too. So a node whose Redis is gone serves its own clients as before, and its
cluster calls answer False at once instead of blocking its loop on every call.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from ..log import logger
from . import scripts

CONNECT_TIMEOUT = 0.5
SOCKET_TIMEOUT = 1.0  # a blocking call waits at most this long for Redis; blocking reads wait less (BLOCK_SLICE)
ASYNC_SOCKET_TIMEOUT = 5.0
BLOCK_SLICE = 0.5  # the longest a blocking read (BLPOP, XREADGROUP BLOCK) waits in one call
RETRY_AFTER = 0.5
ASYNC_POOL_SIZE = 16

Error = redis.RedisError


class Link:
    """Redis clients of this process for one cluster URL, and the state of the connection to it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._pid = 0
        self._sync: redis.Redis | None = None
        self._async: redis.asyncio.Redis | None = None
        self._sync_scripts: dict[str, Any] = {}
        self._async_scripts: dict[str, Any] = {}
        self._down_until = 0.0
        self._down = False

    def _fresh(self) -> None:
        """Forget clients made by another process (the parent, before it forked this one)."""
        pid = os.getpid()
        if pid != self._pid:
            self._pid = pid
            self._sync = self._async = None
            self._sync_scripts, self._async_scripts = {}, {}

    @staticmethod
    def _retry() -> Retry:
        return Retry(ExponentialBackoff(cap=0.2, base=0.02), retries=1)

    def client(self) -> redis.Redis:
        """The blocking client of this process."""
        self._fresh()
        if self._sync is None:
            self._sync = redis.Redis.from_url(
                self.url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=SOCKET_TIMEOUT,
                retry=self._retry(),
                health_check_interval=30,
            )
        return self._sync

    def aclient(self) -> redis.asyncio.Redis:
        """The asyncio client of this process (for its one event loop)."""
        self._fresh()
        if self._async is None:
            self._async = redis.asyncio.Redis.from_url(
                self.url,
                socket_connect_timeout=CONNECT_TIMEOUT,
                socket_timeout=ASYNC_SOCKET_TIMEOUT,
                retry=self._retry(),
                health_check_interval=30,
                max_connections=ASYNC_POOL_SIZE,
            )
        return self._async

    def script(self, name: str) -> Any:
        """A registered script (``scripts.<NAME>``) of the blocking client: call it with ``args=[...]``."""
        self._fresh()
        found = self._sync_scripts.get(name)
        if found is None:
            found = self._sync_scripts[name] = self.client().register_script(getattr(scripts, name))
        return found

    def ascript(self, name: str) -> Any:
        """A registered script of the asyncio client: ``await`` its call."""
        self._fresh()
        found = self._async_scripts.get(name)
        if found is None:
            found = self._async_scripts[name] = self.aclient().register_script(getattr(scripts, name))
        return found

    async def aclose(self) -> None:
        """Close this process's asyncio client (as its loop ends)."""
        if self._async is not None and self._pid == os.getpid():
            client, self._async = self._async, None
            self._async_scripts = {}
            await client.aclose()

    # Availability ---------------------------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """False during the short window after a failure, when calls fail without trying."""
        return time.monotonic() >= self._down_until

    def failed(self, exc: BaseException) -> None:
        """A call could not reach Redis: log it once per outage, and fail fast for RETRY_AFTER seconds."""
        self._down_until = time.monotonic() + RETRY_AFTER
        if not self._down:
            self._down = True
            logger.warning(
                "cluster: Redis at %s is unreachable (%s); cluster calls fail until it is back", self.url, exc
            )

    def succeeded(self) -> None:
        if self._down:
            self._down = False
            self._down_until = 0.0
            logger.warning("cluster: Redis at %s is reachable again", self.url)
