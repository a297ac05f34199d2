"""SQLite: Django's backend; in the bridge, each connection's sqlite3 calls run in its own thread.

Outside the bridge (sync views, migrations, management commands, the admin)
this is Django's ``django.db.backends.sqlite3``, with two differences: a file
database is switched to WAL mode (``PRAGMA journal_mode = WAL``, unless
``OPTIONS["init_command"]`` sets a journal mode itself), and ``OPTIONS`` may
hold aorm's ``pool``, which never reaches ``sqlite3.connect``. ``timeout``,
``transaction_mode`` and ``init_command`` mean what they mean in Django.

Inside the bridge, Django's ORM runs on the event loop as everywhere in aorm,
and every sqlite3 call (connect, execute, fetch, commit) runs in a thread that
belongs to one connection and does nothing else (``driver.py``).

Why that design: measured with ``bench/sqlite_driver.py``. The machine has 2
CPUs and was shared with other jobs, so each cell is the best of 5 interleaved
runs, and differences under about 15% are noise. File database in WAL mode,
SQLite 3.40. The figures are wall-clock µs per operation: "x1" is one task
running operations in sequence, "x100" is 100 concurrent tasks. Each cell
gives Python 3.11 / Django 5.2, then Python 3.12 / Django 6.1::

                                get x1    get x100  list100 x1 list100 x100 insert x1 insert x100
    sync Django, no event loop  156/246       -       458/563       -       189/207      -
    stock aget (sync_to_async)  258/394   340/425    639/1020   759/810     341/330   366/377
    (b) I/O thread per conn.    336/414   332/390    671/1041   966/930     300/445   436/547
    (b) without row prefetch    308/349   427/433    640/1133   787/920     350/540   378/555
    (a) aiosqlite's thread      369/351   411/432    685/1186   699/894     327/394   420/478
    (c) inline, on the loop     275/304   259/266    550/769    533/704     239/304   266/343
    (b), no pool               1309/1462 1469/1736  1366/1842  2822/3426  1335/1436 1330/1327

- (a) aiosqlite uses the same design: one thread per connection and a queue,
  with futures resolved through ``call_soon_threadsafe``. Behind the same
  adapter it did no better than our own thread (about 50 lines), so it is not
  worth a dependency.
- (c) Calling sqlite3 inline is the cheapest, 15-35% less CPU, because it
  never hops between threads. But it blocks the loop for as long as SQLite
  blocks, and for that the thread design wins outright (longest stall of a
  1 ms heartbeat task, same runs)::

                  a ~100 ms query   an insert waiting 330 ms for another process's lock
      (b) thread      <= 4 ms            <= 9 ms
      (c) inline     82-96 ms          331-333 ms (the whole wait)

  Cold disk reads, fsync on commit, and the busy timeout (5 s by default)
  would all freeze every request of the process. We chose (b).
- Prefetch: ``execute`` brings back up to 256 rows with it, so a ``get()`` or a
  short list is one round trip to the thread instead of three. The gain,
  about 10-20 µs per avoided round trip, was within the noise here.
- Pool: a connection per operation costs 4-5x a pooled ``get()``: a thread
  start plus Django's connection setup (~90 µs). Connections are therefore
  pooled per event loop by aorm's ``AsyncPool``: ``OPTIONS["pool"]`` is
  ``True`` (the default), ``False`` (a connection per operation) or that
  pool's options; options left out are aorm's defaults (``min_size`` 1,
  ``max_idle`` 60 s: an idle process keeps one thread), with ``max_size`` 8.
  Throughput of 100 concurrent gets was flat between max_size 1 and 16 (the
  GIL, and one writer per file), so the size mostly bounds threads and held
  transactions.

Concurrent writers. SQLite lets one connection at a time write to a file. If
that were left to SQLite (``BEGIN IMMEDIATE`` plus a busy timeout), waiting
writers would poll in its busy handler, sleeping up to 100 ms between tries,
in no particular order. And Django's default transactions (a plain ``BEGIN``,
which is deferred) that read before they write fail at once (SQLITE_BUSY_SNAPSHOT, no waiting) when
another connection committed in between. Measured with 200 tasks each writing
10 rows in its own transaction (Python 3.11, then 3.12 after a slash):

    ======================================  =====================================
    left to SQLite: IMMEDIATE, timeout 5 s  954 / 1161 ms, 0 failed
    left to SQLite: IMMEDIATE, timeout 0.1  18 of 200 failed "database is locked"
    left to SQLite: BEGIN, read + write     189 / 191 of 200 failed, even at 5 s
    aorm's writer lock (Django's BEGIN)     573 / 752 ms, 0 failed
    aorm's writer lock, timeout 0.1 s       0 failed
    aorm's writer lock, read + write        441 / 447 ms, 0 failed
    ======================================  =====================================

aorm therefore serialises the writers of each file per event loop
(``driver.WriterLock``). A connection takes the write turn before ``BEGIN``
or before a write in autocommit mode, and gives it back when its transaction
ends. Waiters queue on the loop in FIFO order, and the next one starts as soon
as the previous one commits. Waiting longer than ``OPTIONS["timeout"]`` raises
the same "database is locked" as SQLite would, so a connection that waits for
its own operation's other connection fails as in sync Django instead of
hanging. Readers never take the turn: in WAL mode they read the last commit
without waiting. The busy timeout still covers other processes and other
event loops; with several processes, Django's ``"transaction_mode":
"IMMEDIATE"`` remains the advice.

Every transaction thus behaves as ``IMMEDIATE`` within the process, and
read-only ``atomic()`` blocks take turns too. An explicit
``"transaction_mode": "DEFERRED"`` restores SQLite's behaviour: the turn is
taken at the transaction's first write, read-only transactions overlap, and a
transaction that reads before it writes may fail with "database is locked"
when another one committed in between (the third row above).

In-memory databases live only as long as their connection. Each loop
therefore keeps exactly one connection to one (``:memory:`` is that loop's own
database; Django's test database ``file:memorydb_<alias>?mode=memory&cache=shared``
is shared with the process's other connections). Operations take that
connection in turn; closing it in the bridge returns it to the pool instead of
doing nothing, as Django's close does for in-memory databases.
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
from aorm.backends.pooling import PerLoopConnections, Unpooled
from aorm.backends.sqlite3.creation import DatabaseCreation
from aorm.backends.sqlite3.driver import Connector, Pooled, WriterLock
from aorm.bridge import in_bridge

__all__ = ["DatabaseWrapper"]

# aorm's default pool with 8 connections: throughput was flat from 1 to 16
# (see above), so the size only bounds the threads.
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
