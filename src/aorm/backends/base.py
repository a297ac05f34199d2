"""What every aorm backend adds to the Django backend it subclasses.

Django guards its connection methods with ``@async_unsafe``: called while an
event loop runs in the thread, they raise ``SynchronousOnlyOperation``. That
guard is part of Django's contract and stays on, for this backend only, except
for code running inside the bridge, which is exactly the code that may do I/O
there. When it fires, the message names the async form to use instead.

Guarded methods are found by their code object (every ``async_unsafe`` wrapper
shares one), so methods Django adds or guards in later versions are covered
without a list to maintain. Inside the bridge, such a method runs with the
guard lifted: a context variable that Django's guard sees through its
``get_running_loop`` lookup, set only for the duration of the call. Whatever
Django or a tool wraps around the method (Django's TestCase patches
``ensure_connection``, pytest-django blocks it) still runs as it is.

The mixin also parks wrappers between operations (``aorm_park``), turns
coroutine functions given to ``on_commit`` into callables Django can call,
and records every wrapper that sync code connects, so that async code inside
a sync caller's transaction can find it (``sync_transactions``).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import sys
import weakref
from collections.abc import Callable, Coroutine
from contextvars import ContextVar
from typing import Any

from asgiref.sync import SyncToAsync, async_to_sync
from django.core import checks
from django.core.exceptions import ImproperlyConfigured, SynchronousOnlyOperation
from django.db import connections
from django.db.models import QuerySet
from django.db.utils import load_backend
from django.utils.asyncio import async_unsafe

from aorm import _async_unsafe
from aorm._loops import loop_running
from aorm.bridge import in_bridge
from aorm.checks import check_app_installed

__all__ = ["BridgedDatabaseWrapper", "native_aliases", "sync_transactions"]

GUARD_CODE = async_unsafe("")(lambda: None).__code__
_guard_lifted: ContextVar[bool] = ContextVar("aorm.guard_lifted", default=False)

# Every DatabaseWrapper connected by synchronous code (all of them: a thread may
# connect copies too): async code started from a thread that holds a
# transaction must join it instead of opening a connection of its own.
_sync_wrappers: weakref.WeakSet[Any] = weakref.WeakSet()


def sync_transactions() -> list[tuple[int, str, Any]]:
    """``(thread ident, alias, wrapper)`` of synchronous wrappers inside a transaction."""
    if not _sync_wrappers:  # an async server's usual case; iterating a WeakSet costs µs
        return []
    return [(w._thread_ident, w.alias, w) for w in list(_sync_wrappers) if w.in_atomic_block]


# Registered here, not by the app: it is the app's absence that it reports.
checks.register(check_app_installed)


def _async_call_without_aorm() -> bool:
    """A thread of Django's ``sync_to_async`` connecting while aorm's routing is not installed.

    Without the app, nothing routes Django's async API to the bridge; its
    queries would silently run in threads. (``QuerySet.__await__`` is one of
    the entries the app installs.)
    """
    return getattr(SyncToAsync.threadlocal, "main_event_loop", None) is not None and not hasattr(
        QuerySet, "__await__"
    )


def _is_guarded(method: Any) -> bool:
    return getattr(getattr(method, "__func__", method), "__code__", None) is GUARD_CODE


def _call_guarded(self: Any, name: str, args: Any, kwargs: Any) -> Any:
    guarded = getattr(super(BridgedDatabaseWrapper, self), name)
    if (
        name == "ensure_connection"
        and self.connection is None
        and loop_running()
        and not in_bridge()
        and sys._getframe(2).f_code.co_qualname == "CaptureQueriesContext.__enter__"
    ):
        # Async code's own wrapper (``connection`` outside any operation) never
        # connects: each operation uses a wrapper of its own (aorm._operation).
        # Django's CaptureQueriesContext (assertNumQueries) calls this on entering,
        # to keep connection set-up out of the count: there is nothing to set up.
        # Any other caller (set_autocommit(), a sync atomic block in async code)
        # gets Django's guard, as on Django's own backend.
        return None
    if in_bridge() or (name == "ensure_connection" and self.connection is not None):
        # In the bridge, I/O is native; a connected wrapper's ensure_connection()
        # does none (Django's assertNumQueries calls it from async tests).
        token = _guard_lifted.set(True)
        try:
            return guarded(*args, **kwargs)
        finally:
            _guard_lifted.reset(token)
    try:
        return guarded(*args, **kwargs)
    except SynchronousOnlyOperation:
        raise SynchronousOnlyOperation(_async_unsafe.async_form_of_current_call()) from None


def running_loop_unless_lifted() -> asyncio.AbstractEventLoop:
    """What Django's guard calls to detect async code; the bridge's I/O is not blocking."""
    if _guard_lifted.get():
        raise RuntimeError("aorm: native I/O inside the bridge")
    return asyncio.get_running_loop()


# Coroutine on_commit callbacks run outside any transaction: kept until they end.
_background: set[asyncio.Task[Any]] = set()


def _sync_callback(func: Callable[[], Coroutine[Any, Any, object]]) -> Callable[[], object]:
    """A coroutine function as a callable that Django's on_commit machinery can call.

    In the bridge (a commit made by an operation), ``async_to_sync`` is aorm's:
    the coroutine runs as the task's own async code (``aorm._operation.await_``).
    Outside any transaction in async code, it is started as a task, at once.
    """

    @functools.wraps(func)
    def call() -> object:
        if not in_bridge():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                loop = None
            if loop is not None:
                task = loop.create_task(func())  # type: ignore[arg-type]
                _background.add(task)
                task.add_done_callback(_background.discard)
                return None
        return async_to_sync(func)()

    return call


def _let_bridge_through(name: str) -> Any:
    def method(self: Any, *args: Any, **kwargs: Any) -> Any:
        return _call_guarded(self, name, args, kwargs)

    method.__name__ = method.__qualname__ = name
    return method


class BridgedDatabaseWrapper:
    """Mixin for a Django ``DatabaseWrapper``: usable from the bridge, guarded elsewhere.

    It must come before Django's class in the bases.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in dir(cls):
            if _is_guarded(getattr(cls, name, None)):
                setattr(cls, name, _let_bridge_through(name))

    def aorm_park(self) -> bool:
        """At the end of an operation: keep this wrapper, connected, for the next one.

        Building a DatabaseWrapper and running Django's connection setup costs
        about as much as the query itself; a backend that pools connections
        parks the wrapper with its connection instead of closing it. Only a
        wrapper in Django's pristine state is parked.
        """
        return False

    def aorm_pristine(self) -> bool:
        """Connected, in autocommit, no transaction, savepoint, hook or error left behind."""
        return bool(
            self.connection is not None  # type: ignore[attr-defined]
            and self.autocommit  # type: ignore[attr-defined]
            and not self.in_atomic_block  # type: ignore[attr-defined]
            and not self.needs_rollback  # type: ignore[attr-defined]
            and not self.savepoint_ids  # type: ignore[attr-defined]
            and not self.run_on_commit  # type: ignore[attr-defined]
            and not self.errors_occurred  # type: ignore[attr-defined]
            and not self.closed_in_transaction  # type: ignore[attr-defined]
        )

    def on_commit(self, func: Any, robust: bool = False) -> None:
        if inspect.iscoroutinefunction(func):
            func = _sync_callback(func)
        super().on_commit(func, robust)  # type: ignore[misc]

    def get_autocommit(self) -> bool:
        if self.connection is None and loop_running() and not in_bridge():  # type: ignore[attr-defined]
            # Async code outside any transaction (on_commit() asks): a connection
            # it would open is in the configured mode; none needs opening to say so.
            return bool(self.settings_dict["AUTOCOMMIT"])  # type: ignore[attr-defined]
        return super().get_autocommit()  # type: ignore[misc,no-any-return]

    def connect(self) -> None:
        if _async_call_without_aorm():
            raise ImproperlyConfigured(
                f"DATABASES[{self.alias!r}] uses aorm's backend "  # type: ignore[attr-defined]
                f"{self.settings_dict['ENGINE']!r}, but 'aorm' is not in INSTALLED_APPS, so "  # type: ignore[attr-defined]
                "Django's async API ran this query in a thread: add 'aorm' to INSTALLED_APPS "
                "(aorm.E001)."
            )
        _call_guarded(self, "connect", (), {})
        if not in_bridge() and not loop_running():
            _sync_wrappers.add(self)


_native: tuple[object, frozenset[str]] = (None, frozenset())


def native_aliases() -> frozenset[str]:
    """The database aliases configured with an aorm backend."""
    global _native
    configured = connections.settings
    if _native[0] is not configured:
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
