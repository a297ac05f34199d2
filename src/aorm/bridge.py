"""Run synchronous code on the event loop, suspending it wherever it waits for I/O.

``run(fn)`` starts ``fn`` in a worker greenlet on behalf of the awaiting task.
Inside it, ``await_(awaitable)`` switches back to the task, which awaits the
awaitable on the loop and switches back in with the result, or throws the
exception in. Django's synchronous ORM code therefore runs unchanged while its
driver calls are real coroutines: no thread, no second event loop.

Design points:

- The worker runs in the calling task's own ``contextvars.Context`` (not a
  copy), so context variables flow both ways and asgiref's context-local
  ``django.db.connections`` sees the task's state.
- Workers are reused: a new greenlet costs a stack allocation (~13 µs),
  an idle one a couple of switches.
- Exceptions cross in both directions with their tracebacks; a task cancelled
  while the worker waits receives ``CancelledError`` inside the worker, at the
  ``await_`` call, where ``finally`` blocks and context managers run as usual.

This is the only module of aorm that knows about greenlets.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any, ParamSpec, TypeVar

from greenlet import getcurrent, greenlet

__all__ = ["BridgeError", "await_", "in_bridge", "run"]

P = ParamSpec("P")
T = TypeVar("T")

_MAX_IDLE_WORKERS = 64


class BridgeError(RuntimeError):
    """``await_`` was called where no event loop task is waiting to serve it."""


class _Await:
    """A worker's request to its task: await this, then switch back."""

    __slots__ = ("awaitable",)

    def __init__(self, awaitable: Awaitable[Any]) -> None:
        self.awaitable = awaitable


class _Done:
    """A worker's final message for one job: its result or its exception."""

    __slots__ = ("error", "result")

    def __init__(self, result: Any, error: BaseException | None) -> None:
        self.result = result
        self.error = error


class _Worker(greenlet):  # type: ignore[misc]
    """A greenlet that runs one job after another for whichever task drives it."""

    def __init__(self) -> None:
        super().__init__(self._serve)

    def _serve(
        self, job: tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]] | None
    ) -> None:
        while job is not None:  # None: retire
            fn, args, kwargs = job
            del job
            try:
                done = _Done(fn(*args, **kwargs), None)
            except BaseException as exc:
                done = _Done(None, exc)
            del fn, args, kwargs
            job = self.parent.switch(done)


class _IdleWorkers(threading.local):
    def __init__(self) -> None:
        self.workers: list[_Worker] = []


_idle = _IdleWorkers()


def in_bridge() -> bool:
    """True when called from synchronous code running under ``run()``."""
    return type(getcurrent()) is _Worker


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run the synchronous ``fn(*args, **kwargs)`` on the loop, serving its ``await_`` calls."""
    idle = _idle.workers
    worker = idle.pop() if idle else _Worker()
    driver = getcurrent()
    worker.parent = driver
    worker.gr_context = driver.gr_context
    message = worker.switch((fn, args, kwargs))
    while type(message) is _Await:
        try:
            value = await message.awaitable
        except BaseException as exc:
            message = worker.throw(type(exc), exc, exc.__traceback__)
        else:
            message = worker.switch(value)
    worker.gr_context = None
    if len(idle) < _MAX_IDLE_WORKERS:
        idle.append(worker)
    else:
        worker.switch(None)  # let it finish, rather than leave a suspended greenlet behind
    result, error = message.result, message.error
    message.result = message.error = None
    if error is not None:
        try:
            raise error
        finally:
            del error
    return result  # type: ignore[no-any-return]


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` on the event loop from synchronous code run by ``run()``."""
    current = getcurrent()
    if type(current) is not _Worker:
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        raise BridgeError(
            "aorm.bridge.await_() was called outside aorm.run(). From async code, "
            "await the coroutine directly; to run synchronous ORM code natively from "
            "async code, call it as `await aorm.run(fn, *args)`."
        )
    return current.parent.switch(_Await(awaitable))  # type: ignore[no-any-return]
