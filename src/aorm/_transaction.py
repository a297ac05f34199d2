"""Django's transaction API in async code: ``async with transaction.atomic()`` and friends.

Django's own ``Atomic`` does the work (savepoints, ``durable``, rollback on
exception, on_commit hooks); aorm runs its ``__enter__`` and ``__exit__``
through the bridge on the block's :class:`aorm._blocks.Transaction`, whose
wrapper every operation of the block, and of the tasks started in it, uses.

- ``async with transaction.atomic(...)`` and ``@transaction.atomic`` on an
  ``async def`` (the awaited body runs in the block; stock Django wraps only
  the creation of the coroutine).
- The end of a block (commit or rollback) is shielded from cancellation: a
  cancelled task leaves no half-ended transaction; the cancellation is
  re-raised once the block has ended.
- ``transaction.on_commit`` accepts coroutine functions. Called from async
  code outside any transaction, it runs the callback at once, as Django
  does (a coroutine function is started as a task); ``aorm.aon_commit`` is
  the awaitable form, which awaits it before returning.
- ``ATOMIC_REQUESTS`` works with async views (stock Django raises).
- On aliases with Django's own backends, ``async with atomic()`` runs the
  block's ends in the thread where Django runs that alias's async calls, so
  they take part in the transaction, as sync code would.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.core.handlers.base import BaseHandler
from django.db import DEFAULT_DB_ALIAS, connections
from django.db import transaction as django_transaction
from django.db.transaction import Atomic

from aorm import _blocks, _operation, bridge
from aorm.backends.base import native_aliases

__all__ = [
    "aenter",
    "aexit",
    "aget_autocommit",
    "aget_rollback",
    "aon_commit",
    "aset_rollback",
    "atomic_call",
    "make_view_atomic",
]

logger = logging.getLogger("aorm")

T = TypeVar("T")


async def _shielded(awaitable: Awaitable[T]) -> T:
    """Await ``awaitable`` to its end even if the caller is cancelled meanwhile; then re-raise."""
    # The task that finishes the work is inside this task's blocks, as it.
    task = asyncio.ensure_future(_blocks.in_blocks_of(_blocks.own_blocks(), awaitable))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


def _end_block(atomic: Atomic, block: _blocks.Block, exc_info: tuple[Any, Any, Any]) -> None:
    """Django's ``Atomic.__exit__`` on the block; the outermost gives its connection back."""
    transaction = block.transaction
    try:
        error: BaseException | None = None
        if block.iterations:  # loops left early: their cursors are closed first, in the block
            wrapper = transaction.wrapper
            released = exc_info[0] is None and not (
                wrapper is None or wrapper.needs_rollback or wrapper.closed_in_transaction
            )
            try:
                _operation.end_iterations(block, released)
            except BaseException as exc:  # a failed statement: the block rolls back, and raises
                error, exc_info = exc, (type(exc), exc, exc.__traceback__)
        if block.parent is None:
            # The commit runs the on_commit callbacks: tasks they start come after it.
            with _blocks.tasks_started_outside(transaction.alias):
                atomic.__exit__(*exc_info)
        else:
            atomic.__exit__(*exc_info)
        if error is not None:
            raise error
    finally:
        block.ended = True  # tasks still inside it can no longer take a turn
        if block.parent is None:
            wrapper, transaction.wrapper = transaction.wrapper, None
            if wrapper is not None:
                _operation.detach(transaction.alias)
                _operation.give_back(wrapper)


def _own_blocks(atomic: Atomic) -> list[tuple[_blocks.Block, Any]]:
    """The blocks ``atomic`` has open in the current task (one instance may serve many tasks)."""
    by_task = atomic.__dict__.setdefault("_aorm_blocks", {})
    return by_task.setdefault(asyncio.current_task(), [])  # type: ignore[no-any-return]


async def aenter(self: Atomic) -> Atomic:
    alias = self.using or DEFAULT_DB_ALIAS
    if alias not in native_aliases():
        # Deliberate fallback, Django's own backend: its async calls run in
        # asgiref's thread, so the block's ends must run there too.
        await sync_to_async(self.__enter__)()
        return self
    parent = _blocks.current_blocks().get(alias)
    if parent is None:
        transaction = _blocks.Transaction(alias)
        block = _blocks.Block(transaction, None)
        transaction.set_innermost(block)
        token = _blocks.enter_block(block)
        try:
            await _operation.run(self.__enter__)
        except BaseException:
            _blocks.leave_block(token)
            await _shielded(_abandon(transaction))
            raise
    else:
        await _operation.run(self.__enter__)  # a savepoint, on the parent's turn
        block = _blocks.Block(parent.transaction, parent)
        parent.transaction.set_innermost(block)
        token = _blocks.enter_block(block)
    _own_blocks(self).append((block, token))
    return self


async def aexit(self: Atomic, exc_type: Any, exc: Any, tb: Any) -> None:
    alias = self.using or DEFAULT_DB_ALIAS
    if alias not in native_aliases():  # Django's own backend: see aenter
        await _shielded(sync_to_async(self.__exit__)(exc_type, exc, tb))
        return
    blocks = _own_blocks(self)
    block, token = blocks.pop()
    if not blocks:
        del self.__dict__["_aorm_blocks"][asyncio.current_task()]
    try:
        await _shielded(_operation.run(_end_block, self, block, (exc_type, exc, tb)))
    finally:
        _blocks.leave_block(token)
        block.transaction.set_innermost(block.parent)
        if block.parent is None:
            await _shielded(_abandon(block.transaction))


async def _abandon(transaction: _blocks.Transaction) -> None:
    """End a transaction for good; a connection left in it is closed, never reused."""
    block = transaction.top
    while block is not None:  # tasks still inside any of its blocks learn that it ended
        block.ended = True
        block = block.parent
    transaction.set_innermost(None)
    wrapper, transaction.wrapper = transaction.wrapper, None
    if wrapper is not None:
        await bridge.run(wrapper.close)


_django_call = Atomic.__call__


def atomic_call(self: Atomic, func: Callable[..., Any]) -> Callable[..., Any]:
    """``@transaction.atomic`` on an ``async def`` wraps the awaited body."""
    if not inspect.iscoroutinefunction(func):
        return _django_call(self, func)  # type: ignore[no-any-return]

    @functools.wraps(func)
    async def in_transaction(*args: Any, **kwargs: Any) -> Any:
        async with Atomic(self.using, self.savepoint, self.durable):
            return await func(*args, **kwargs)

    return in_transaction


_django_make_view_atomic = BaseHandler.make_view_atomic


def make_view_atomic(self: BaseHandler, view: Callable[..., Any]) -> Callable[..., Any]:
    """ATOMIC_REQUESTS for async views: the view runs inside ``async with atomic()``."""
    if not inspect.iscoroutinefunction(view):
        return _django_make_view_atomic(self, view)  # type: ignore[no-any-return]
    non_atomic: set[str] = getattr(view, "_non_atomic_requests", set())
    for alias, settings_dict in connections.settings.items():
        if settings_dict["ATOMIC_REQUESTS"] and alias not in non_atomic:
            view = django_transaction.atomic(using=alias)(view)
    return view


async def aget_autocommit(using: str | None = None) -> bool:
    """``transaction.get_autocommit()`` for async code (it may have to connect)."""
    return await _operation.run(django_transaction.get_autocommit, using)


async def aget_rollback(using: str | None = None) -> bool:
    """``transaction.get_rollback()`` for async code."""
    return await _operation.run(django_transaction.get_rollback, using)


async def aset_rollback(rollback: bool, using: str | None = None) -> None:
    """``transaction.set_rollback()`` for async code."""
    await _operation.run(django_transaction.set_rollback, rollback, using)


async def aon_commit(
    func: Callable[[], object], using: str | None = None, robust: bool = False
) -> None:
    """``transaction.on_commit()`` for async code, where ``func`` may be a coroutine function.

    Inside a transaction it registers ``func``, as ``on_commit`` does. Outside
    one it runs ``func`` now and, if it returns an awaitable, awaits it before
    returning; with ``robust``, an exception is logged instead of raised, as
    Django does.
    """
    if not callable(func):
        raise TypeError("on_commit()'s callback must be a callable.")
    if (using or DEFAULT_DB_ALIAS) in _blocks.current_blocks():
        django_transaction.on_commit(func, using, robust)
        return
    try:
        result = func()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        if not robust:
            raise
        logger.exception(
            "Error calling %s in on_commit() (%s).", getattr(func, "__qualname__", func), exc
        )
