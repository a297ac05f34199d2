"""Which DatabaseWrapper an awaited ORM operation uses, for how long, and when it may run.

Django keeps one ``DatabaseWrapper`` per alias per thread, and per asyncio
context in async code. That is wrong for native async code twice over: tasks
started after their parent touched the database share its wrapper (asgiref's
context-local storage shares one dict between parent and children), so two
concurrent queries would interleave on one connection; and a task holds its
connection until something closes it, so an idle request pins a connection.

aorm decides per awaited operation instead, for aorm aliases only (Django's
own backends are left to Django):

- Outside a transaction, an operation gets wrappers of its own on first use
  and gives them back when it ends: parked with their pooled connection for
  the next operation where the backend pools, closed otherwise.
- Inside ``async with transaction.atomic()``, the block's :class:`Transaction`
  owns one wrapper for the whole block; the task and the tasks it starts use
  it. Each operation waits for its *turn*: the connection runs one operation
  at a time, and only for tasks inside the innermost open block, so a child
  task's nested block (a savepoint) runs alone from enter to exit, siblings
  waiting at their own level. Once the outermost block has ended, any task
  still holding it gets TransactionManagementError instead of writing after
  the commit or the rollback.

- Async code running inside a synchronous caller's transaction (a test
  case's) adopts it: the caller's wrapper serves as the outermost block.
- Async code awaited from inside an operation (``async_to_sync`` in a sync
  signal receiver, Django's dispatch of async receivers from ``send()``,
  ``aorm.await_``) runs as any other async code of the task, never on the
  operation's connection behind its back: the operation lends its turns for
  the while (see :func:`await_`), so the tasks that code starts take turns on
  the transaction's connection, or borrow connections of their own outside a
  transaction. A synchronous ``atomic`` block the operation opened is lent the
  same way, as a transaction of its own.
- Synchronous code that a task inside an async transaction hands to a thread
  (``sync_to_async``) must not reach that transaction's alias from the
  thread: it would write outside the transaction, or wait for a lock its own
  caller holds. It gets ``TransactionManagementError`` instead (aorm's routing
  runs such code in the bridge where it can, see ``aorm._routing``).

The wrappers are found through context variables, so ``connections[alias]``,
and all of Django's code that uses it, resolves to the right wrapper.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, ParamSpec, TypeVar

from asgiref.sync import AsyncToSync
from django.db import connections
from django.db.transaction import TransactionManagementError
from django.db.utils import load_backend

from aorm import _loops, bridge
from aorm._loops import loop_running
from aorm._pool import pool_key
from aorm.backends.base import sync_transactions

__all__ = ["Block", "Scope", "ScopedStorage", "Transaction", "await_", "native_aliases", "run"]

P = ParamSpec("P")
T = TypeVar("T")


class Operation:
    """Synchronous ORM code running in the bridge for one task: its wrappers and its turns."""

    __slots__ = ("blocks", "wrappers")

    def __init__(self, wrappers: dict[str, Any]) -> None:
        self.wrappers = wrappers  # by alias
        self.blocks: Mapping[str, Block] = _NO_BLOCKS  # whose transactions' turns it holds


# Per-task state is kept per task, not only in context variables: Django 6
# runs async signal receivers as concurrent tasks sharing one Context, where a
# context variable set by one receiver would be its siblings' too.
#
# The operation each task runs in the bridge (absent while it awaits other
# async code): never inherited.
_operations: weakref.WeakKeyDictionary[asyncio.Task[Any], Operation] = weakref.WeakKeyDictionary()
# The innermost atomic block a task is in, by alias: inherited by the tasks it
# starts through the context variable, and held per task once it sets its own.
_NO_BLOCKS: Mapping[str, Block] = MappingProxyType({})
_blocks: ContextVar[Mapping[str, Block]] = ContextVar("aorm.blocks", default=_NO_BLOCKS)
_task_blocks: weakref.WeakKeyDictionary[asyncio.Task[Any], Mapping[str, Block]] = (
    weakref.WeakKeyDictionary()
)


def _current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None


def _current_operation() -> Operation | None:
    task = _current_task()
    return None if task is None else _operations.get(task)


def _set_operation(operation: Operation | None) -> Operation | None:
    """Make ``operation`` the current task's; returns the one it replaces."""
    task = asyncio.current_task()
    assert task is not None
    previous = _operations.pop(task, None)
    if operation is not None:
        _operations[task] = operation
    return previous


def _own_blocks() -> Mapping[str, Block]:
    """This task's blocks: its own once it set them, else those it was started in."""
    task = _current_task()
    if task is not None:
        blocks = _task_blocks.get(task)
        if blocks is not None:
            return blocks
    return _blocks.get()


def _set_blocks(blocks: Mapping[str, Block]) -> tuple[Any, Mapping[str, Block] | None]:
    task = asyncio.current_task()
    assert task is not None
    previous = _task_blocks.get(task)
    _task_blocks[task] = blocks
    return _blocks.set(blocks), previous


def _reset_blocks(token: tuple[Any, Mapping[str, Block] | None]) -> None:
    var_token, previous = token
    _blocks.reset(var_token)
    task = asyncio.current_task()
    assert task is not None
    if previous is None:
        _task_blocks.pop(task, None)
    else:
        _task_blocks[task] = previous


async def in_blocks_of(blocks: Mapping[str, Block], coroutine: Awaitable[T]) -> T:
    """Await ``coroutine`` as a task started inside ``blocks`` (whatever its Context holds)."""
    task = asyncio.current_task()
    assert task is not None
    _task_blocks[task] = blocks
    return await coroutine


def blocks_for_new_tasks() -> Mapping[str, Block]:
    """The blocks a task started now from this one is inside."""
    return _own_blocks()


@contextlib.contextmanager
def blocks_kept() -> Iterator[None]:
    """Keep this task's blocks as they are across code that copies a context back into it.

    Django 6 copies the variables its receivers changed back into the
    sender's context; the blocks they opened (and ended) are not the sender's.
    """
    before = _blocks.get()
    try:
        yield
    finally:
        if _blocks.get() is not before:
            _blocks.set(before)


_native: tuple[object, frozenset[str]] = (None, frozenset())


def native_aliases() -> frozenset[str]:
    """The database aliases configured with an aorm backend."""
    global _native
    configured = connections.settings
    if _native[0] is not configured:
        from aorm.backends.base import BridgedDatabaseWrapper

        _native = (
            configured,
            frozenset(
                alias
                for alias, options in configured.items()
                if issubclass(
                    load_backend(options["ENGINE"]).DatabaseWrapper, BridgedDatabaseWrapper
                )
            ),
        )
    return _native[1]


class Transaction:
    """One outermost async atomic block: its wrapper, its open blocks, whose turn it is."""

    def __init__(self, alias: str, wrapper: Any = None, *, adopted: bool = False) -> None:
        self.alias = alias
        self.wrapper = wrapper
        self.adopted = adopted  # a synchronous caller's transaction, on its thread's wrapper
        self.top: Block | None = None  # the innermost open block
        self.holder: object = None  # the operation whose turn it is
        self._waiters: list[asyncio.Future[None]] = []

    def move_top(self, block: Block | None) -> None:
        """A block opened or ended: waiting tasks check whether it is their turn."""
        self.top = block
        self._wake()

    async def take_turn(self, block: Block, holder: object) -> None:
        """Wait until ``block`` is innermost and the connection is free, then hold it."""
        while not block.ended and (self.holder is not None or self.top is not block):
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            finally:
                self._waiters.remove(waiter)
        if block.ended:
            raise TransactionManagementError(
                f"this task runs inside a transaction.atomic() block on {self.alias!r} that has "
                "already ended; it can no longer use that transaction. Await the tasks you "
                "start inside a block before the block exits."
            )
        self.holder = holder

    def end_turn(self, holder: object) -> None:
        """``holder`` is done with the connection, for now (a no-op if it was not its turn)."""
        if self.holder is holder:
            self.holder = None
            self._wake()

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)


class Block:
    """One ``atomic`` block (the outermost, or a savepoint) of a :class:`Transaction`."""

    __slots__ = ("ended", "parent", "transaction")

    def __init__(self, transaction: Transaction, parent: Block | None) -> None:
        self.transaction = transaction
        self.parent = parent
        self.ended = False


def current_blocks() -> Mapping[str, Block]:
    """The innermost block of this task on each alias, or the outer sync transaction's."""
    return _own_blocks() or _outer_blocks()


def in_async_transaction() -> bool:
    """Whether this task is inside an ``async with atomic()`` block on an aorm alias."""
    return any(
        not block.ended and not block.transaction.adopted for block in _own_blocks().values()
    )


def _outer_blocks() -> dict[str, Block]:
    """Transactions of a synchronous caller that this async code runs inside, adopted.

    A Django ``TestCase`` (or pytest-django's ``db``) wraps each test in a
    transaction on the test thread's connection; a sync view under
    ``ATOMIC_REQUESTS`` that calls ``async_to_sync`` does the same. Async code
    running inside must use that connection, or it could neither see the
    transaction's rows nor be rolled back with it. The thread is either the
    loop's own (pytest-asyncio) or one blocked in ``async_to_sync`` meanwhile.
    """
    adopted: dict[str, Block] = {}
    open_transactions = sync_transactions()  # almost always empty outside tests
    if not open_transactions:
        return adopted
    threads = {threading.get_ident()}
    executor = getattr(AsyncToSync.executors, "current", None)
    if executor is not None:
        threads.add(executor._work_thread.ident)
    for thread, alias, wrapper in open_transactions:
        if thread in threads and alias in native_aliases():
            root: Block | None = wrapper.__dict__.get("_aorm_root")
            if root is None:
                transaction = Transaction(alias, wrapper, adopted=True)
                root = wrapper._aorm_root = Block(transaction, None)
                root.transaction.top = root
            adopted[alias] = root
    return adopted


def enter_block(block: Block) -> Any:
    """Make ``block`` this task's innermost block on its alias; returns the reset token."""
    return _set_blocks({**_own_blocks(), block.transaction.alias: block})


def leave_block(token: Any) -> None:
    _reset_blocks(token)


class ScopedStorage:
    """Stands in for ``connections._connections``: aorm aliases resolve as described above."""

    __slots__ = ("_django",)

    def __init__(self, django_storage: Any) -> None:
        object.__setattr__(self, "_django", django_storage)

    def __getattr__(self, alias: str) -> Any:
        if alias in native_aliases():
            operation = _current_operation()
            if operation is not None:
                wrappers = operation.wrappers
                try:
                    return wrappers[alias]
                except KeyError:
                    parked = _take_parked(alias)
                    if parked is None:
                        raise AttributeError(alias) from None  # Django builds one
                    wrappers[alias] = parked
                    return parked
            if loop_running():
                # transaction.on_commit(), set_rollback(), a test's assertNumQueries()...
                # called from async code inside a transaction: that transaction's wrapper.
                block = current_blocks().get(alias)
                if block is not None and block.transaction.wrapper is not None:
                    return block.transaction.wrapper
            else:
                _refuse_in_thread(alias)
        return getattr(self._django, alias)

    def __setattr__(self, alias: str, wrapper: Any) -> None:
        operation = _current_operation()
        if operation is not None and alias in native_aliases():
            operation.wrappers[alias] = wrapper
        else:
            setattr(self._django, alias, wrapper)

    def __delattr__(self, alias: str) -> None:
        operation = _current_operation()
        if operation is not None and alias in native_aliases():
            del operation.wrappers[alias]
        else:
            delattr(self._django, alias)


def _refuse_in_thread(alias: str) -> None:
    """A thread started by a task inside an async transaction must not use its alias.

    ``sync_to_async`` runs its function in a copy of the task's context, so
    the task's blocks are visible here; the thread's own connection would
    write outside the transaction, or wait for a lock the task holds.
    """
    block = _blocks.get().get(alias)
    if block is not None and not block.ended and not block.transaction.adopted:
        raise TransactionManagementError(
            f"synchronous code running in a thread (sync_to_async) used database {alias!r} "
            "while the task that started it is inside an async transaction.atomic() block "
            "on it; its statements would run outside that transaction. Run the function with "
            "`await aorm.run(fn, *args)` instead: it then takes part in the transaction."
        )


def _take_parked(alias: str) -> Any:
    """A wrapper parked with a pooled connection of the running loop, if the backend parks."""
    take = getattr(_loops.for_running_loop().find(pool_key(alias)), "take_parked", None)
    return None if take is None else take()


def detach(alias: str) -> None:
    """The running operation no longer holds ``alias``'s wrapper (its transaction ended)."""
    operation = _current_operation()
    if operation is not None:
        operation.wrappers.pop(alias, None)


def give_back(wrapper: Any) -> None:
    """An operation or a transaction is done with ``wrapper``: park it, or close it."""
    if not wrapper.aorm_park():
        wrapper.close()


def _release(wrappers: dict[str, Any]) -> None:
    """Give the operation's own wrappers back: their connections return to the pool."""
    errors: list[BaseException] = []
    for wrapper in wrappers.values():
        try:
            give_back(wrapper)
        except BaseException as exc:  # CancelledError too: close the others first
            errors.append(exc)
    wrappers.clear()
    if errors:
        raise errors[0]


def _in_operation(
    operation: Operation, keep: bool, fn: Callable[..., T], args: Any, kwargs: Any
) -> T:
    """Run ``fn`` with the operation's wrappers (plus the transactions') as the connections."""
    wrappers, blocks = operation.wrappers, operation.blocks
    for alias, block in blocks.items():
        if block.transaction.wrapper is not None:
            wrappers[alias] = block.transaction.wrapper
            if block.transaction.adopted:
                block.transaction.wrapper.inc_thread_sharing()
    previous = _set_operation(operation)
    try:
        return fn(*args, **kwargs)
    finally:
        try:
            for block in blocks.values():
                if block.transaction.adopted:
                    block.transaction.wrapper.dec_thread_sharing()
            for alias, block in blocks.items():
                if alias in wrappers:  # created by this operation, or handed back
                    block.transaction.wrapper = wrappers.pop(alias)
            if not keep:
                _release(wrappers)
        finally:
            _set_operation(previous)


async def _take_turns(blocks: Mapping[str, Block], holder: object) -> None:
    for alias in sorted(blocks):  # one order for all tasks: no deadlock
        block = blocks[alias]
        await block.transaction.take_turn(block, holder)


def _end_turns(blocks: Mapping[str, Block], holder: object) -> None:
    for block in blocks.values():
        block.transaction.end_turn(holder)


async def _run_in(wrappers: dict[str, Any], keep: bool, fn: Callable[..., T], *args: Any) -> T:
    operation = Operation(wrappers)
    operation.blocks = blocks = current_blocks()
    try:
        await _take_turns(blocks, operation)
        return await bridge.run(_in_operation, operation, keep, fn, args, {})
    finally:
        _end_turns(blocks, operation)


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run synchronous ORM code natively: on the event loop, on async drivers.

    ``fn`` can use the ORM freely (lazy relations, serializers, forms, sync
    ``transaction.atomic``). Outside a transaction its connections are
    borrowed for the call only; inside one, it uses the transaction's.
    """
    if _current_operation() is not None:
        # Awaited by the operation's own driver code, in its turn: same connections.
        return await bridge.run(fn, *args, **kwargs)
    return await _run_in({}, False, lambda: fn(*args, **kwargs))


def await_(awaitable: Awaitable[T]) -> T:
    """Wait for ``awaitable`` from synchronous code run by ``aorm.run()``.

    The awaited code runs as the task's own async code: the running operation
    lends its turns meanwhile, so that the ORM calls of that code, and of the
    tasks it starts, take turns on the transactions' connections (a
    synchronous ``atomic`` block the operation opened counts as one), or
    borrow connections of their own outside a transaction.
    """
    operation = _current_operation()
    if operation is None or not bridge.in_bridge():
        return bridge.await_(awaitable)
    lent = {
        alias: _lent_block(alias, wrapper)
        for alias, wrapper in operation.wrappers.items()
        if alias not in operation.blocks and wrapper.in_atomic_block
    }
    _end_turns(operation.blocks, operation)
    _set_operation(None)
    blocks_token = _set_blocks({**_own_blocks(), **lent}) if lent else None
    try:
        return bridge.await_(awaitable)
    finally:
        if blocks_token is not None:
            _reset_blocks(blocks_token)
        _set_operation(operation)
        for block in lent.values():
            block.ended = True  # tasks started meanwhile can no longer use it
            block.transaction.move_top(None)
        bridge.await_(_take_turns(operation.blocks, operation))


def _lent_block(alias: str, wrapper: Any) -> Block:
    """A synchronous atomic block of the operation, as a transaction awaited code can join."""
    transaction = Transaction(alias, wrapper)
    root = Block(transaction, None)
    transaction.move_top(root)
    return root


class Scope:
    """Connections kept across several operations, as a server-side cursor needs.

    Used by ``async for``: each chunk is one operation (taking its turn in a
    transaction), the cursor's connection is held until :meth:`close`.
    """

    def __init__(self) -> None:
        self._wrappers: dict[str, Any] = {}

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await _run_in(self._wrappers, True, fn, *args)

    async def close(self, finalizer: Callable[[], object] | None = None) -> None:
        """Run ``finalizer`` in the scope, then release its connections."""
        await _run_in(self._wrappers, False, finalizer or _nothing)


def _nothing() -> None:
    pass
