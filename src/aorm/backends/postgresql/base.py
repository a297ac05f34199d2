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

from aorm._pool import DEFAULT_OPTIONS
from aorm.backends import pooling
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.postgresql.driver import Connector
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]


class DatabaseWrapper(BridgedDatabaseWrapper, django_postgresql.DatabaseWrapper):
    @property
    def pool(self) -> Any:
        if not in_bridge():
            return super().pool
        return pooling.source_for_running_loop(self.alias, self._new_async_pool)

    def _new_async_pool(self) -> pooling.ConnectionSource:
        options = self.settings_dict["OPTIONS"].get("pool")
        if options and self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
            raise ImproperlyConfigured("Pooling doesn't support persistent connections.")
        connector = Connector(self.alias, self.get_connection_params(), self._configure_connection)
        return pooling.connection_source(
            connector,
            options,
            DEFAULT_OPTIONS,
            connector.check if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
        )

    def aorm_park(self) -> bool:
        return pooling.park(self)

    def close_pool(self) -> None:
        # Async pools of every loop are dropped (new settings, new pools); each
        # is closed on its own loop.
        pooling.forget_sources(self.alias)
        if not in_bridge():
            super().close_pool()
