"""The DB-API connection and cursor Django's sqlite3 backend holds inside the bridge.

They are thin adapters over sqlite3's own: attribute reads and cursor creation
happen on the loop, every call that reaches SQLite goes to the connection's
:class:`~aorm.backends.sqlite3.io_thread.IOThread`, and every statement that
may write first takes the file's
:class:`~aorm.backends.sqlite3.writer.WriterLock`.

A query's first rows come back with its ``execute`` call (up to
:data:`PREFETCH_ROWS`), so a ``get()`` or a short list costs one round trip to
the thread, not three.
"""

from __future__ import annotations

import collections
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

from aorm.bridge import await_, in_bridge

if TYPE_CHECKING:
    from aorm.backends.pooling import ConnectionSource
    from aorm.backends.sqlite3.connector import Connector
    from aorm.backends.sqlite3.io_thread import IOThread

__all__ = ["PREFETCH_ROWS", "Connection", "Cursor"]

# Rows returned with a query's ``execute`` round trip: more than Django reads
# at once (100), so that most results take one trip to the thread.
PREFETCH_ROWS = 256

# SQLite virtual machine steps between two checks of whether the running call
# was abandoned: a check costs one Python call, so long statements pay well
# under 1% for it, and an abandoned one stops within about a millisecond.
ABANDON_CHECK_STEPS = 10_000

_READS = ("SELECT", "EXPLAIN", "BEGIN DEFERRED")
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "WITH")


def _needs_write_turn(sql: str, in_transaction: bool) -> bool:
    """Whether a statement may take SQLite's write lock (``in_transaction``: one without it).

    Outside a transaction, anything but a read may write or start a
    transaction, as ``BEGIN`` does. Inside a ``BEGIN DEFERRED`` transaction,
    the turn is taken at the first write.
    """
    head = sql.lstrip()[:14].upper()
    if in_transaction:
        return head.startswith(_WRITES)
    return not head.startswith(_READS)


def _sets_pragma(sql: str) -> bool:
    head = sql.lstrip()[:6].upper()
    return head == "PRAGMA" and "=" in sql


def _execute(cursor: sqlite3.Cursor, args: tuple[Any, ...]) -> tuple[list[Any], bool]:
    """In the I/O thread: run a statement and fetch its first rows."""
    cursor.execute(*args)
    if cursor.description is None:
        return [], False
    rows = cursor.fetchmany(PREFETCH_ROWS)
    return rows, len(rows) == PREFETCH_ROWS


def _fetchmany(cursor: sqlite3.Cursor, size: int) -> tuple[list[Any], bool]:
    rows = cursor.fetchmany(size)
    return rows, len(rows) == size


def _rollback_and_reset(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.rollback()
    connection.isolation_level = None


class Connection:
    """The DB-API connection Django's backend holds inside the bridge.

    Attribute reads and cursor creation happen on the loop; every call that
    reaches SQLite goes to the connection's :class:`IOThread`. A call that was
    abandoned (its task was cancelled) leaves the connection *busy*: whatever
    comes next queues behind it in the thread, and the pool takes the
    connection back only after a rollback there.

    Calls are numbered as they are sent. An abandoned call that the thread has
    not started yet is not made; one that is running is stopped by SQLite's
    progress handler. ``sqlite3.Connection.interrupt()`` alone would not do:
    it is a no-op when it lands before the statement starts, and the
    statement then runs to its end.

    A call abandoned inside a transaction *dooms* it: its outcome is unknown
    (not made, made, or stopped; a write stopped by an interrupt makes SQLite
    roll back the whole transaction, after which every statement would run,
    and commit, on its own). Until the transaction is rolled back, statements
    and commits fail with ``OperationalError``, as on a PostgreSQL or MySQL
    connection closed after a cancelled query, so that nothing written before
    or after the cancellation can be committed without the rest.
    """

    def __init__(self, io: IOThread, raw: sqlite3.Connection, source: Connector) -> None:
        self.io = io
        self.raw = raw
        self.source = source
        self.pool: ConnectionSource | None = None  # where Django's close() returns it
        self.busy = False  # a call of an abandoned operation may still be running
        self.reusable = True  # False once a PRAGMA changed the connection's settings
        self.holds_writer = False
        self.doomed = False  # a call was abandoned inside the transaction: roll back only
        self._sent = 0  # calls sent to the thread
        self._running = 0  # the number of the call the thread is making
        self._abandoned = 0  # calls up to this number were abandoned
        raw.set_progress_handler(self._running_call_abandoned, ABANDON_CHECK_STEPS)

    # -- the I/O

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        self._sent += 1
        number = self._sent
        if not in_bridge():
            return self.io.call(self._make, number, fn, args)
        in_transaction = self.raw.in_transaction
        future = self.io.future(self._make, number, fn, args)
        try:
            result = await_(future)
        except BaseException:
            if future.cancelled() or not future.done():
                # Abandoned mid-call (cancellation): the call is not made, or
                # stopped early; its outcome, and the connection's state, are unknown.
                self.busy = True
                self._abandoned = number
                if in_transaction:
                    self.doomed = True
                self.raw.interrupt()
            else:  # the call ended in an error: every call before it ended too
                self.busy = False
            raise
        self.busy = False
        return result

    def _make(self, number: int, fn: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        """In the I/O thread: make call ``number``, unless it was abandoned before it started."""
        if number <= self._abandoned:
            raise sqlite3.OperationalError("interrupted: the call was abandoned before it started")
        self._running = number
        return fn(*args)

    def _running_call_abandoned(self) -> bool:
        """SQLite's progress handler, in the I/O thread: true stops the running statement."""
        return 0 < self._running <= self._abandoned

    def _inline(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call without I/O: made on the loop, unless the thread may be using the connection."""
        if self.busy:
            return self.call(fn, *args)
        return fn(*args)

    def statement(self, sql: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a statement in the thread, holding the file's write lock if it may write."""
        self._refuse_if_doomed()
        writer = self.source.writer
        if (
            writer is not None
            and not self.holds_writer
            and not self.busy
            and in_bridge()
            and _needs_write_turn(sql, self.raw.in_transaction)
        ):
            writer.acquire(self, self.source.write_timeout)
        if _sets_pragma(sql):
            self.reusable = False
        try:
            return self.call(fn, *args)
        finally:
            self.transaction_may_have_ended()

    def _refuse_if_doomed(self) -> None:
        if self.doomed:
            raise sqlite3.OperationalError(
                "a call of this transaction was cancelled mid-call (aorm): its outcome is "
                "unknown, and SQLite may have rolled the whole transaction back, so the "
                "transaction can only be rolled back"
            )

    def transaction_may_have_ended(self) -> None:
        if self.holds_writer and not self.busy and not self.raw.in_transaction:
            self.source.writer.release(self)  # type: ignore[union-attr]

    def call_ending_transaction(self, fn: Callable[..., Any], *args: Any) -> None:
        """A call that may end the transaction: the write lock is released with it."""
        try:
            self.call(fn, *args)
        finally:
            self.transaction_may_have_ended()

    # -- DB-API

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> Cursor:
        raw = self.raw.cursor() if factory is None else self.raw.cursor(factory)
        return Cursor(self, raw)

    def execute(self, sql: str, parameters: Any = None) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        self._refuse_if_doomed()
        if self.busy or self.raw.in_transaction:
            self.call_ending_transaction(self.raw.commit)

    def rollback(self) -> None:
        if self.busy or self.raw.in_transaction:
            self.call_ending_transaction(self.raw.rollback)
        self.doomed = False

    def close(self) -> None:
        """Django is done with the connection: roll back what it left, give it back."""
        pool = self.pool
        if pool is not None:
            try:
                self.reset()
            finally:
                pool.putconn(self)

    def reset(self) -> None:
        """Roll back what the last operation left open, after any call it abandoned."""
        try:
            if self.busy or self.raw.in_transaction or self.raw.isolation_level is not None:
                self.call(_rollback_and_reset, self.raw)
            self.doomed = False
        except BaseException:
            self.reusable = False
            raise
        finally:
            self.transaction_may_have_ended()

    @property
    def isolation_level(self) -> str | None:
        return self.raw.isolation_level

    @isolation_level.setter
    def isolation_level(self, level: str | None) -> None:
        if level == self.raw.isolation_level and not self.busy:
            return
        if self.busy or self.raw.in_transaction:  # setting it may commit
            self._refuse_if_doomed()
            self.call_ending_transaction(setattr, self.raw, "isolation_level", level)
        else:
            self.raw.isolation_level = level  # type: ignore[assignment]

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def interrupt(self) -> None:
        self.raw.interrupt()

    def __getattr__(self, name: str) -> Any:
        # create_function(), backup(), iterdump(), set_trace_callback()...
        if name == "raw":
            raise AttributeError(name)
        attribute = getattr(self.raw, name)
        if callable(attribute):
            return partial(self.call, attribute)
        return attribute


class Cursor:
    """A sqlite3 cursor whose calls run in its connection's I/O thread."""

    def __init__(self, connection: Connection, raw: sqlite3.Cursor) -> None:
        self.connection = connection
        self.raw = raw
        self._rows: collections.deque[Any] = collections.deque()
        self._more = False

    @property
    def description(self) -> Any:
        return self.raw.description

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self.raw.lastrowid

    @property
    def arraysize(self) -> int:
        return self.raw.arraysize

    @arraysize.setter
    def arraysize(self, size: int) -> None:
        self.raw.arraysize = size

    def execute(self, sql: str, params: Any = None) -> Cursor:
        args = (sql,) if params is None else (sql, params)
        self._rows.clear()
        rows, self._more = self.connection.statement(sql, _execute, self.raw, args)
        self._rows.extend(rows)
        return self

    def executemany(self, sql: str, param_list: Iterable[Any]) -> Cursor:
        self._rows.clear()
        self._more = False
        # Materialised here: a lazy iterable may run ORM code, which stays on the loop.
        self.connection.statement(sql, self.raw.executemany, sql, list(param_list))
        return self

    def executescript(self, script: str) -> Cursor:
        self._rows.clear()
        self._more = False
        self.connection.statement("script", self.raw.executescript, script)
        return self

    def _fill(self, size: int) -> None:
        rows, self._more = self.connection.call(_fetchmany, self.raw, max(size, PREFETCH_ROWS))
        self._rows.extend(rows)

    def fetchone(self) -> Any:
        if not self._rows and self._more:
            self._fill(1)
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        if size is None:
            size = self.raw.arraysize
        if len(self._rows) < size and self._more:
            self._fill(size - len(self._rows))
        rows = self._rows
        return [rows.popleft() for _ in range(min(size, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        if self._more:
            self._more = False
            rows.extend(self.connection.call(self.raw.fetchall))
        return rows

    def close(self) -> None:
        self._rows.clear()
        self._more = False
        self.connection._inline(self.raw.close)

    def setinputsizes(self, sizes: Any) -> None:
        pass

    def setoutputsize(self, size: Any, column: Any = None) -> None:
        pass

    def __iter__(self) -> Iterator[Any]:
        while (row := self.fetchone()) is not None:
            yield row
