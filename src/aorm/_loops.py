"""Resources that belong to one event loop, closed when that loop shuts down.

Async connection pools cannot be shared between event loops: their sockets,
locks and background tasks are bound to the loop that created them, and tests,
management commands and ``asyncio.run`` start new loops all the time. Each loop
therefore gets its own resources, keyed by the loop itself.

asyncio has no "loop closing" hook, but ``asyncio.run`` (and every runner built
on ``asyncio.Runner``: uvicorn, pytest-asyncio) calls
``loop.shutdown_asyncgens()`` before closing a loop, which finalises every
async generator started on it. A sentinel generator per loop turns that into
the hook: its ``finally`` closes the loop's resources, on the loop, while it
still runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["LoopResources", "for_running_loop", "forget", "loop_running"]


def loop_running() -> bool:
    """Whether an event loop runs in this thread (Django's sign of async code)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class LoopResources:
    """Named objects owned by one event loop, each with the coroutine function that closes it."""

    def __init__(self) -> None:
        self._items: dict[Any, tuple[Any, Callable[[Any], Awaitable[object]]]] = {}

    def get(self, key: Any, create: Callable[[], T], close: Callable[[T], Awaitable[object]]) -> T:
        """Return the object stored under ``key``, creating it on first use."""
        try:
            return self._items[key][0]  # type: ignore[no-any-return]
        except KeyError:
            value = create()
            self._items[key] = (value, close)  # type: ignore[assignment]
            return value

    def find(self, key: Any) -> Any:
        """The object stored under ``key``, or None."""
        item = self._items.get(key)
        return None if item is None else item[0]

    def pop(self, key: Any) -> tuple[Any, Callable[[Any], Awaitable[object]]] | None:
        return self._items.pop(key, None)

    def keys(self) -> list[Any]:
        return list(self._items)

    async def aclose(self) -> None:
        """Close every resource, in reverse creation order."""
        while self._items:
            _, (value, close) = self._items.popitem()
            await close(value)


_by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[LoopResources, object]] = (
    weakref.WeakKeyDictionary()
)


async def _close_at_shutdown(resources: LoopResources) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await resources.aclose()


def for_running_loop() -> LoopResources:
    """The resources of the running event loop, registered for closing at its shutdown."""
    loop = asyncio.get_running_loop()
    entry = _by_loop.get(loop)
    if entry is None:
        resources = LoopResources()
        sentinel = _close_at_shutdown(resources)
        # Step it to its first ``yield`` right here: that registers it with the
        # running loop (through the loop's asyncgen hooks) without a task.
        with contextlib.suppress(StopIteration):
            sentinel.__anext__().send(None)  # type: ignore[attr-defined]
        entry = _by_loop[loop] = (resources, sentinel)
    return entry[0]


def forget(key: Any) -> list[tuple[asyncio.AbstractEventLoop, Any, Any]]:
    """Detach ``key`` from every loop; return ``(loop, value, close)`` for the caller to close."""
    detached = []
    for loop, (resources, _) in list(_by_loop.items()):
        item = resources.pop(key)
        if item is not None:
            detached.append((loop, *item))
    return detached
