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
- Inside ``async with transaction.atomic()``, the operation uses the block's
  wrapper, in its turn (``aorm._blocks``: blocks, turns, and the adoption of
  a synchronous caller's transaction).
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
  runs such code in the bridge where it can, see ``aorm._sync_to_async``).

Each task's running operation is kept per task (never inherited by the
tasks it starts), and ``connections[alias]``, with all of Django's code that
uses it, resolves to that operation's wrapper.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable, Mapping
from types import SimpleNamespace
from typing import Any, ParamSpec, TypeVar

from django.conf import settings
from django.db import connections
from django.db.utils import DatabaseErrorWrapper, load_backend

from aorm import _blocks, _loops, bridge
from aorm._loops import loop_running
from aorm._pool import pool_key
from aorm.backends.base import native_aliases

__all__ = ["ConnectionsAll", "KeptConnections", "OperationStorage", "await_", "run"]

P = ParamSpec("P")
T = TypeVar("T")


class Operation:
    """Synchronous ORM code running in the bridge for one task: its wrappers and its turns."""

    __slots__ = ("blocks", "observed", "wrappers")

    def __init__(self, wrappers: dict[str, Any]) -> None:
        self.wrappers = wrappers  # by alias
        self.observed: list[Any] = []  # wrappers showing the task's observers (_observe)
        self.blocks: Mapping[str, _blocks.Block] = (
            _blocks.NO_BLOCKS
        )  # whose transactions' turns it holds


# Per-task state is kept per task, not only in context variables: Django 6
# runs async signal receivers as concurrent tasks sharing one Context, where a
# context variable set by one receiver would be its siblings' too.
#
# The operation each task runs in the bridge (absent while it awaits other
# async code): never inherited.
_operations: weakref.WeakKeyDictionary[asyncio.Task[Any], Operation] = weakref.WeakKeyDictionary()


def _current_operation() -> Operation | None:
    task = _blocks.current_task()
    return None if task is None else _operations.get(task)


def _set_operation(operation: Operation | None) -> Operation | None:
    """Make ``operation`` the current task's; returns the one it replaces."""
    task = asyncio.current_task()
    assert task is not None
    previous = _operations.pop(task, None)
    if operation is not None:
        _operations[task] = operation
    return previous


class OperationStorage:
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
                    _observe(operation, self._django, alias, parked)
                    return parked
            if loop_running():
                # transaction.on_commit(), set_rollback(), a test's assertNumQueries()...
                # called from async code inside a transaction: that transaction's wrapper.
                block = _blocks.current_blocks().get(alias)
                if block is not None and block.transaction.wrapper is not None:
                    return block.transaction.wrapper
                global _observable
                _observable = True  # async code holds a task's wrapper: see _observe
            else:
                _blocks.refuse_in_thread(alias)
        return getattr(self._django, alias)

    def initialized(self, alias: str) -> bool:
        """``hasattr(self, alias)``, except that a parked wrapper is still the pool's."""
        if alias in native_aliases():
            operation = _current_operation()
            if operation is not None:
                return alias in operation.wrappers
        return hasattr(self, alias)

    def __setattr__(self, alias: str, wrapper: Any) -> None:
        operation = _current_operation()
        if operation is not None and alias in native_aliases():
            operation.wrappers[alias] = wrapper
            _observe(operation, self._django, alias, wrapper)
        else:
            setattr(self._django, alias, wrapper)

    def __delattr__(self, alias: str) -> None:
        operation = _current_operation()
        if operation is not None and alias in native_aliases():
            del operation.wrappers[alias]
        else:
            delattr(self._django, alias)


class ConnectionsAll:
    """Stands in for ``connections.all``: with ``initialized_only``, an operation's own wrappers.

    Django tells initialized connections by ``hasattr(connections._connections,
    alias)``, which inside an operation takes a parked wrapper with its pooled
    connection (:class:`OperationStorage`). ``close_old_connections`` and
    ``reset_queries``, receivers of every request's ``request_started`` and
    ``request_finished``, then borrowed a connection they do not use, and waited
    for one when the pool was busy.
    """

    __slots__ = ("_django",)

    def __init__(self, django_all: Callable[..., list[Any]]) -> None:
        self._django = django_all

    def __call__(self, initialized_only: bool = False) -> list[Any]:
        if not initialized_only:
            return self._django()
        storage = connections._connections
        return [connections[alias] for alias in connections if storage.initialized(alias)]


# Whether async code ever got hold of a task's own wrapper (``connection`` outside
# an operation): until then, there is nothing an operation could have to observe.
_observable = False


def _observe(operation: Operation, django_storage: Any, alias: str, wrapper: Any) -> None:
    """Let what async code installed on ``connection`` see this operation's statements.

    In async code outside an operation, ``connections[alias]`` is the task's
    own wrapper (Django's, per context), on which no statement runs: the
    operations use wrappers of their own. What debugging and monitoring code
    installs there is copied onto the operation's wrapper for the operation:
    ``execute_wrapper()`` wrappers (added to the wrapper's own, so that those
    installed inside a transaction or by the operation's sync code stay),
    and, outside a transaction, ``force_debug_cursor`` and the queries log, so
    that ``connection.queries`` (``DEBUG``) and ``CaptureQueriesContext`` see
    the task's statements. Undone when the operation ends (:func:`_unobserve`).
    """
    in_transaction = alias in operation.blocks
    if not _observable and (in_transaction or not settings.DEBUG):
        return
    own = getattr(django_storage, alias, None)
    if own is None and settings.DEBUG and not in_transaction:
        # As Django's wrapper of a thread does, the task's keeps its queries log
        # (``connection.queries``), even when it was never asked for before.
        own = connections.create_connection(alias)
        setattr(django_storage, alias, own)
    if own is None or own is wrapper or "_aorm_observed" in wrapper.__dict__:
        return
    if not own.execute_wrappers and not (own.queries_logged and not in_transaction):
        return
    wrapper._aorm_observed = (
        wrapper.execute_wrappers,
        wrapper.queries_log,
        wrapper.force_debug_cursor,
    )
    wrapper.execute_wrappers = [*own.execute_wrappers, *wrapper.execute_wrappers]
    if not in_transaction:
        wrapper.queries_log = own.queries_log
        wrapper.force_debug_cursor = own.force_debug_cursor
    operation.observed.append(wrapper)


def _unobserve(operation: Operation) -> None:
    for wrapper in operation.observed:
        observed = wrapper.__dict__.pop("_aorm_observed", None)
        if observed is not None:
            wrapper.execute_wrappers, wrapper.queries_log, wrapper.force_debug_cursor = observed
    operation.observed.clear()


def _take_parked(alias: str) -> Any:
    """A wrapper parked with a pooled connection of the running loop, if the backend parks."""
    take = getattr(_loops.for_running_loop().find(pool_key(alias)), "take_parked", None)
    if take is None:
        return None
    try:
        return take()
    except Exception:
        # The pool opened a connection outside any wrapper: the driver's error
        # becomes Django's (OperationalError...), as Django's connect() gives it.
        with _database_errors(alias):
            raise


def _database_errors(alias: str) -> DatabaseErrorWrapper:
    """Django's translation of ``alias``'s driver errors, without a wrapper."""
    backend = load_backend(connections.settings[alias]["ENGINE"])
    target = SimpleNamespace(Database=backend.DatabaseWrapper.Database, errors_occurred=False)
    return DatabaseErrorWrapper(target)


def detach(alias: str) -> None:
    """The running operation no longer holds ``alias``'s wrapper (its transaction ended)."""
    operation = _current_operation()
    if operation is not None:
        operation.wrappers.pop(alias, None)


def give_back(wrapper: Any) -> None:
    """An operation or a transaction is done with ``wrapper``: park it, or close it."""
    if not wrapper.aorm_park():
        wrapper.close()


def _django_storage() -> Any:
    """Django's own per-context storage of wrappers, behind aorm's :class:`OperationStorage`."""
    return connections._connections._django  # type: ignore[attr-defined]


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
    operation: Operation, keep_connections: bool, fn: Callable[..., T], args: Any, kwargs: Any
) -> T:
    """Run ``fn`` with the operation's wrappers (plus the transactions') as the connections."""
    wrappers, blocks = operation.wrappers, operation.blocks
    # A wrapper kept by KeptConnections from before the transaction (a loop
    # started outside it, its cursor on that wrapper's connection): set aside
    # while the transaction's serves, and kept, not lost with its connection.
    displaced: dict[str, Any] = {}
    for alias, block in blocks.items():
        if block.transaction.wrapper is not None:
            if alias in wrappers:
                displaced[alias] = wrappers[alias]
            wrappers[alias] = block.transaction.wrapper
            if block.transaction.adopted:
                block.transaction.wrapper.inc_thread_sharing()
    if _observable:
        for alias, wrapper in wrappers.items():  # a transaction's, or kept by KeptConnections
            _observe(operation, _django_storage(), alias, wrapper)
    previous = _set_operation(operation)
    try:
        return fn(*args, **kwargs)
    finally:
        try:
            if operation.observed:
                _unobserve(operation)
            for block in blocks.values():
                if block.transaction.adopted:
                    block.transaction.wrapper.dec_thread_sharing()
            for alias, block in blocks.items():
                if alias in wrappers:  # created by this operation, or handed back
                    block.transaction.wrapper = wrappers.pop(alias)
            wrappers.update(displaced)
            if not keep_connections:
                _release(wrappers)
        finally:
            _set_operation(previous)


async def _run_in(
    wrappers: dict[str, Any],
    keep_connections: bool,
    fn: Callable[..., T],
    *args: Any,
    blocks: Mapping[str, _blocks.Block] | None = None,
) -> T:
    operation = Operation(wrappers)
    if blocks is None:
        blocks = _blocks.current_blocks()
    operation.blocks = blocks
    try:
        await _blocks.take_turns(blocks, operation)
        return await bridge.run(_in_operation, operation, keep_connections, fn, args, {})
    finally:
        _blocks.end_turns(blocks, operation)


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
        alias: _blocks.lent_block(alias, wrapper)
        for alias, wrapper in operation.wrappers.items()
        if alias not in operation.blocks and wrapper.in_atomic_block
    }
    _blocks.end_turns(operation.blocks, operation)
    _set_operation(None)
    blocks_token = _blocks.set_blocks({**_blocks.own_blocks(), **lent}) if lent else None
    try:
        return bridge.await_(awaitable)
    finally:
        if blocks_token is not None:
            _blocks.reset_blocks(blocks_token)
        _set_operation(operation)
        for block in lent.values():
            block.ended = True  # tasks started meanwhile can no longer use it
            block.transaction.set_innermost(None)
        bridge.await_(_blocks.take_turns(operation.blocks, operation))


class KeptConnections:
    """Connections kept across several operations, as a server-side cursor needs.

    Used by ``async for`` on ``alias``: each chunk is one operation (taking its
    turn in a transaction), the cursor's connection is held until
    :meth:`close`, which runs ``finalizer`` (closing the cursor) on it.

    A loop left early (``break``, an exception, a cancellation) is closed by
    Python later, in a task of its own: inside a transaction, that is often
    after the block ended, when the transaction's connection is someone
    else's, and the finalizer must not use it any more. Sync Django closes the
    cursor while leaving the loop, before the block's end; so does aorm: the
    end of the block the loop started in closes it first (:func:`end_iterations`,
    in the block's turn, before its commit, release or rollback). Closing
    later then only gives back the connections kept outside any transaction.
    """

    def __init__(self, alias: str, finalizer: Callable[[], object]) -> None:
        self._alias = alias
        self._finalizer = finalizer
        self._wrappers: dict[str, Any] = {}
        self._block: _blocks.Block | None = None  # the block its cursor is in
        self._started = False
        self._finalized = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if not self._started:  # the first chunk opens the cursor: in a block, on its connection
            self._started = True
            block = _blocks.current_blocks().get(self._alias)
            if block is not None and not block.ended:
                self.move_to(block)
        return await _run_in(self._wrappers, True, fn, *args)

    def move_to(self, block: _blocks.Block | None) -> None:
        """The cursor is now in ``block`` (a released savepoint's cursor is its parent's)."""
        if self._block is not None:
            self._block.iterations.discard(self)
        self._block = block
        if block is not None:
            block.iterations.add(self)

    def finalize(self) -> None:
        """In the bridge, on the cursor's connection: run the finalizer, once."""
        if not self._finalized:
            self._finalized = True
            self.move_to(None)
            self._finalizer()

    async def close(self) -> None:
        """Run the finalizer with the kept connections (unless done), then release them."""
        blocks: Mapping[str, _blocks.Block] = _blocks.NO_BLOCKS
        if not self._finalized:
            block = _blocks.current_blocks().get(self._alias)
            if block is not None:
                blocks = {self._alias: block}
        await _run_in(self._wrappers, False, self.finalize, blocks=blocks)


def end_iterations(block: _blocks.Block, released: bool) -> None:
    """``block`` ends: close the ``async for`` loops still open on its connection.

    In the bridge, in the block's turn, before Django's ``__exit__``: a cursor
    closed after a rollback (to a savepoint, or of the transaction) would be
    one the server no longer knows, and PostgreSQL would abort the
    transaction that the connection serves by then. A savepoint that is
    ``released`` hands its cursors to its parent block instead, where the
    loop can go on.
    """
    parent = block.parent
    for kept in list(block.iterations):
        if released and parent is not None:
            kept.move_to(parent)
        else:
            kept.finalize()
