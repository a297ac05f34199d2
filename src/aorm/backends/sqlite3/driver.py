"""sqlite3, driven from the bridge: every connection's sqlite3 calls run in its own thread.

SQLite has no socket to wait on: its calls block in the C library (disk reads,
fsync on commit, sleeping on another process's lock). Inside the bridge each
connection is therefore served by a dedicated :class:`IOThread` that runs that
connection's sqlite3 calls and nothing else, in the order they were sent; the
greenlet that sent a call awaits an asyncio future which the thread resolves.
Django's code (the SQL compiler, model hydration, signals) keeps running on
the event loop: only ``execute``/``fetchmany``/``commit``... cross over.

The DB-API objects Django holds are thin adapters (:class:`Connection`,
:class:`Cursor`). A query's first rows come back with its ``execute`` call, so a
``get()`` or a short list costs one round trip to the thread, not three.

Writers are serialised per database file and event loop by a
:class:`WriterLock`, taken before a statement that may start a write
transaction (``BEGIN``, or any statement that is not a ``SELECT`` outside a
transaction; in a ``BEGIN DEFERRED`` transaction, its first write) and
released when the connection leaves its transaction. A write
therefore never waits inside SQLite's busy handler (which polls, with sleeps of
up to 100 ms) for a lock another connection of the same loop holds: it waits
its turn on the loop, in FIFO order, and starts the moment the previous
transaction commits. SQLite's own ``timeout`` still covers other processes.

Connections are pooled per event loop by aorm's :class:`~aorm._pool.AsyncPool`
(:class:`Pooled`): opening one costs a thread and a dozen statements of setup.
An in-memory database lives as long as its connection, so it gets exactly one
connection per loop, kept until the loop ends and shared in turn by every
operation.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from queue import SimpleQueue
from typing import Any

from aorm._pool import AsyncPool
from aorm.backends.pooling import ConnectionSource
from aorm.bridge import await_, in_bridge

__all__ = [
    "PREFETCH_ROWS",
    "Connection",
    "Connector",
    "Cursor",
    "IOThread",
    "Pooled",
    "WriterLock",
]

# Rows returned with a query's ``execute`` round trip (Django reads by 100).
PREFETCH_ROWS = 256

_Done = Callable[[Any, BaseException | None], None]
_Job = tuple[Callable[..., Any], tuple[Any, ...], _Done]


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the waiting task was cancelled
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def _from_thread(
    loop: asyncio.AbstractEventLoop, callback: Callable[[Any, BaseException | None], None]
) -> _Done:
    """A completion callback for the I/O thread that runs ``callback`` on ``loop``."""

    def done(result: Any, error: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(callback, result, error)

    return done


class _Blocking:
    """Waits in a thread without an event loop (sync code, loop callbacks) for one job."""

    __slots__ = ("error", "lock", "result")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.result: Any = None
        self.error: BaseException | None = None

    def __call__(self, result: Any, error: BaseException | None) -> None:
        self.result, self.error = result, error
        self.lock.release()

    def wait(self) -> Any:
        self.lock.acquire()
        if self.error is not None:
            try:
                raise self.error
            finally:
                self.error = None
        return self.result


class IOThread:
    """A thread that makes one sqlite3 connection's calls, one after another.

    The thread owns the connection it opened: when it stops it closes it, so a
    connection can never outlive its thread, nor the other way round.
    """

    __slots__ = ("_exit", "_jobs", "connection", "thread")

    def __init__(self, name: str) -> None:
        self._jobs: SimpleQueue[_Job | None] = SimpleQueue()
        self._exit: list[_Done] = []
        self.connection: sqlite3.Connection | None = None
        self.thread = threading.Thread(target=self._serve, name=name, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        jobs = self._jobs
        try:
            while (job := jobs.get()) is not None:
                fn, args, done = job
                del job
                try:
                    result = fn(*args)
                except BaseException as exc:
                    done(None, exc)
                else:
                    done(result, None)
                    del result
                del fn, args, done
        finally:
            error: BaseException | None = None
            if self.connection is not None:
                try:
                    self.connection.close()
                except BaseException as exc:
                    error = exc
                self.connection = None
            for done in self._exit:
                done(None, error)
            self._exit.clear()

    def submit(self, fn: Callable[..., Any], args: tuple[Any, ...], done: _Done) -> None:
        self._jobs.put((fn, args, done))

    def future(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Send ``fn(*args)``; the future, on the running loop, gets its outcome."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, args, _from_thread(loop, partial(_resolve, future))))
        return future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """``fn(*args)`` in the thread: awaited on the loop in the bridge, blocking elsewhere."""
        if in_bridge():
            return await_(self.future(fn, *args))
        waiter = _Blocking()
        self._jobs.put((fn, args, waiter))
        return waiter.wait()

    def open_in_thread(self, connect: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
        """In the thread: open the connection it owns."""
        self.connection = connect()
        return self.connection

    def stop(self, done: _Done | None = None) -> None:
        """Close the connection once the calls already sent are made, and end the thread.

        ``done`` is called from the thread when it has closed the connection.
        """
        if done is not None:
            self._exit.append(done)
        self._jobs.put(None)


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
    """

    def __init__(self, io: IOThread, raw: sqlite3.Connection, source: Connector) -> None:
        self.io = io
        self.raw = raw
        self.source = source
        self.pool: Pooled | ConnectionSource | None = None  # where Django's close() returns it
        self.busy = False  # a call of an abandoned operation may still be running
        self.reusable = True  # False once a PRAGMA changed the connection's settings
        self.holds_writer = False

    # -- the I/O

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if not in_bridge():
            return self.io.call(fn, *args)
        future = self.io.future(fn, *args)
        try:
            result = await_(future)
        except BaseException:
            if future.cancelled() or not future.done():
                # Abandoned mid-call (cancellation): stop the statement early;
                # its outcome, and the connection's state, are unknown.
                self.busy = True
                self.raw.interrupt()
            else:  # the call ended in an error: every call before it ended too
                self.busy = False
            raise
        self.busy = False
        return result

    def _inline(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A call without I/O: made on the loop, unless the thread may be using the connection."""
        if self.busy:
            return self.call(fn, *args)
        return fn(*args)

    def statement(self, sql: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a statement in the thread, holding the file's write lock if it may write."""
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

    def transaction_may_have_ended(self) -> None:
        if self.holds_writer and not self.busy and not self.raw.in_transaction:
            self.source.writer.release(self)  # type: ignore[union-attr]

    # -- DB-API

    def cursor(self, factory: type[sqlite3.Cursor] | None = None) -> Cursor:
        raw = self.raw.cursor() if factory is None else self.raw.cursor(factory)
        return Cursor(self, raw)

    def execute(self, sql: str, parameters: Any = None) -> Cursor:
        return self.cursor().execute(sql, parameters)

    def commit(self) -> None:
        if self.busy or self.raw.in_transaction:
            try:
                self.call(self.raw.commit)
            finally:
                self.transaction_may_have_ended()

    def rollback(self) -> None:
        if self.busy or self.raw.in_transaction:
            try:
                self.call(self.raw.rollback)
            finally:
                self.transaction_may_have_ended()

    def close(self) -> None:
        """Django is done with the connection: give it back to its pool."""
        if self.pool is not None:
            self.pool.putconn(self)

    def reset(self) -> None:
        """Roll back what the last operation left open, after any call it abandoned."""
        try:
            if self.busy or self.raw.in_transaction or self.raw.isolation_level is not None:
                self.call(_rollback_and_reset, self.raw)
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
            try:
                self.call(setattr, self.raw, "isolation_level", level)
            finally:
                self.transaction_may_have_ended()
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


class _Waiters:
    """FIFO hand-over of a resource to waiters of the running loop, with a timeout.

    A waiter that gives up (cancelled, or timed out at the same moment) after
    something was handed to it passes it to ``on_lost``, so nothing is lost.
    """

    def __init__(self, on_lost: Callable[[Any], None]) -> None:
        self._queue: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._on_lost = on_lost

    def __bool__(self) -> bool:
        return any(not future.done() for future in self._queue)

    def wait(self, timeout: float) -> Any:
        """In the bridge: wait for :meth:`hand_over`; ``TimeoutError`` after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append(future)
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await_(future)
        except BaseException:
            if future.done() and not future.cancelled() and future.exception() is None:
                self._on_lost(future.result())
            raise
        finally:
            timer.cancel()
            if future in self._queue:
                self._queue.remove(future)

    def hand_over(self, value: Any) -> bool:
        """Give ``value`` to the first waiter still waiting; False if there is none."""
        queue = self._queue
        while queue:
            future = queue.popleft()
            if not future.done():
                future.set_result(value)
                return True
        return False


def _expire(future: asyncio.Future[Any]) -> None:
    if not future.done():
        future.set_exception(TimeoutError())


class _HandedOver:
    """Owner of a writer lock handed to a waiter that has not resumed yet."""

    def __repr__(self) -> str:
        return "<handed over>"


_HANDED_OVER: Any = _HandedOver()


class WriterLock:
    """The right to write to one database file, held by one connection of a loop at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: Connection | None = None
        self._waiters = _Waiters(self._pass_on)

    def acquire(self, connection: Connection, timeout: float) -> None:
        """In the bridge: wait for the write turn of ``connection``, in FIFO order."""
        if self.owner is connection:  # tasks sharing a transaction's connection
            return
        if self.owner is None and not self._waiters:
            self.owner = connection
        else:
            try:
                self._waiters.wait(timeout)
            except TimeoutError:
                raise sqlite3.OperationalError(
                    f"database is locked (aorm: no write turn on {self.name} within "
                    f"{timeout} s: another connection of this process holds a write "
                    "transaction; OPTIONS['timeout'] sets this delay)"
                ) from None
            self.owner = connection
        connection.holds_writer = True

    def release(self, connection: Connection) -> None:
        if self.owner is connection:
            connection.holds_writer = False
            self._pass_on(None)

    def _pass_on(self, _: object) -> None:
        self.owner = _HANDED_OVER if self._waiters.hand_over(None) else None

    def __repr__(self) -> str:
        return f"<WriterLock {self.name} owner={self.owner!r}>"


class Connector:
    """How one event loop opens, judges and closes connections to one database."""

    io_class: Callable[[str], IOThread] = IOThread

    def __init__(
        self,
        alias: str,
        connect: Callable[[], sqlite3.Connection],
        writer: WriterLock | None,
        write_timeout: float,
        memory: bool = False,
    ) -> None:
        self.alias = alias
        self._connect = connect
        self.writer = writer
        self.write_timeout = write_timeout
        self.memory = memory

    async def open(self) -> Connection:
        io = self.io_class(f"aorm-sqlite3[{self.alias}]")
        try:
            raw = await io.future(io.open_in_thread, self._connect)
        except BaseException:
            io.stop()
            raise
        return Connection(io, raw, self)

    def reusable(self, connection: Connection) -> bool:
        if self.memory:  # the database itself: kept whatever happened
            return True
        return connection.reusable and not connection.busy and not connection.raw.in_transaction

    async def close(self, connection: Connection) -> None:
        """Close the connection in its thread, end the thread, and give up its write turn."""
        if connection.busy:
            connection.raw.interrupt()
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()
        connection.io.stop(_from_thread(loop, partial(_resolve, stopped)))
        try:
            await stopped
        finally:
            if stopped.done():
                connection.io.thread.join(1.0)
                if connection.holds_writer:  # closed in a transaction: it rolled back
                    self.writer.release(connection)  # type: ignore[union-attr]


class Pooled:
    """Django's pool protocol (``getconn``/``putconn``) over aorm's async pool, in the bridge."""

    def __init__(self, connector: Connector, options: dict[str, Any]) -> None:
        self.connector = connector
        self.pool: AsyncPool[Connection] = AsyncPool(
            connector.alias, connector.open, connector.close, connector.reusable, options
        )

    def getconn(self) -> Connection:
        # An idle connection is taken without a switch to the loop and back.
        connection = self.pool.acquire_nowait()
        if connection is None:
            connection = await_(self.pool.acquire())
        connection.pool = self
        return connection

    def putconn(self, connection: Connection) -> None:
        connection.pool = None
        try:
            connection.reset()
        finally:
            if not self.pool.release_nowait(connection):
                await_(self.pool.release(connection))

    async def aclose(self) -> None:
        await self.pool.aclose()
