"""PostgreSQL: Django's backend, on psycopg's async I/O inside the bridge.

Outside the bridge (sync views, migrations, management commands, the admin)
this is Django's ``django.db.backends.postgresql``, unchanged: ``CONN_MAX_AGE``
and Django's own ``OPTIONS["pool"]`` mean what they mean there. Inside it,
Django's own code asks ``self.pool`` for connections; aorm answers with the
running event loop's pool:

- ``OPTIONS["pool"]`` not set: aorm's default pool
  (:data:`aorm._pool.DEFAULT_OPTIONS`). Async code always pools, because an
  awaited operation that opens its own connection costs more than the query:
  measured, the seeds' ``example_view`` (three queries) served 0.47x the
  requests of stock Django with a connection per operation. ``CONN_MAX_AGE``
  does not apply to async code (operations never hold a connection between
  them), so it may be set for sync code alongside.
- ``True`` or psycopg_pool arguments: that pool, as in Django (whose check
  against ``CONN_MAX_AGE`` applies).
- ``False``: a connection opened for each operation and closed after it.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.postgresql import base as django_postgresql

from aorm import _loops
from aorm._pool import DEFAULT_OPTIONS, pool_key
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
        if options is False:
            return Unpooled(connect_kwargs, self._configure_connection)
        if options is None:
            options = {**DEFAULT_OPTIONS}
        else:
            if options and self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
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
