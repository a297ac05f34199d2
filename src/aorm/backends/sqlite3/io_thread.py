"""The thread that makes one sqlite3 connection's calls.

SQLite has no socket to wait on: its calls block in the C library (disk reads,
fsync on commit, sleeping on another process's lock). Inside the bridge each
connection is therefore served by a dedicated :class:`IOThread` that runs that
connection's sqlite3 calls and nothing else, in the order they were sent; the
greenlet that sent a call awaits an asyncio future which the thread resolves.
Django's code (the SQL compiler, model hydration, signals) keeps running on
the event loop: only ``execute``/``fetchmany``/``commit``... cross over.

Why a thread per connection rather than calling sqlite3 on the loop, which
costs less CPU: a blocked call would freeze every task of the process for as
long as SQLite blocks (a slow query, fsync, the busy timeout). aiosqlite uses
the same design; this one is about fifty lines behind the same adapter, so
not worth a dependency. Measurements: ``bench/results/sqlite_driver.md``.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from collections.abc import Callable
from functools import partial
from queue import SimpleQueue
from typing import Any

from aorm.bridge import await_, in_bridge

__all__ = ["Done", "IOThread", "from_thread", "resolve"]

logger = logging.getLogger("aorm.sqlite3")

Done = Callable[[Any, BaseException | None], None]
_Job = tuple[Callable[..., Any], tuple[Any, ...], Done]


def resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    """Give ``future`` the outcome of a call, unless its waiter has gone (cancelled)."""
    if future.done():
        return
    if error is None:
        future.set_result(result)
    else:
        future.set_exception(error)


def from_thread(loop: asyncio.AbstractEventLoop, callback: Done) -> Done:
    """A completion callback for the I/O thread that runs ``callback`` on ``loop``."""

    def done(result: Any, error: BaseException | None) -> None:
        try:
            loop.call_soon_threadsafe(callback, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            logger.debug("an sqlite3 call ended after its event loop closed: %r", error)

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
        self._exit: list[Done] = []
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

    def future(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        """Send ``fn(*args)``; the future, on the running loop, gets its outcome."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((fn, args, from_thread(loop, partial(resolve, future))))
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

    def stop(self, done: Done | None = None) -> None:
        """Close the connection once the calls already sent are made, and end the thread.

        ``done`` is called from the thread when it has closed the connection.
        """
        if done is not None:
            self._exit.append(done)
        self._jobs.put(None)
