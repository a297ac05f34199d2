"""How one event loop opens, judges and closes connections to one SQLite database.

Opening a connection costs a thread and a dozen statements of Django's setup,
so connections are pooled per event loop (:mod:`aorm.backends.pooling`). An
in-memory database lives as long as its connection: it gets exactly one per
loop, kept until the loop ends and shared in turn by every operation.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from functools import partial

from aorm.backends.sqlite3.dbapi import Connection
from aorm.backends.sqlite3.io_thread import IOThread, from_thread, resolve
from aorm.backends.sqlite3.writer import WriterLock

__all__ = ["Connector"]


class Connector:
    """How one event loop opens, judges and closes connections to one database."""

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
        io = IOThread(f"aorm-sqlite3[{self.alias}]")
        try:
            raw = await io.future(io.open_in_thread, self._connect)
        except BaseException:
            io.stop()
            raise
        return Connection(io, raw, self)

    def reusable(self, connection: Connection) -> bool:
        if self.memory:  # the database itself: kept whatever happened
            return True
        return (
            connection.reusable
            and not connection.busy
            and not connection.doomed
            and not connection.raw.in_transaction
        )

    async def close(self, connection: Connection) -> None:
        """Close the connection in its thread, end the thread, and give up its write turn."""
        if connection.busy:
            connection.raw.interrupt()
        loop = asyncio.get_running_loop()
        stopped = loop.create_future()
        connection.io.stop(from_thread(loop, partial(resolve, stopped)))
        try:
            await stopped
        finally:
            if stopped.done():
                connection.io.thread.join(1.0)
                if connection.holds_writer:  # closed in a transaction: it rolled back
                    self.writer.release(connection)  # type: ignore[union-attr]
