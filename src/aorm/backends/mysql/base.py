"""MySQL and MariaDB: Django's backend; in the bridge, its I/O runs on an asyncio driver.

Outside the bridge (sync views, migrations, management commands, the admin)
this is Django's ``django.db.backends.mysql`` on mysqlclient, unchanged, except
that ``OPTIONS`` may hold aorm's ``pool``, which never reaches mysqlclient.
Inside it, Django's own backend code (its SQL, its ``CursorWrapper``, its error
wrapper, its transaction and savepoint statements) runs on a MySQLdb-shaped
adapter over asyncmy (``driver.py``), taking connections from aorm's pool for
the running event loop: without ``OPTIONS["pool"]``, aorm's default pool
(:data:`aorm._pool.DEFAULT_OPTIONS`); ``True`` or the pool's options; ``False``,
a connection per operation. ``CONN_MAX_AGE`` applies to sync code only.

Django's per-connection setup (``SET SESSION TRANSACTION ISOLATION LEVEL``...)
runs once per pooled connection, and the server facts Django reads once per
wrapper (``mysql_server_data``: version, ``sql_mode``, time zone tables) once
per pool.

Which driver: asyncmy, chosen by measurement against aiomysql under this
adapter (``bench/results/mysql_driver.md``). One task at a time the two are
within noise of each other (Django's ORM is most of a get's cost); under
concurrency asyncmy, which parses the protocol in Cython, was ahead of
aiomysql (PyMySQL's pure Python) in every session. The adapter and driver take
about 25 µs per statement.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.mysql import base as django_mysql
from django.utils.functional import cached_property

from aorm._pool import DEFAULT_OPTIONS
from aorm.backends import pooling
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.mysql.driver import Connection, Connector

__all__ = ["DatabaseWrapper"]


class _NativeIO(pooling.PerLoopConnections, django_mysql.DatabaseWrapper):  # type: ignore[misc]
    """Django's mysql wrapper, taking its connections from aorm's pool inside the bridge.

    Methods Django guards with ``async_unsafe`` are guarded here too:
    :class:`BridgedDatabaseWrapper` lets the bridge through.
    """

    aorm_pool_options: Any = None

    def get_connection_params(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_connection_params()
        self.aorm_pool_options = kwargs.pop("pool", None)
        return kwargs

    def _new_pool(self, conn_params: dict[str, Any]) -> pooling.ConnectionSource:
        connector = Connector(self.alias, conn_params)
        return pooling.connection_source(
            connector,
            self.aorm_pool_options,
            DEFAULT_OPTIONS,
            connector.check if self.settings_dict["CONN_HEALTH_CHECKS"] else None,
        )

    def init_connection_state(self) -> None:
        connection = self.connection
        if not isinstance(connection, Connection):
            super().init_connection_state()
        elif connection.configured:
            # A pooled connection keeps its session settings: only Django's
            # once-per-alias version check is left to do.
            BaseDatabaseWrapper.init_connection_state(self)
        else:
            with self._setup_cursors():
                super().init_connection_state()
            connection.configured = True

    @cached_property
    def mysql_server_data(self) -> dict[str, Any]:
        connection = self.connection
        source = connection.source if isinstance(connection, Connection) else None
        if source is None:
            return django_mysql.DatabaseWrapper.mysql_server_data.func(self)  # type: ignore[no-any-return]
        if source.server_data is None:
            with self._setup_cursors():
                source.server_data = django_mysql.DatabaseWrapper.mysql_server_data.func(self)
        return source.server_data

    @contextlib.contextmanager
    def _setup_cursors(self) -> Iterator[None]:
        """Django's own setup queries on a pooled connection go straight to it.

        They are the connection's, not the user's: as on PostgreSQL and SQLite,
        where Django configures a connection on the driver directly, they are
        neither logged nor counted by ``assertNumQueries``.
        """
        if "cursor" in self.__dict__:  # already inside
            yield
            return

        @contextlib.contextmanager
        def cursor() -> Iterator[Any]:
            with self.wrap_database_errors, self.connection.cursor() as raw_cursor:
                yield raw_cursor

        self.cursor = cursor
        try:
            yield
        finally:
            del self.cursor


class DatabaseWrapper(BridgedDatabaseWrapper, _NativeIO):
    def aorm_park(self) -> bool:
        return pooling.park(self)
