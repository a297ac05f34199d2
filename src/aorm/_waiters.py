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
- A timeout fails the waiter itself, not its task, so a waiter woken at the
  same moment as its deadline passes keeps what it got. One timer per queue
  serves every deadline: armed for the earliest, it fails the waiters whose
  deadline passed when it fires and re-arms for the next. A timer per wait
  (armed, then cancelled when the waiter is served, as nearly all are) was
  a tenth of what pool waits added to a get under workload B (cProfile, a
  pool of 10 against one of 100).

The queue belongs to one event loop, as its futures do.
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["WaitQueue"]

T = TypeVar("T")


class WaitQueue(Generic[T]):
    """Tasks waiting in line for a value that :meth:`wake` hands to the first of them."""

    __slots__ = ("_on_abandoned", "_queue", "_timer", "_timer_at")

    def __init__(self, on_abandoned: Callable[[T], object]) -> None:
        self._queue: deque[tuple[asyncio.Future[T], float]] = deque()  # (waiter, deadline)
        self._on_abandoned = on_abandoned
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = math.inf

    def __bool__(self) -> bool:
        """Whether a task waits (and has not been woken yet)."""
        queue = self._queue
        while queue and queue[0][0].done():  # woken, timed out or cancelled
            queue.popleft()
        return bool(queue)

    def __len__(self) -> int:
        return sum(1 for waiter, _ in self._queue if not waiter.done())

    async def wait(self, timeout: float | None = None, *, front: bool = False) -> T:
        """Wait for :meth:`wake`; its value. ``TimeoutError`` after ``timeout`` seconds.

        ``front``: wait ahead of the others (a waiter that was woken but could
        not proceed keeps its place).
        """
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[T] = loop.create_future()
        deadline = math.inf if timeout is None else loop.time() + timeout
        if front:
            self._queue.appendleft((waiter, deadline))
        else:
            self._queue.append((waiter, deadline))
        if deadline < self._timer_at:
            self._arm(loop, deadline)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                self._on_abandoned(waiter.result())  # woken, but gone: pass it on
            else:
                waiter.cancel()  # so that wake() skips it
            raise

    def _arm(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(deadline, self._expire, loop)
        self._timer_at = deadline

    def _expire(self, loop: asyncio.AbstractEventLoop) -> None:
        """Fail the waiters whose deadline passed; re-arm for the earliest of the others."""
        self._timer, self._timer_at = None, math.inf
        now, earliest = loop.time(), math.inf
        for waiter, deadline in self._queue:
            if waiter.done():
                continue
            if deadline <= now:
                waiter.set_exception(TimeoutError())
            elif deadline < earliest:
                earliest = deadline
        if earliest != math.inf:
            self._arm(loop, earliest)

    def wake(self, value: T) -> bool:
        """Hand ``value`` to the first waiter; False if none waits (the caller keeps it)."""
        queue = self._queue
        while queue:
            waiter = queue.popleft()[0]
            if not waiter.done():
                waiter.set_result(value)
                return True
        return False

    def wake_all(self, value: T) -> None:
        """Hand ``value`` to every waiter (what they waited for is gone for good)."""
        while self.wake(value):
            pass
