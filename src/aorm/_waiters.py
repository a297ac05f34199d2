"""A fair queue of tasks waiting for something one of them at a time may take.

aorm has three such waits: for a connection of a pool (``_pool``), for the
write turn on a SQLite file (``backends/sqlite3/writer.py``) and for the turn
on a transaction's connection (``_blocks``). Each uses a :class:`WaitQueue`:

- Waiters are served in order (first in, first out). A waiter that was woken
  but found it could not proceed after all waits again at the front.
- A release wakes one waiter only, handing it a value (a connection, or None
  for "your turn"): no herd of woken tasks that all go back to sleep.
- Cancellation loses nothing. A waiter cancelled (or timed out) before it is
  woken simply leaves; one cancelled after it was woken, before it could
  resume, gives what it was handed to ``on_abandoned`` (the owner passes it
  on to the next waiter), so no slot leaks and no wake-up is lost.
- A timeout is a timer on the waiter itself, not a cancellation of its task,
  so a waiter woken at the same moment as its timer fires keeps what it got.

The queue belongs to one event loop, as its futures do.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import Any, Generic, TypeVar

__all__ = ["WaitQueue"]

T = TypeVar("T")


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class WaitQueue(Generic[T]):
    """Tasks waiting in line for a value that :meth:`wake` hands to the first of them."""

    __slots__ = ("_on_abandoned", "_queue")

    def __init__(self, on_abandoned: Callable[[T], object]) -> None:
        self._queue: deque[asyncio.Future[T]] = deque()
        self._on_abandoned = on_abandoned

    def __bool__(self) -> bool:
        """Whether a task waits (and has not been woken yet)."""
        queue = self._queue
        while queue and queue[0].done():  # woken, timed out or cancelled
            queue.popleft()
        return bool(queue)

    def __len__(self) -> int:
        return sum(1 for waiter in self._queue if not waiter.done())

    async def wait(self, timeout: float | None = None, *, front: bool = False) -> T:
        """Wait for :meth:`wake`; its value. ``TimeoutError`` after ``timeout`` seconds.

        ``front``: wait ahead of the others (a waiter that was woken but could
        not proceed keeps its place).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        if front:
            self._queue.appendleft(waiter)
        else:
            self._queue.append(waiter)
        timer = None if timeout is None else loop.call_later(timeout, _expire, waiter)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._on_abandoned(waiter.result())  # woken, but gone: pass it on
            else:
                waiter.cancel()  # so that wake() skips it
            raise
        finally:
            if timer is not None:
                timer.cancel()

    def wake(self, value: T) -> bool:
        """Hand ``value`` to the first waiter; False if none waits (the caller keeps it)."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False

    def wake_all(self, value: T) -> None:
        """Hand ``value`` to every waiter (what they waited for is gone for good)."""
        while self.wake(value):
            pass
