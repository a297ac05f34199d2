"""A connection pool for one event loop, with no background task.

Why not psycopg_pool's ``AsyncConnectionPool``: its maintenance workers catch
``CancelledError`` and keep running, so ``asyncio.run`` (and every runner that
cancels the remaining tasks before closing the loop: uvicorn, pytest-asyncio)
hangs forever if a worker was opening a connection at that moment; and
cancellation of a waiting ``getconn()`` can be lost (psycopg issues 1345 and
1401). A request cancelled by a client disconnect must never strand a
connection, so aorm's pool is small and does everything in the caller's task:

- ``acquire()`` takes the most recently used idle connection (checked first
  when health checks are on), else opens one while below ``max_size``, else
  waits in line, at most ``timeout`` seconds, then raises
  :class:`PoolTimeout` naming the alias, the pool size and the connections
  in use.
- ``release()`` keeps a connection only if it is open and idle (no
  transaction left open, no error state, not past ``max_lifetime``);
  otherwise it closes it. A dirty connection is never handed out again.
- Waiters are served in order (:class:`aorm._waiters.WaitQueue`): a released
  connection is handed to the first one (a free slot, when a connection was
  closed, likewise), and a task that releases and asks again queues behind
  them. A waiter cancelled after being served passes what it got on, so no
  waiter sleeps while a connection is free.

- Connections idle for ``max_idle`` seconds are closed, ``min_size`` of them
  kept, by one timer (a ``call_later`` handle, not a task) armed while
  connections are idle, so an idle process holds few connections. Nothing
  runs while the pool is busy or empty.

Options are psycopg_pool's names, as Django's ``OPTIONS["pool"]`` uses them:
``min_size`` (idle connections kept when ``max_idle`` expires others; they
are opened on demand, not in advance), ``max_size``, ``timeout``,
``max_lifetime``, ``max_idle`` and ``check``. An alias that sets no pool gets
:data:`DEFAULT_OPTIONS` (see ``backends/postgresql/base.py`` for why async
code always pools).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS
from django.db.utils import OperationalError

from aorm import _loops
from aorm._waiters import WaitQueue

__all__ = [
    "DEFAULT_OPTIONS",
    "AsyncPool",
    "PoolStats",
    "PoolTimeout",
    "pool_key",
    "pool_stats",
]

C = TypeVar("C")

logger = logging.getLogger("aorm.pool")

_OPTIONS = {"min_size", "max_size", "timeout", "max_lifetime", "max_idle", "check", "name"}

# The async pool of an alias that sets no ``OPTIONS["pool"]``: up to 10
# connections per event loop, opened on demand; after a minute unused they are
# closed, down to one.
DEFAULT_OPTIONS: dict[str, Any] = {"min_size": 1, "max_size": 10, "max_idle": 60.0}


class PoolTimeout(OperationalError):
    """No connection became free within the pool's ``timeout``."""


@dataclass(frozen=True)
class PoolStats:
    """A pool's state, for dashboards and health endpoints."""

    alias: str
    max_size: int
    size: int
    idle: int
    in_use: int
    waiting: int


class AsyncPool(Generic[C]):
    """Connections to one database for one event loop."""

    def __init__(
        self,
        alias: str,
        connect: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[object]],
        reusable: Callable[[C], bool],
        options: dict[str, Any],
    ) -> None:
        unknown = set(options) - _OPTIONS
        if unknown:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['OPTIONS']['pool']: unsupported option(s) "
                f"{', '.join(sorted(unknown))}; aorm's async pool accepts "
                f"{', '.join(sorted(_OPTIONS))}."
            )
        self.alias = alias
        max_size = options.get("max_size")
        self.min_size = int(options.get("min_size", min(4, max_size or 4)))
        self.max_size = int(max_size or self.min_size)
        if self.max_size < 1 or self.max_size < self.min_size:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]['OPTIONS']['pool']: max_size must be at least 1 and "
                f"at least min_size (got min_size={self.min_size}, max_size={self.max_size})."
            )
        self.timeout = float(options.get("timeout", 30.0))
        self.max_lifetime = float(options.get("max_lifetime", 3600.0))
        self.max_idle = float(options.get("max_idle", 600.0))
        self._check: Callable[[C], Awaitable[object]] | None = options.get("check")
        self._connect, self._close, self._reusable = connect, close, reusable
        self._idle: deque[tuple[C, float, float]] = deque()  # (conn, opened, released)
        self._opened_at: dict[int, float] = {}
        self._size = 0  # open or opening connections
        self._waiters: WaitQueue[C | None] = WaitQueue(self._hand_over)
        self._closed = False
        self._sweep_at: asyncio.TimerHandle | None = None  # closes expired idle connections
        self._closing: set[asyncio.Task[None]] = set()

    def stats(self) -> PoolStats:
        idle = len(self._idle)
        return PoolStats(
            self.alias, self.max_size, self._size, idle, self._size - idle, len(self._waiters)
        )

    async def acquire(self) -> C:
        if self._closed:
            raise OperationalError(f"the connection pool of database {self.alias!r} is closed")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        woken = False
        while True:
            if woken or not self._waiters:  # first come, first served
                conn = await self._take_idle()
                if conn is not None:
                    return conn
                if self._size < self.max_size:
                    return await self._open()
            try:
                # Woken for a slot that another task took meanwhile: keep our place.
                handed = await self._waiters.wait(deadline - loop.time(), front=woken)
            except TimeoutError:
                raise self._timeout_error() from None
            if handed is not None:
                return handed
            if self._closed:
                raise OperationalError(
                    f"the connection pool of database {self.alias!r} was closed"
                )
            woken = True  # a slot was freed for us: open a connection

    def acquire_nowait(self) -> C | None:
        """An idle connection right away, or None: then ``await acquire()``.

        For callers that would otherwise switch to the loop just to run
        :meth:`acquire` without it ever waiting (the bridge).
        """
        if self._closed or self._check is not None or not self._idle or self._waiters:
            return None
        conn, opened, _ = self._idle[-1]
        if time.monotonic() - opened > self.max_lifetime or not self._reusable(conn):
            return None
        self._idle.pop()
        return conn

    def release_nowait(self, conn: C) -> bool:
        """Take a clean connection back right away; False: ``await release()`` instead."""
        if self._closed:
            return False
        opened = self._opened_at.get(id(conn), 0.0)
        if time.monotonic() - opened > self.max_lifetime or not self._reusable(conn):
            return False
        self._hand_over(conn)
        return True

    def _hand_over(self, conn: C | None) -> None:
        """Give a clean connection (or, with None, a free slot) to the first waiter."""
        if self._waiters.wake(conn):
            return
        if conn is not None:
            now = time.monotonic()
            self._idle.append((conn, self._opened_at.get(id(conn), 0.0), now))
            if self._sweep_at is None and len(self._idle) > self.min_size:
                self._arm_sweep(self.max_idle)

    def _arm_sweep(self, delay: float) -> None:
        if delay != math.inf:
            self._sweep_at = asyncio.get_running_loop().call_later(delay, self._sweep)

    def _sweep(self) -> None:
        """Close connections idle for max_idle (min_size kept); re-arm for the next to expire."""
        self._sweep_at = None
        if self._closed:
            return
        now = time.monotonic()
        stale = []
        # Oldest release first: connections are put back on the right, taken from the right.
        while len(self._idle) > self.min_size and now - self._idle[0][2] >= self.max_idle:
            conn = self._idle.popleft()[0]
            self._forget(conn)
            stale.append(conn)
        if stale:
            task = asyncio.get_running_loop().create_task(self._close_all(stale))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        if len(self._idle) > self.min_size:
            self._arm_sweep(max(0.0, self._idle[0][2] + self.max_idle - now))

    async def _close_all(self, conns: list[C]) -> None:
        for conn in conns:
            await self._close_quietly(conn)

    async def _take_idle(self) -> C | None:
        now = time.monotonic()
        while self._idle:
            conn, opened, _ = self._idle.pop()
            # Idle time is the timer's business (min_size are kept however long idle).
            if now - opened > self.max_lifetime or not self._reusable(conn):
                await self._discard(conn)
                continue
            if self._check is not None:
                try:
                    await self._check(conn)
                except BaseException as exc:  # failed, or cancelled mid-check: never reused
                    await self._discard(conn)
                    if not isinstance(exc, Exception):
                        raise
                    logger.info("%s: connection failed check: %s", self.alias, exc)
                    continue
            return conn
        return None

    async def _open(self) -> C:
        self._size += 1
        try:
            conn = await self._connect()
        except BaseException:
            self._size -= 1
            self._hand_over(None)
            raise
        self._opened_at[id(conn)] = time.monotonic()
        return conn

    async def release(self, conn: C) -> None:
        """Take a connection back: kept if clean, closed otherwise."""
        opened = self._opened_at.get(id(conn), 0.0)
        now = time.monotonic()
        if self._closed or now - opened > self.max_lifetime or not self._reusable(conn):
            await self._discard(conn)
            return
        self._hand_over(conn)

    async def _discard(self, conn: C) -> None:
        self._forget(conn)
        await self._close_quietly(conn)
        self._hand_over(None)

    def _forget(self, conn: C) -> None:
        self._opened_at.pop(id(conn), None)
        self._size -= 1

    async def _close_quietly(self, conn: C) -> None:
        try:
            await self._close(conn)
        except Exception as exc:  # a broken connection is closed already
            logger.warning("%s: error closing a discarded connection: %s", self.alias, exc)

    def _timeout_error(self) -> PoolTimeout:
        stats = self.stats()
        return PoolTimeout(
            f"no connection to database {self.alias!r} became free within {self.timeout:g}s: "
            f"the pool's {stats.max_size} connections are all in use ({stats.in_use} in use, "
            f"{stats.waiting} other tasks waiting). Raise OPTIONS['pool']['max_size'] or "
            f"hold connections for less time (transactions keep theirs until they end)."
        )

    async def aclose(self) -> None:
        """Close idle connections now; those in use are closed when released."""
        self._closed = True
        if self._sweep_at is not None:
            self._sweep_at.cancel()
            self._sweep_at = None
        while self._idle:
            conn = self._idle.pop()[0]
            self._forget(conn)
            await self._close_quietly(conn)
        self._waiters.wake_all(None)  # each finds the pool closed


def pool_key(alias: str) -> tuple[str, str]:
    """Where a backend keeps an alias's pool among its event loop's resources."""
    return ("aorm.pool", alias)


def pool_stats(alias: str = DEFAULT_DB_ALIAS) -> PoolStats:
    """The state of ``alias``'s pool on the running event loop: size, idle, in use, waiting.

    An alias without a pool (or not used yet on this loop) reports zeros.
    """
    pool = getattr(_loops.for_running_loop().find(pool_key(alias)), "pool", None)
    if isinstance(pool, AsyncPool):
        return pool.stats()
    return PoolStats(alias, 0, 0, 0, 0, 0)
