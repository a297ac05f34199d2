"""SQLite: Django's backend; in the bridge, each connection's sqlite3 calls run in its own thread.

Outside the bridge (sync views, migrations, management commands, the admin)
this is Django's ``django.db.backends.sqlite3``, with two differences: a file
database is switched to WAL mode (``PRAGMA journal_mode = WAL``, unless
``OPTIONS["init_command"]`` sets a journal mode itself), and ``OPTIONS`` may
hold aorm's ``pool``, which never reaches ``sqlite3.connect``. ``timeout``,
``transaction_mode`` and ``init_command`` mean what they mean in Django.

Inside the bridge, Django's ORM runs on the event loop as everywhere in aorm:

- ``io_thread.py``: every sqlite3 call (connect, execute, fetch, commit) runs
  in a thread that belongs to one connection and does nothing else, so a call
  that blocks in SQLite never blocks the loop.
- ``dbapi.py``: the connection and cursor Django holds, which send those calls.
- ``writer.py``: the writers of each file take turns per event loop, in FIFO
  order, instead of polling in SQLite's busy handler.
- ``connector.py``: how connections are opened and closed; they are pooled
  per event loop (:mod:`aorm.backends.pooling`). ``OPTIONS["pool"]`` is
  ``True`` (the default), ``False`` (a connection per operation: it costs
  4-5x a pooled ``get()``, a thread start plus Django's setup) or the pool's
  options; options left out are aorm's defaults (``min_size`` 1, ``max_idle``
  60 s: an idle process keeps one thread), with ``max_size`` 8.

In-memory databases live only as long as their connection. Each loop
therefore keeps exactly one connection to one (``:memory:`` is that loop's own
database; Django's test database ``file:memorydb_<alias>?mode=memory&cache=shared``
is shared with the process's other connections). Operations take that
connection in turn; closing it in the bridge returns it to the pool instead of
doing nothing, as Django's close does for in-memory databases.

Why this design, and not aiosqlite or sqlite3 called on the loop, measured:
``bench/results/sqlite_driver.md``.
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
from aorm._pool import DEFAULT_OPTIONS
from aorm.backends.base import BridgedDatabaseWrapper
from aorm.backends.pooling import ConnectionSource, PerLoopConnections, Pooled, Unpooled
from aorm.backends.sqlite3.connector import Connector
from aorm.backends.sqlite3.creation import DatabaseCreation
from aorm.backends.sqlite3.writer import WriterLock
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]

# aorm's default pool with 8 connections: throughput of 100 concurrent gets
# was flat from 1 to 16 (the GIL, and one writer per file), so the size
# mostly bounds the threads and the transactions held.
DEFAULT_POOL: dict[str, Any] = {**DEFAULT_OPTIONS, "max_size": 8}
_SQLITE_DEFAULT_TIMEOUT = 5.0


async def _nothing_to_close(_: object) -> None:
    pass


def _file_of(name: Any) -> str:
    """The database file a NAME designates, as one path whatever its spelling."""
    path = str(os.fspath(name))
    if path.startswith("file:"):
        path = unquote(urlsplit(path).path)
    return os.path.realpath(path)


class _NativeIO(PerLoopConnections, django_sqlite3.DatabaseWrapper):  # type: ignore[misc]
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

    def _new_pool(self, conn_params: dict[str, Any]) -> ConnectionSource:
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
        given = {} if options is True else options
        options = {**DEFAULT_POOL, **given}
        if "max_size" not in given:
            options["max_size"] = max(DEFAULT_POOL["max_size"], int(options["min_size"]))
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
