"""Which atomic blocks each task is in, and whose turn it is on a transaction's connection.

Inside ``async with transaction.atomic()`` the block's :class:`Transaction`
owns one DatabaseWrapper for the whole block; the task and the tasks it
starts use it. Each operation waits for its *turn*: the connection runs one
operation at a time, and only for tasks inside the innermost open block, so
a child task's nested block (a savepoint) runs alone from enter to exit,
siblings waiting at their own level. Once the outermost block has ended, any
task still holding it gets TransactionManagementError instead of writing
after the commit or the rollback.

The blocks a task is in are inherited by the tasks it starts, through a
context variable, and kept per task once a task opens its own: Django 6 runs
async signal receivers as concurrent tasks sharing one Context, where one
receiver's block would otherwise be its siblings' too.

Async code running inside a synchronous caller's transaction (a test case's,
a sync view's under ``ATOMIC_REQUESTS`` calling ``async_to_sync``) adopts it:
the caller's wrapper serves as the outermost block.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import weakref
from collections.abc import Awaitable, Iterator, Mapping
from contextvars import ContextVar
from types import MappingProxyType
from typing import Any, TypeVar

from asgiref.sync import AsyncToSync
from django.db.transaction import TransactionManagementError

from aorm._waiters import WaitQueue
from aorm.backends.base import native_aliases, sync_transactions

__all__ = [
    "NO_BLOCKS",
    "Block",
    "Transaction",
    "blocks_kept",
    "current_blocks",
    "current_task",
    "end_turns",
    "enter_block",
    "in_async_transaction",
    "in_blocks_of",
    "leave_block",
    "lent_block",
    "own_blocks",
    "refuse_in_thread",
    "reset_blocks",
    "set_blocks",
    "take_turns",
    "tasks_started_outside",
]

T = TypeVar("T")

# The innermost atomic block a task is in, by alias: inherited by the tasks it
# starts through the context variable, and held per task once it sets its own.
NO_BLOCKS: Mapping[str, Block] = MappingProxyType({})
_inherited: ContextVar[Mapping[str, Block]] = ContextVar("aorm.blocks", default=NO_BLOCKS)
_task_blocks: weakref.WeakKeyDictionary[asyncio.Task[Any], Mapping[str, Block]] = (
    weakref.WeakKeyDictionary()
)


def current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no event loop in this thread
        return None


def own_blocks() -> Mapping[str, Block]:
    """This task's blocks, which a task it starts now inherits.

    Its own once it opened one, else those it was started in.
    """
    task = current_task()
    if task is not None:
        blocks = _task_blocks.get(task)
        if blocks is not None:
            return blocks
    return _inherited.get()


def set_blocks(blocks: Mapping[str, Block]) -> tuple[Any, Mapping[str, Block] | None]:
    task = asyncio.current_task()
    assert task is not None
    previous = _task_blocks.get(task)
    _task_blocks[task] = blocks
    return _inherited.set(blocks), previous


def reset_blocks(token: tuple[Any, Mapping[str, Block] | None]) -> None:
    var_token, previous = token
    _inherited.reset(var_token)
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


@contextlib.contextmanager
def blocks_kept() -> Iterator[None]:
    """Keep this task's blocks as they are across code that copies a context back into it.

    Django 6 copies the variables its receivers changed back into the
    sender's context; the blocks they opened (and ended) are not the sender's.
    """
    before = _inherited.get()
    try:
        yield
    finally:
        if _inherited.get() is not before:
            _inherited.set(before)


@contextlib.contextmanager
def tasks_started_outside(alias: str) -> Iterator[None]:
    """Tasks started meanwhile by this task are outside its transaction on ``alias``.

    For the end of an outermost block: Django runs the ``on_commit`` callbacks
    there, after the commit, and a task they start (``asyncio.create_task``, a
    ``gather`` in a coroutine callback) is work after the transaction, not in
    it. Inheriting the block, it would get TransactionManagementError as soon
    as the block is marked ended, and its writes would be lost. The task's own
    code (a coroutine callback's queries) keeps its blocks: it runs before the
    connection is given back.
    """
    blocks = own_blocks()
    if alias not in blocks:
        yield
        return
    token = _inherited.set(
        MappingProxyType({name: block for name, block in blocks.items() if name != alias})
    )
    try:
        yield
    finally:
        _inherited.reset(token)


class Transaction:
    """One outermost async atomic block: its wrapper, its open blocks, whose turn it is.

    Tasks wait for their turn in one queue per block (:class:`WaitQueue`,
    first come, first served): only the innermost block's tasks can take the
    connection, so a release wakes the first of those, and a block that ends
    wakes all of its own, to tell them.
    """

    def __init__(self, alias: str, wrapper: Any = None, *, adopted: bool = False) -> None:
        self.alias = alias
        self.wrapper = wrapper
        self.adopted = adopted  # a synchronous caller's transaction, on its thread's wrapper
        self.top: Block | None = None  # the innermost open block
        self.holder: object = None  # the operation whose turn it is
        self._waiting: dict[Block, WaitQueue[None]] = {}

    def set_innermost(self, block: Block | None) -> None:
        """A block opened or ended: wake whoever it may be the turn of now."""
        self.top = block
        self._wake()

    async def take_turn(self, block: Block, holder: object) -> None:
        """Wait until ``block`` is innermost and the connection is free, then hold it."""
        woken = False
        while not block.ended and (self.holder is not None or self.top is not block):
            queue = self._waiting.get(block)
            if queue is None:
                queue = self._waiting[block] = WaitQueue(self._wake)
            # Woken, but another task took the turn or opened a block first: keep our place.
            await queue.wait(front=woken)
            woken = True
        if woken and not self._waiting.get(block, True):
            del self._waiting[block]  # nobody else waits in it
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

    def _wake(self, _: object = None) -> None:
        """The turn may be free: wake the first task of the innermost block; every task
        of an ended block learns that it ended."""
        waiting = self._waiting
        if not waiting:
            return
        for block in [block for block in waiting if block.ended]:
            waiting.pop(block).wake_all(None)
        top = self.top
        if self.holder is None and top is not None:
            queue = waiting.get(top)
            if queue is not None:
                queue.wake(None)


class Block:
    """One ``atomic`` block (the outermost, or a savepoint) of a :class:`Transaction`."""

    __slots__ = ("ended", "iterations", "parent", "transaction")

    def __init__(self, transaction: Transaction, parent: Block | None) -> None:
        self.transaction = transaction
        self.parent = parent
        self.ended = False
        # ``async for`` loops whose cursor is on the block's connection, still open
        # (aorm._operation.KeptConnections): closed when the block ends, if not before.
        self.iterations: set[Any] = set()


def current_blocks() -> Mapping[str, Block]:
    """The innermost block of this task on each alias, or the outer sync transaction's."""
    return own_blocks() or _outer_blocks()


def in_async_transaction() -> bool:
    """Whether this task is inside an ``async with atomic()`` block on an aorm alias."""
    return any(
        not block.ended and not block.transaction.adopted for block in own_blocks().values()
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
    return set_blocks({**own_blocks(), block.transaction.alias: block})


def leave_block(token: Any) -> None:
    reset_blocks(token)


async def take_turns(blocks: Mapping[str, Block], holder: object) -> None:
    for alias in sorted(blocks):  # one order for all tasks: no deadlock
        block = blocks[alias]
        await block.transaction.take_turn(block, holder)


def end_turns(blocks: Mapping[str, Block], holder: object) -> None:
    for block in blocks.values():
        block.transaction.end_turn(holder)


def lent_block(alias: str, wrapper: Any) -> Block:
    """A synchronous atomic block of the operation, as a transaction awaited code can join."""
    transaction = Transaction(alias, wrapper)
    root = Block(transaction, None)
    transaction.set_innermost(root)
    return root


def refuse_in_thread(alias: str) -> None:
    """A thread started by a task inside an async transaction must not use its alias.

    ``sync_to_async`` runs its function in a copy of the task's context, so
    the task's blocks are visible here; the thread's own connection would
    write outside the transaction, or wait for a lock the task holds.
    """
    block = _inherited.get().get(alias)
    if block is not None and not block.ended and not block.transaction.adopted:
        raise TransactionManagementError(
            f"synchronous code running in a thread (sync_to_async) used database {alias!r} "
            "while the task that started it is inside an async transaction.atomic() block "
            "on it; its statements would run outside that transaction. Run the function with "
            "`await aorm.run(fn, *args)` instead: it then takes part in the transaction."
        )
