"""One writer at a time per SQLite file and event loop, taking turns in order.

SQLite lets one connection at a time write to a file. Left to SQLite
(``BEGIN IMMEDIATE`` plus a busy timeout), waiting writers poll in its busy
handler, sleeping up to 100 ms between tries, in no particular order; and
Django's default transactions (a plain, deferred ``BEGIN``) that read before
they write fail at once (SQLITE_BUSY_SNAPSHOT) when another connection
committed in between. So a connection takes the file's :class:`WriterLock`
before a statement that may start a write transaction (``BEGIN``, or any
statement that is not a read outside a transaction; in a ``BEGIN DEFERRED``
transaction, its first write) and gives it back when its transaction ends.
Waiters queue on the loop in FIFO order, and the next one starts the moment
the previous transaction commits. Waiting longer than ``OPTIONS["timeout"]``
raises the same "database is locked" as SQLite would, so a connection that
waits for its own operation's other connection fails as in sync Django
instead of hanging. Readers never take the turn: in WAL mode they read the
last commit without waiting. SQLite's busy timeout still covers other
processes and other event loops.

Every transaction thus behaves as ``IMMEDIATE`` within the process, and
read-only ``atomic()`` blocks take turns too. An explicit
``"transaction_mode": "DEFERRED"`` restores SQLite's behaviour: the turn is
taken at the transaction's first write, read-only transactions overlap, and a
transaction that reads before it writes may fail with "database is locked"
when another one committed in between. Measurements:
``bench/results/sqlite_driver.md``.
"""

from __future__ import annotations

import sqlite3
from typing import Any, Protocol

from aorm._waiters import WaitQueue
from aorm.bridge import await_

__all__ = ["WriterLock"]


class _Writer(Protocol):
    holds_writer: bool


class _HandedOver:
    """Owner of a writer lock handed to a waiter that has not resumed yet."""

    def __repr__(self) -> str:
        return "<handed over>"


_HANDED_OVER: Any = _HandedOver()


class WriterLock:
    """The right to write to one database file, held by one connection of a loop at a time."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.owner: _Writer | None = None
        self._waiters: WaitQueue[None] = WaitQueue(self._pass_on)

    def acquire(self, connection: _Writer, timeout: float) -> None:
        """In the bridge: wait for the write turn of ``connection``, in FIFO order."""
        if self.owner is connection:  # tasks sharing a transaction's connection
            return
        if self.owner is None and not self._waiters:
            self.owner = connection
        else:
            try:
                await_(self._waiters.wait(timeout))
            except TimeoutError:
                raise sqlite3.OperationalError(
                    f"database is locked (aorm: no write turn on {self.name} within "
                    f"{timeout} s: another connection of this process holds a write "
                    "transaction; OPTIONS['timeout'] sets this delay)"
                ) from None
            self.owner = connection
        connection.holds_writer = True

    def release(self, connection: _Writer) -> None:
        if self.owner is connection:
            connection.holds_writer = False
            self._pass_on(None)

    def _pass_on(self, _: object) -> None:
        self.owner = _HANDED_OVER if self._waiters.wake(None) else None

    def __repr__(self) -> str:
        return f"<WriterLock {self.name} owner={self.owner!r}>"
