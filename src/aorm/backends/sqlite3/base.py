"""SQLite: Django's backend; inside the bridge, each connection's sqlite3 calls run in its own thread.

MEASUREMENTS_AND_CHOICE
"""

from __future__ import annotations

import os
from functools import partial
from typing import Any
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.sqlite3 import base as django_sqlite3
from django.utils.asyncio import async_unsafe

from aorm import _loops
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.sqlite3.creation import DatabaseCreation
from aorm.backends.sqlite3.driver import Pool, WriterLock
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]

DEFAULT_POOL_SIZE = 8
DEFAULT_POOL_TIMEOUT = 30.0
_SQLITE_DEFAULT_TIMEOUT = 5.0


async def _close_pool(pool: Pool) -> None:
    await pool.aclose()


async def _nothing_to_close(_: object) -> None:
    pass


def _file_of(name: Any) -> str:
    """The database file a NAME designates, as one path whatever its spelling."""
    name = os.fspath(name)
    if name.startswith("file:"):
        name = unquote(urlsplit(name).path)
    return os.path.realpath(name)


class _NativeIO(django_sqlite3.DatabaseWrapper):  # type: ignore[misc]
    """Django's sqlite3 wrapper, taking its connections from aorm's pool inside the bridge.

    Methods Django guards with ``async_unsafe`` are guarded here too:
    :class:`BridgedDatabaseWrapper` lets the bridge through.
    """

    creation_class = DatabaseCreation

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
        pool = _loops.for_running_loop().get(("aorm.sqlite3", self.alias), self._new_pool, _close_pool)
        # Django's own code opens and sets up the connection, in its I/O thread
        # (there is no event loop there, so Django's guard lets it through).
        connect = partial(django_sqlite3.DatabaseWrapper.get_new_connection, self, conn_params)
        return pool.getconn(connect, conn_params)

    def _new_pool(self) -> Pool:
        options = self.aorm_pool_options
        timeout = float(self.settings_dict["OPTIONS"].get("timeout", _SQLITE_DEFAULT_TIMEOUT))
        if self.is_in_memory_db():
            # The database lives as long as its connection: one, shared in turn.
            return Pool(
                self.alias,
                max_size=1,
                timeout=DEFAULT_POOL_TIMEOUT,
                keep=True,
                writer=None,
                memory=True,
            )
        name = _file_of(self.settings_dict["NAME"])
        writer = _loops.for_running_loop().get(
            ("aorm.sqlite3.writer", name), partial(WriterLock, name), _nothing_to_close
        )
        if not options:
            return Pool(
                self.alias,
                max_size=2**31,
                timeout=0.0,
                keep=False,
                writer=writer,
                write_timeout=timeout,
            )
        options = {} if options is True else {**options}
        max_size = int(options.pop("max_size", DEFAULT_POOL_SIZE))
        pool_timeout = float(options.pop("timeout", DEFAULT_POOL_TIMEOUT))
        if options or max_size < 1:
            raise ImproperlyConfigured(
                f"settings.DATABASES[{self.alias!r}]['OPTIONS']['pool'] must be True, False "
                "or a dict with 'max_size' (>= 1) and 'timeout' (seconds); got "
                f"{self.aorm_pool_options!r}"
            )
        return Pool(
            self.alias,
            max_size=max_size,
            timeout=pool_timeout,
            keep=True,
            writer=writer,
            write_timeout=timeout,
        )

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
