"""Where a backend's async connections come from: its pool on the running event loop, or none.

Every aorm backend gets its connections the same way inside the bridge; a
backend supplies only a :class:`Connector` (how to open, judge, check and
close one connection) and which pool options apply. This module does the
rest, once for all:

- :class:`Pooled`: Django's pool protocol (``open``/``getconn``/``putconn``)
  over :class:`aorm._pool.AsyncPool`; :class:`PooledWithWrappers` also parks
  a wrapper beside each idle connection (PostgreSQL, MySQL).
- :class:`Unpooled` (``OPTIONS["pool"] = False``): a connection per operation.
- :func:`source_for_running_loop`: one of them per alias and event loop,
  closed with the loop (:mod:`aorm._loops`); :func:`forget_sources` drops
  those of every loop when the settings change.
- :class:`PerLoopConnections`: the ``get_new_connection`` of the backends
  whose Django code opens connections directly (MySQL, SQLite); PostgreSQL's
  asks ``self.pool``, which its wrapper answers with the same source.

A connection object of any backend has a ``pool`` attribute, where Django's
``close()`` gives it back; with parking, also ``parked``, the wrapper kept
with it while it is idle.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Generic, Protocol, TypeVar

from django.utils.asyncio import async_unsafe

from aorm import _loops
from aorm._pool import AsyncPool, pool_key
from aorm.bridge import await_, in_bridge

__all__ = [
    "ConnectionSource",
    "Connector",
    "PerLoopConnections",
    "Pooled",
    "PooledWithWrappers",
    "Unpooled",
    "cancel_timeout",
    "connection_source",
    "forget_sources",
    "park",
    "source_for_running_loop",
]

C = TypeVar("C")


class Connector(Protocol[C]):
    """What a backend supplies: how to open, judge and close one connection (and, for
    ``CONN_HEALTH_CHECKS``, a ``check`` coroutine function that raises if it is unhealthy)."""

    alias: str

    async def open(self) -> C:
        """A new connection, set up as Django would set it up."""

    def reusable(self, connection: C) -> bool:
        """Whether a returned connection is clean enough for the next borrower."""

    async def close(self, connection: C) -> None:
        """Close the connection for good."""


# How long a cancelled query's cancel request (PostgreSQL's cancel, MySQL's KILL
# QUERY: a connection of its own) may take when no ``connect_timeout`` is set.
DEFAULT_CANCEL_TIMEOUT = 5.0


def cancel_timeout(connect_timeout: object) -> float:
    """The bound on a cancel request: the alias's ``connect_timeout``, as it opens a connection.

    Unset or not positive (libpq's and MySQL's "no limit"), it is
    :data:`DEFAULT_CANCEL_TIMEOUT`: a cancelled task must never wait without end
    for a network that went silent.
    """
    try:
        seconds = float(connect_timeout)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return DEFAULT_CANCEL_TIMEOUT
    return seconds if seconds > 0 else DEFAULT_CANCEL_TIMEOUT


class ConnectionSource(Protocol):
    """Django's pool protocol, as the backends' wrappers use it inside the bridge."""

    def open(self) -> None: ...
    def getconn(self) -> Any: ...
    def putconn(self, connection: Any) -> None: ...
    async def aclose(self) -> None: ...


class Pooled(Generic[C]):
    """Django's pool protocol over aorm's async pool, in the bridge.

    Borrowing and returning go through the loop (a switch there and back)
    only when the pool must wait or do I/O: an idle connection is taken, and
    a clean one given back, without leaving the greenlet.
    """

    def __init__(self, connector: Connector[C], options: dict[str, Any]) -> None:
        self.connector = connector
        self.pool: AsyncPool[C] = AsyncPool(
            connector.alias, connector.open, self._close, connector.reusable, options
        )

    async def _close(self, connection: Any) -> None:
        await self.connector.close(connection)

    def open(self) -> None:
        """Django's PostgreSQL backend opens its pool before each use: nothing to do."""

    def _acquire(self) -> Any:
        connection = self.pool.acquire_nowait()
        return connection if connection is not None else await_(self.pool.acquire())

    def _release(self, connection: Any) -> None:
        if not self.pool.release_nowait(connection):
            await_(self.pool.release(connection))

    def getconn(self) -> C:
        connection = self._acquire()
        connection.pool = self
        return connection  # type: ignore[no-any-return]

    def putconn(self, connection: Any) -> None:
        connection.pool = None
        self._release(connection)

    async def aclose(self) -> None:
        await self.pool.aclose()


class PooledWithWrappers(Pooled[C]):
    """A pool whose idle connections may keep the wrapper that last used them.

    Building a DatabaseWrapper and running Django's connection setup costs
    about as much as a query: an operation that ends in Django's pristine
    state parks its wrapper with the connection, and the next operation on
    that connection takes both (``aorm._operation``).
    """

    async def _close(self, connection: Any) -> None:
        connection.parked = None
        await self.connector.close(connection)

    def park(self, wrapper: Any) -> None:
        """Give the wrapper's connection back with the wrapper riding along."""
        connection = wrapper.connection
        connection.parked = wrapper
        self._release(connection)

    def take_parked(self) -> Any:
        """A parked wrapper, connected and pristine, or None (Django then builds one)."""
        connection = self._acquire()
        wrapper, connection.parked = connection.parked, None
        if wrapper is None:
            self._release(connection)
        else:
            connection.pool = self
        return wrapper


class Unpooled(Generic[C]):
    """No pool (``OPTIONS["pool"] = False``): each operation opens its own connection."""

    def __init__(self, connector: Connector[C]) -> None:
        self.connector = connector

    def open(self) -> None:
        """Django's PostgreSQL backend opens its pool before each use: nothing to do."""

    def getconn(self) -> C:
        connection = await_(self.connector.open())
        connection.pool = self  # type: ignore[attr-defined]
        return connection

    def putconn(self, connection: Any) -> None:
        connection.pool = None
        await_(self.connector.close(connection))

    async def aclose(self) -> None:
        """Nothing is kept."""


def connection_source(
    connector: Connector[C],
    options: Any,
    defaults: dict[str, Any],
    check: Callable[[C], Awaitable[object]] | None = None,
) -> PooledWithWrappers[C] | Unpooled[C]:
    """The source ``OPTIONS["pool"]`` asks for: None, aorm's ``defaults``; True, the pool's
    own defaults; False, no pool; a dict, those options. ``check``: the health check."""
    if options is False:
        return Unpooled(connector)
    options = {**defaults} if options is None else {} if options is True else {**options}
    if check is not None:
        options.setdefault("check", check)
    return PooledWithWrappers(connector, options)


async def _close(source: ConnectionSource) -> None:
    await source.aclose()


def source_for_running_loop(alias: str, create: Callable[[], ConnectionSource]) -> Any:
    """The alias's connection source on the running event loop, closed with the loop."""
    return _loops.for_running_loop().get(pool_key(alias), create, _close)


def forget_sources(alias: str) -> None:
    """Drop the alias's sources on every loop (new settings, new pools); each is closed on
    its own loop."""
    for loop, source, close in _loops.forget(pool_key(alias)):
        if not loop.is_closed():
            loop.call_soon_threadsafe(loop.create_task, close(source))


def park(wrapper: Any) -> bool:
    """``aorm_park`` for a backend whose connections come from :class:`PooledWithWrappers`."""
    pooled = getattr(wrapper.connection, "pool", None)
    if (
        not isinstance(pooled, PooledWithWrappers)
        or not in_bridge()
        or not wrapper.aorm_pristine()
    ):
        return False
    pooled.park(wrapper)
    return True


class PerLoopConnections:
    """Mixin for a Django ``DatabaseWrapper``: inside the bridge, connections come from a
    :class:`ConnectionSource` kept per event loop; outside, from Django's own code."""

    alias: str
    _new_pool: Callable[[dict[str, Any]], ConnectionSource]

    @async_unsafe  # type: ignore[misc]
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not in_bridge():
            return super().get_new_connection(conn_params)  # type: ignore[misc]
        source = source_for_running_loop(self.alias, partial(self._new_pool, conn_params))
        return source.getconn()
