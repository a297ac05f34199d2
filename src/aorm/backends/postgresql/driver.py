"""psycopg, driven from the bridge.

psycopg implements every exchange with the server as a generator and lets the
connection's ``wait()`` drive it: the synchronous ``Connection`` blocks on the
socket, ``AsyncConnection`` awaits it. aorm's :class:`Connection` is psycopg's
synchronous connection whose ``wait()``, inside the bridge, awaits the
generator on the event loop. Django's unchanged backend code and its own cursor
classes (client-side binding, server-side cursors, ``callproc``, COPY) run on
it as they are; only the waiting changed place. A client-side cursor's fetches
never wait, so they cost nothing extra.

Connections are opened by psycopg's ``AsyncConnection.connect`` and pooled by
:mod:`aorm._pool` (see there why not psycopg_pool). The synchronous face shares
the async connection's libpq connection and lives exactly as long as it, so
client state (prepared statements, adapters) stays consistent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, waiting
from psycopg.pq import TransactionStatus

from aorm._pool import AsyncPool
from aorm.bridge import await_, in_bridge

__all__ = ["Connection", "Pooled", "Unpooled", "check_connection"]


class _ExclusiveUse:
    """psycopg's connection lock, for greenlets sharing one thread.

    A ``threading.Lock`` contended by two greenlets of one thread would block
    the event loop forever; contention here can only mean two tasks using one
    connection at once, so it fails loudly instead.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise psycopg.InterfaceError(
                "this connection is already in use by another task; aorm gives each "
                "concurrent operation its own connection, so it was shared by hand"
            )
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


class Connection(psycopg.Connection[Any]):
    """A synchronous psycopg connection whose waits, inside the bridge, run on the event loop."""

    def __init__(self, source: AsyncConnection[Any], cursor_factory: type[psycopg.Cursor[Any]]):
        super().__init__(source.pgconn)
        self.lock = _ExclusiveUse()  # type: ignore[assignment]
        self.async_connection = source
        self.cursor_factory = cursor_factory
        # Same configuration as the async connection (Django's adapters and
        # time zone loaders, autocommit state): these have no public setter.
        self._adapters = source.adapters
        self._autocommit = source.autocommit
        self.prepare_threshold = source.prepare_threshold
        self.configured = False  # Django's per-connection setup ran
        self.parked: Any = None  # the DatabaseWrapper kept with it between operations

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if not in_bridge():
            return super().wait(gen, interval, timeout)
        try:
            return await_(
                waiting.wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout)
            )
        except asyncio.CancelledError:
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                # Mid-exchange: stop the server's work, and never reuse a
                # connection whose protocol state is unknown.
                with contextlib.suppress(Exception):  # best effort: closed below anyway
                    await_(self.async_connection.cancel_safe(timeout=5))
                self.pgconn.finish()
            raise


def _split(connect_kwargs: dict[str, Any]) -> tuple[dict[str, Any], type[psycopg.Cursor[Any]]]:
    """Django's connection parameters, less its synchronous cursor class (the face's)."""
    kwargs = {**connect_kwargs, "autocommit": True}
    return kwargs, kwargs.pop("cursor_factory")


class Pooled:
    """Django's pool protocol (``open``/``getconn``/``putconn``) over aorm's async pool."""

    def __init__(
        self,
        alias: str,
        connect_kwargs: dict[str, Any],
        configure: Callable[[Connection], object],
        options: dict[str, Any],
    ) -> None:
        self._kwargs, self._cursor_factory = _split(connect_kwargs)
        self._configure = configure
        self.pool: AsyncPool[Connection] = AsyncPool(
            alias, self._connect, _close, _reusable, options
        )

    async def _connect(self) -> Connection:
        return Connection(await AsyncConnection.connect(**self._kwargs), self._cursor_factory)

    def open(self) -> None:
        pass

    def getconn(self) -> Connection:
        face = await_(self.pool.acquire())
        if not face.configured:
            try:
                self._configure(face)
            except BaseException:
                face.pgconn.finish()
                await_(self.pool.release(face))
                raise
            face.configured = True
        face._pool = self  # type: ignore[assignment]
        return face

    def putconn(self, face: Connection) -> None:
        await_(self.pool.release(face))

    def park(self, wrapper: Any) -> None:
        """Give the wrapper's connection back with the wrapper riding along."""
        face = wrapper.connection
        face.parked = wrapper
        await_(self.pool.release(face))

    def take_parked(self) -> Any:
        """A parked wrapper, connected and pristine, or None (Django then builds one)."""
        face = await_(self.pool.acquire())
        wrapper, face.parked = face.parked, None
        if wrapper is None:
            await_(self.pool.release(face))
        return wrapper

    async def aclose(self) -> None:
        await self.pool.aclose()


class Unpooled:
    """No pool configured: each operation opens its own connection and closes it."""

    def __init__(
        self, connect_kwargs: dict[str, Any], configure: Callable[[Connection], object]
    ) -> None:
        self._kwargs, self._cursor_factory = _split(connect_kwargs)
        self._configure = configure

    def open(self) -> None:
        pass

    def getconn(self) -> Connection:
        face = Connection(await_(AsyncConnection.connect(**self._kwargs)), self._cursor_factory)
        face._pool = self  # type: ignore[assignment]
        try:
            self._configure(face)
        except BaseException:
            face.pgconn.finish()
            raise
        return face

    def putconn(self, face: Connection) -> None:
        face._pool = None
        await_(_close(face))

    async def aclose(self) -> None:
        pass


async def _close(face: Connection) -> None:
    face.parked = None
    await face.async_connection.close()


def _reusable(face: Connection) -> bool:
    """Open, and not inside a transaction or an error state: safe for the next borrower."""
    return not face.closed and face.pgconn.transaction_status == TransactionStatus.IDLE


async def check_connection(face: Connection) -> None:
    """The pool's health check (``CONN_HEALTH_CHECKS``): an empty round trip."""
    await face.async_connection.execute("")
