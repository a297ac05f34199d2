"""PostgreSQL: Django's backend, on psycopg's async I/O inside the bridge.

Outside the bridge (sync views, migrations, management commands, the admin)
this is Django's ``django.db.backends.postgresql``, unchanged. Inside it,
Django's own code asks ``self.pool`` for connections; aorm answers with the
running event loop's pool (``OPTIONS["pool"]``: ``True`` or psycopg_pool
arguments, as in Django) or, without one, a connection opened for the
operation and closed after it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as django_postgresql

from aorm import _loops
from aorm._pool import pool_key
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.postgresql.driver import Pooled, Unpooled, check_connection
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]


async def _close_pool(pool: Pooled | Unpooled) -> None:
    await pool.aclose()


class DatabaseWrapper(BridgedDatabaseWrapper, django_postgresql.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        if not in_bridge():
            return super().pool
        return _loops.for_running_loop().get(
            pool_key(self.alias), self._new_async_pool, _close_pool
        )

    def _new_async_pool(self) -> Pooled | Unpooled:
        options = self.settings_dict["OPTIONS"].get("pool")
        connect_kwargs = self.get_connection_params()
        if not options:
            return Unpooled(connect_kwargs, self._configure_connection)
        if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
        options = {} if options is True else {**options}
        if self.settings_dict["CONN_HEALTH_CHECKS"]:
            options.setdefault("check", check_connection)
        return Pooled(self.alias, connect_kwargs, self._configure_connection, options)

    def aorm_park(self) -> bool:
        pooled = getattr(self.connection, "_pool", None)
        if not isinstance(pooled, Pooled) or not in_bridge() or not self.aorm_pristine():
            return False
        pooled.park(self)
        return True

    def close_pool(self) -> None:
        # Async pools of every loop are dropped (new settings, new pools); each
        # is closed on its own loop.
        for loop, pool, close in _loops.forget(pool_key(self.alias)):
            if not loop.is_closed():
                loop.call_soon_threadsafe(loop.create_task, close(pool))
        if not in_bridge():
            super().close_pool()
