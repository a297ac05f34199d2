"""Where a backend's async connections come from: its pool on the running loop, or none.

Shared by the backends whose driver module provides a ``Connector`` (open
and close one connection) and a ``Pooled`` adapter over
:class:`aorm._pool.AsyncPool` (MySQL, SQLite). A backend supplies
``_new_pool(conn_params)``: which of the two, with which options.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, Protocol

from django.utils.asyncio import async_unsafe

from aorm import _loops
from aorm._pool import pool_key
from aorm.bridge import await_, in_bridge

__all__ = ["ConnectionSource", "PerLoopConnections", "Unpooled"]


class ConnectionSource(Protocol):
    """Django's pool protocol, as the backends' wrappers use it inside the bridge."""

    def getconn(self) -> Any: ...
    def putconn(self, connection: Any) -> None: ...
    async def aclose(self) -> None: ...


class _Connector(Protocol):
    def open(self) -> Awaitable[Any]: ...
    def close(self, connection: Any) -> Awaitable[object]: ...


class Unpooled:
    """No pool (``OPTIONS["pool"] = False``): each operation opens its own connection."""

    def __init__(self, connector: _Connector) -> None:
        self.connector = connector

    def getconn(self) -> Any:
        connection = await_(self.connector.open())
        connection.pool = self
        return connection

    def putconn(self, connection: Any) -> None:
        connection.pool = None
        await_(self.connector.close(connection))

    async def aclose(self) -> None:
        pass


async def _close(source: ConnectionSource) -> None:
    await source.aclose()


class PerLoopConnections:
    """Mixin for a Django ``DatabaseWrapper``: inside the bridge, connections come from a
    :class:`ConnectionSource` kept per event loop; outside, from Django's own code."""

    alias: str
    _new_pool: Callable[[dict[str, Any]], ConnectionSource]

    @async_unsafe  # type: ignore[misc]
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not in_bridge():
            return super().get_new_connection(conn_params)  # type: ignore[misc]
        source = _loops.for_running_loop().get(
            pool_key(self.alias), partial(self._new_pool, conn_params), _close
        )
        return source.getconn()
