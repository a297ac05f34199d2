"""psycopg, driven from the bridge.

psycopg implements every exchange with the server as a generator and lets the
connection's ``wait()`` drive it: the synchronous ``Connection`` blocks on the
socket, ``AsyncConnection`` awaits it. aorm's :class:`Connection` is psycopg's
synchronous connection whose ``wait()``, inside the bridge, awaits the
generator on the event loop. Django's unchanged backend code and its own cursor
classes (client-side binding, server-side cursors, ``callproc``, COPY) run on
it as they are; only the waiting changed place. A client-side cursor's fetches
never wait, so they cost nothing extra.

Connections are opened by psycopg's async code and pooled by
``psycopg_pool.AsyncConnectionPool`` (health checks, lifetimes, reconnection).
The synchronous face shares the async connection's libpq connection; each
async connection gets one face, kept with it for its whole life, so client
state (prepared statements, adapters) stays consistent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, waiting
from psycopg.pq import TransactionStatus

from aorm.bridge import await_, in_bridge, run

__all__ = ["AsyncPool", "Connection", "Unpooled"]


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

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if not in_bridge():
            return super().wait(gen, interval, timeout)
        try:
            return await_(
                waiting.wait_async(gen, self.pgconn.socket, interval=interval, timeout=timeout)
            )
        except asyncio.CancelledError:
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                # Mid-exchange: the protocol state is unknown, never reuse it.
                self.pgconn.finish()
            raise


def _face(source: AsyncConnection[Any], cursor_factory: type[psycopg.Cursor[Any]]) -> Connection:
    face: Connection | None = getattr(source, "_aorm_face", None)
    if face is None:
        face = Connection(source, cursor_factory)
        source._aorm_face = face  # type: ignore[attr-defined]
    return face


def _split(connect_kwargs: dict[str, Any]) -> tuple[dict[str, Any], type[psycopg.Cursor[Any]]]:
    """Django's connection parameters, less its synchronous cursor class (the face's)."""
    kwargs = {**connect_kwargs, "autocommit": True}
    return kwargs, kwargs.pop("cursor_factory")


class AsyncPool:
    """One event loop's ``AsyncConnectionPool``, with the synchronous face Django's code calls."""

    def __init__(
        self,
        connect_kwargs: dict[str, Any],
        configure: Callable[[Connection], object],
        options: dict[str, Any],
    ) -> None:
        from psycopg_pool import AsyncConnectionPool

        kwargs, self._cursor_factory = _split(connect_kwargs)
        self._configure_face = configure
        options = {**options}
        self.pool = AsyncConnectionPool(
            kwargs=kwargs, open=False, configure=self._configure, **options
        )
        self._opened = False

    async def _configure(self, source: AsyncConnection[Any]) -> None:
        # psycopg_pool calls this from its own tasks, outside any bridge.
        await run(self._configure_face, _face(source, self._cursor_factory))

    def open(self) -> None:
        if not self._opened:
            await_(self.pool.open())
            self._opened = True

    def getconn(self) -> Connection:
        face = _face(await_(self.pool.getconn()), self._cursor_factory)
        face._pool = self  # type: ignore[assignment]
        return face

    def putconn(self, face: Connection) -> None:
        await_(self.pool.putconn(face.async_connection))

    async def aclose(self) -> None:
        await self.pool.close()


class Unpooled:
    """No pool configured: each operation opens its own connection and closes it."""

    def __init__(
        self, connect_kwargs: dict[str, Any], configure: Callable[[Connection], object]
    ) -> None:
        self._kwargs, self._cursor_factory = _split(connect_kwargs)
        self._configure_face = configure

    def open(self) -> None:
        pass

    def getconn(self) -> Connection:
        face = Connection(await_(AsyncConnection.connect(**self._kwargs)), self._cursor_factory)
        face._pool = self  # type: ignore[assignment]
        try:
            self._configure_face(face)
        except BaseException:
            face.pgconn.finish()
            raise
        return face

    def putconn(self, face: Connection) -> None:
        face._pool = None
        face.close()

    async def aclose(self) -> None:
        pass
