"""SQLite: Django's backend; in the bridge, each connection's sqlite3 calls run in its own thread.

MEASUREMENTS_AND_CHOICE
"""

from __future__ import annotations

import math
import os
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3 import base as django_sqlite3
from django.utils.asyncio import async_unsafe

from aorm import _loops
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.sqlite3.creation import DatabaseCreation
from aorm.backends.sqlite3.driver import Connector, Pooled, Unpooled, WriterLock
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]

DEFAULT_POOL_SIZE = 8
_SQLITE_DEFAULT_TIMEOUT = 5.0


async def _close_pool(pool: Pooled | Unpooled) -> None:
    await pool.aclose()


async def _nothing_to_close(_: object) -> None:
    pass


def _file_of(name: Any) -> str:
    """The database file a NAME designates, as one path whatever its spelling."""
    path = str(os.fspath(name))
    if path.startswith("file:"):
        path = unquote(urlsplit(path).path)
    return os.path.realpath(path)


class _NativeIO(django_sqlite3.DatabaseWrapper):  # type: ignore[misc]
    """Django's sqlite3 wrapper, taking its connections from aorm's pool inside the bridge.

    Methods Django guards with ``async_unsafe`` are guarded here too:
    :class:`BridgedDatabaseWrapper` lets the bridge through.
    """

    creation_class = DatabaseCreation
    init_commands: list[str]  # set by Django's get_connection_params()
    aorm_pool_options: Any

    def get_connection_params(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = super().get_connection_params()
        self.aorm_pool_options = kwargs.pop("pool", True)
        init_command = self.settings_dict["OPTIONS"].get("init_command", "")
        if "journal_mode" not in init_command.lower() and not self.is_in_memory_db():
            # Readers are not blocked by a writer, nor a writer by readers.
            self.init_commands = ["PRAGMA journal_mode = WAL", *self.init_commands]
        return kwargs

    @async_unsafe  # type: ignore[misc]
    def get_new_connection(self, conn_params: dict[str, Any]) -> Any:
        if not in_bridge():
            return super().get_new_connection(conn_params)
        pool = _loops.for_running_loop().get(
            ("aorm.sqlite3", self.alias), partial(self._new_pool, conn_params), _close_pool
        )
        return pool.getconn()

    def _new_pool(self, conn_params: dict[str, Any]) -> Pooled | Unpooled:
        # Django's own code opens and sets up each connection, in the
        # connection's thread (no event loop there: Django's guard agrees).
        connect = partial(django_sqlite3.DatabaseWrapper.get_new_connection, self, conn_params)
        write_timeout = float(conn_params.get("timeout", _SQLITE_DEFAULT_TIMEOUT))
        if self.is_in_memory_db():
            # The database lives as long as its connection: one, kept, shared in turn.
            connector = Connector(self.alias, connect, None, write_timeout, memory=True)
            forever = {
                "min_size": 1,
                "max_size": 1,
                "max_idle": math.inf,
                "max_lifetime": math.inf,
            }
            return Pooled(connector, forever)
        name = _file_of(self.settings_dict["NAME"])
        writer = _loops.for_running_loop().get(
            ("aorm.sqlite3.writer", name), partial(WriterLock, name), _nothing_to_close
        )
        connector = Connector(self.alias, connect, writer, write_timeout)
        options = self.aorm_pool_options
        if not options:
            return Unpooled(connector)
        options = {} if options is True else {**options}
        if "max_size" not in options:
            options["max_size"] = max(DEFAULT_POOL_SIZE, int(options.get("min_size", 0)))
        return Pooled(connector, options)

    @async_unsafe  # type: ignore[misc]
    def close(self) -> None:
        if not in_bridge():
            super().close()
            return
        # Django never closes an in-memory database's connection (that would
        # destroy it); in the bridge, closing gives the connection back to the
        # pool, which keeps it.
        self.validate_thread_sharing()
        BaseDatabaseWrapper.close.__wrapped__(self)  # type: ignore[attr-defined]


class DatabaseWrapper(BridgedDatabaseWrapper, _NativeIO):
    pass
