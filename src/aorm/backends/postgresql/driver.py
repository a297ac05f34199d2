"""psycopg, driven from the bridge.

psycopg implements every exchange with the server as a generator and lets the
connection's ``wait()`` drive it: the synchronous ``Connection`` blocks on the
socket, ``AsyncConnection`` awaits it. aorm's :class:`Connection` is psycopg's
synchronous connection whose ``wait()``, inside the bridge, awaits the
generator on the event loop. Django's unchanged backend code and its own cursor
classes (client-side binding, server-side cursors, ``callproc``, COPY) run on
it as they are; only the waiting changed place. A client-side cursor's fetches
never wait, so they cost nothing extra.

Waiting is per statement, so it is kept cheap (measured with
``bench.profile_a``: registering and unregistering the socket with the loop
was 4-5% of a get under concurrency):

- A generator step that needs no I/O runs in the greenlet, without a switch
  to the loop.
- A wait for the server's answer awaits a bare future that a reader callback
  resolves. The reader stays registered between waits (psycopg's own
  ``wait_async`` adds and removes it, plus a timer, at every wait), and is
  removed when the socket is reported readable twice in a row while nothing
  waits on it (the loop watches level-triggered: unread input would wake it
  on every turn), when the connection is closed or lost, and before
  psycopg's own async methods use the socket. Once is not enough: the loop
  often polls before the woken task has read its answer, and then reports,
  after that task ran, input already read; unwatching for that cost a
  removal and a new registration per statement under concurrency. A new registration
  first removes whatever the loop holds for that file descriptor, so a stale
  entry of a closed socket with the same number cannot hide it.
- Waits to write, and waits with a timeout, are psycopg's ``wait_async``.

Connections are opened by psycopg's ``AsyncConnection.connect`` (the
:class:`Connector`) and pooled by :mod:`aorm.backends.pooling` over
:mod:`aorm._pool` (see there why not psycopg_pool). The synchronous face shares
the async connection's libpq connection and lives exactly as long as it, so
client state (prepared statements, adapters) stays consistent.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import AsyncConnection, waiting
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.waiting import Ready, Wait

from aorm import bridge
from aorm.backends import pooling
from aorm.bridge import await_, in_bridge

__all__ = ["Connection", "Connector"]

logger = logging.getLogger("aorm.postgresql")


class _ExclusiveUse:
    """psycopg's connection lock, for greenlets sharing one thread.

    A ``threading.Lock`` contended by two greenlets of one thread would block
    the event loop forever; contention here can only mean two tasks using one
    connection at once, so it fails loudly instead.
    """

    __slots__ = ("_held",)

    def __init__(self) -> None:
        self._held = False

    def __enter__(self) -> None:
        if self._held:
            raise psycopg.InterfaceError(
                "two tasks used this connection at the same time: a statement started "
                "while another one's was still running. aorm gives each concurrent "
                "operation its own connection and serialises the tasks of a transaction; "
                "a connection object passed to another task, or used outside aorm.run(), "
                "bypasses that"
            )
        self._held = True

    def __exit__(self, *exc_info: object) -> None:
        self._held = False


class Connection(psycopg.Connection[Any]):
    """A synchronous psycopg connection whose waits, inside the bridge, run on the event loop."""

    def __init__(
        self,
        source: AsyncConnection[Any],
        cursor_factory: type[psycopg.Cursor[Any]],
        cancel_timeout: float = pooling.DEFAULT_CANCEL_TIMEOUT,
    ):
        super().__init__(source.pgconn)
        self.lock = _ExclusiveUse()  # type: ignore[assignment]
        self.async_connection = source
        self.cursor_factory = cursor_factory
        # Same configuration as the async connection (Django's adapters and
        # time zone loaders, autocommit state): these have no public setter.
        self._adapters = source.adapters
        self._autocommit = source.autocommit
        self.prepare_threshold = source.prepare_threshold
        self.cancel_timeout = cancel_timeout  # the cancel request's bound (connect_timeout)
        self.parked: Any = None  # the DatabaseWrapper kept with it between operations
        self._watched: asyncio.AbstractEventLoop | None = None  # loop watching the socket
        self._watched_fd = -1
        self._waiter: asyncio.Future[None] | None = None
        self._waiting = False  # in wait(): the socket will be read
        self._unawaited_input = False  # reported readable once since the last wait

    def wait(self, gen: Any, interval: float = 0.1, timeout: float | None = None) -> Any:
        if not in_bridge():
            return super().wait(gen, interval, timeout)
        try:
            self._waiting = True
            self._unawaited_input = False
            try:
                state = next(gen)
                while True:
                    if state != Wait.R or timeout is not None:
                        self.unwatch()
                        return await_(
                            waiting.wait_async(
                                _resumed(state, gen),
                                self.pgconn.socket,
                                interval=interval,
                                timeout=timeout,
                            )
                        )
                    loop = asyncio.get_running_loop()
                    if self._watched is not loop:
                        self._watch(loop)
                    waiter = self._waiter = loop.create_future()
                    await_(waiter)
                    state = gen.send(Ready.R)
            except StopIteration as done:
                return done.value
            except OSError as exc:  # as psycopg's wait_async: the socket is gone
                raise psycopg.OperationalError("connection socket closed") from exc
            finally:
                self._waiting = False
                self._waiter = None
                if self.pgconn.status == ConnStatus.BAD:  # libpq may have closed the socket
                    self.unwatch()
        except asyncio.CancelledError:
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                # Mid-exchange: stop the server's work, and never reuse a
                # connection whose protocol state is unknown.
                self.unwatch()
                try:
                    await_(self.async_connection.cancel_safe(timeout=self.cancel_timeout))
                except Exception as exc:  # best effort: closed below anyway
                    logger.warning("error cancelling the query of a cancelled task: %s", exc)
                self.pgconn.finish()
            raise

    # Where Django's ``close()`` gives the connection back: psycopg's own
    # attribute, which also tells psycopg that the connection is pooled.
    @property
    def pool(self) -> Any:
        return self._pool

    @pool.setter
    def pool(self, source: Any) -> None:
        self._pool = source

    def _watch(self, loop: asyncio.AbstractEventLoop) -> None:
        fd = self.pgconn.socket
        loop.remove_reader(fd)  # a closed socket's entry with the same number, if any
        loop.add_reader(fd, self._readable)
        self._watched, self._watched_fd = loop, fd

    def _readable(self) -> None:
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():
                waiter.set_result(None)
        elif self._waiting:
            pass  # answered, and about to be read (the loop polled once more first)
        elif self._unawaited_input:  # input nothing waits for: the next wait reads it
            self.unwatch()
        else:  # perhaps reported before its reader ran: unwatch if it is reported again
            self._unawaited_input = True

    def unwatch(self) -> None:
        """Stop watching the socket: before it is closed, or used by psycopg's async API."""
        loop, self._watched = self._watched, None
        if loop is not None and not loop.is_closed():
            try:
                loop.remove_reader(self._watched_fd)
            except Exception as exc:  # a socket closed already
                logger.debug("socket %d no longer watched: %s", self._watched_fd, exc)

    def close(self) -> None:
        self.unwatch()
        super().close()


def _resumed(first: Any, gen: Any) -> Any:
    """``gen``, already advanced to ``first``, as a fresh generator for psycopg's waiting."""
    ready = yield first
    while True:
        try:
            state = gen.send(ready)
        except StopIteration as done:
            return done.value
        ready = yield state


def _split(connect_kwargs: dict[str, Any]) -> tuple[dict[str, Any], type[psycopg.Cursor[Any]]]:
    """Django's connection parameters, less its synchronous cursor class (the face's)."""
    kwargs = {**connect_kwargs, "autocommit": True}
    return kwargs, kwargs.pop("cursor_factory")


class Connector:
    """How one event loop opens, judges, checks and closes connections to one database."""

    def __init__(
        self,
        alias: str,
        connect_kwargs: dict[str, Any],
        configure: Callable[[Connection], object],
    ) -> None:
        self.alias = alias
        self._kwargs, self._cursor_factory = _split(connect_kwargs)
        self._cancel_timeout = pooling.cancel_timeout(self._kwargs.get("connect_timeout"))
        self._configure = configure

    async def open(self) -> Connection:
        """A connection, with Django's per-connection setup (time zone, role) done."""
        source = await AsyncConnection.connect(**self._kwargs)
        face = Connection(source, self._cursor_factory, self._cancel_timeout)
        try:
            await bridge.run(self._configure, face)
        except BaseException:
            face.unwatch()
            face.pgconn.finish()
            raise
        return face

    def reusable(self, face: Connection) -> bool:
        """Open, and not inside a transaction or an error state: safe for the next borrower."""
        return not face.closed and face.pgconn.transaction_status == TransactionStatus.IDLE

    async def check(self, face: Connection) -> None:
        """The pool's health check (``CONN_HEALTH_CHECKS``): an empty round trip."""
        face.unwatch()
        await face.async_connection.execute("")

    async def close(self, face: Connection) -> None:
        face.unwatch()
        await face.async_connection.close()
