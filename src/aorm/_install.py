"""Every change aorm makes to Django and asgiref: declared in one table, applied at one moment.

aorm changes Django's behaviour by replacing a few attributes of Django's and
asgiref's modules and classes. Each replacement is a :class:`Patch`: the
target, the attribute, the replacement, and what must be true of the
original for the replacement to be right (``requires``, tested by
``holds``). :func:`install` runs from the app's ``ready()``: it checks every
precondition first, then applies the table; it is idempotent. A
precondition that fails raises ``ImproperlyConfigured`` naming the entry and
the Django version, so that a Django release that moved something stops
startup instead of letting the async API fall back to threads unnoticed.
Nothing is patched at import time.

The table (also in docs/how-it-works.md):

======================================================  ==========================================
``django.utils.asyncio.get_running_loop``               the async-unsafe guard lets the bridge's
                                                        I/O through (``backends.base``)
``django.db.connections._connections``                  which wrapper an operation uses
                                                        (``_operation``)
``django.db.connections.all``                           ``initialized_only`` borrows no parked
                                                        connection (``_operation``)
``<routed module>.sync_to_async``                       Django's async functions run in the bridge
(``_sync_to_async.ROUTED``)
``BaseIterable.__aiter__``                              ``async for`` fetches natively
                                                        (``_queryset``)
``QuerySet.__await__``, ``RawQuerySet.__await__``,      the seeds' awaitable QuerySet
``QuerySet.aall``, ``BaseManager.aall``
``dispatcher._run_parallel`` (Django 6)                  receivers start in the sender's blocks
``AsyncToSync.__call__``                                ``async_to_sync`` inside the bridge
``SyncToAsync.__call__``                                ``sync_to_async`` inside an async
                                                        transaction
``Atomic.__aenter__``, ``Atomic.__aexit__``,            ``async with transaction.atomic()``,
``Atomic.__call__``                                     ``@atomic`` on ``async def``
``BaseHandler.make_view_atomic``                        ``ATOMIC_REQUESTS`` for async views
======================================================  ==========================================
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asgiref.sync
import django
from asgiref.sync import AsyncToSync, SyncToAsync
from django.core.exceptions import ImproperlyConfigured
from django.core.handlers.base import BaseHandler
from django.db import connections
from django.db.models import QuerySet
from django.db.models.manager import BaseManager
from django.db.models.query import BaseIterable, RawQuerySet
from django.db.transaction import Atomic
from django.dispatch import dispatcher
from django.utils import asyncio as django_asyncio

from aorm import _operation, _queryset, _sync_to_async, _transaction
from aorm.backends import base as backends_base

__all__ = ["MISSING", "Patch", "install", "patches"]


class _Missing:
    def __repr__(self) -> str:
        return "<missing>"


MISSING: Any = _Missing()  # the original of an attribute Django does not define


@dataclass(frozen=True)
class Patch:
    """One change to Django or asgiref, and what must be true of the original."""

    target: Any  # a module, a class or an object
    attribute: str
    replacement: Any
    requires: str
    holds: Callable[[Any], bool]

    @property
    def name(self) -> str:
        owner = getattr(self.target, "__qualname__", None) or getattr(self.target, "__name__", "")
        module = getattr(self.target, "__module__", None)
        if isinstance(self.target, type) and module:
            owner = f"{module}.{owner}"
        elif not owner:
            owner = type(self.target).__name__
        return f"{owner}.{self.attribute}"

    def original(self) -> Any:
        return getattr(self.target, self.attribute, MISSING)

    def applied(self) -> bool:
        current = self.original()
        return current is self.replacement or (
            isinstance(self.replacement, type) and isinstance(current, self.replacement)
        )


def _absent(original: Any) -> bool:
    return original is MISSING


def _calls(*names: str) -> Callable[[Any], bool]:
    """The original is a function whose code uses every one of ``names``.

    A tool may have wrapped Django's function before aorm installs (Sentry's
    Django integration, set up in settings, wraps ``make_view_atomic``): the
    function it wraps (``__wrapped__``, as ``functools.wraps`` sets) is checked.
    """

    def holds(original: Any) -> bool:
        function = getattr(original, "__func__", original)
        if callable(function):
            function = inspect.unwrap(function)
        code = getattr(function, "__code__", None)
        return code is not None and set(names) <= _names_in(code)

    return holds


def _names_in(code: Any) -> set[str]:
    names = set(code.co_names) | set(code.co_varnames)
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _names_in(const)
    return names


def _guard_uses_module_lookup(original: Any) -> bool:
    """Django's guard calls ``get_running_loop`` by its module-level name."""
    return original is asyncio.get_running_loop and "get_running_loop" in _names_in(
        backends_base.GUARD_CODE
    )


def _routed_module_holds(module: Any) -> Callable[[Any], bool]:
    def holds(original: Any) -> bool:
        return original is asgiref.sync.sync_to_async and any(
            "sync_to_async" in _names_in(code) for code in _module_code(module)
        )

    return holds


def _module_code(module: Any) -> Iterator[Any]:
    """The code of the functions defined in ``module``, at its top level and in its classes."""
    for value in vars(module).values():
        for member in vars(value).values() if isinstance(value, type) else [value]:
            function = getattr(member, "__func__", member)
            code = getattr(function, "__code__", None)
            if code is not None and getattr(function, "__module__", None) == module.__name__:
                yield code


def _is_connection_storage(original: Any) -> bool:
    """``ConnectionHandler`` keeps its wrappers in an asgiref ``Local``, looked up by alias."""
    return type(original).__module__ == "asgiref.local"


def patches() -> list[Patch]:
    """The whole table, for the Django version and the apps installed."""
    table = [
        Patch(
            django_asyncio,
            "get_running_loop",
            backends_base.running_loop_unless_lifted,
            "async_unsafe's guard calls asyncio.get_running_loop by its module-level name",
            _guard_uses_module_lookup,
        ),
        Patch(
            connections,
            "_connections",
            _operation.OperationStorage,
            "ConnectionHandler keeps its DatabaseWrappers in an asgiref Local, `_connections`",
            _is_connection_storage,
        ),
        Patch(
            connections,
            "all",
            _operation.ConnectionsAll,
            "ConnectionHandler.all(initialized_only) tests hasattr(self._connections, alias)",
            _calls("hasattr", "_connections"),
        ),
    ]
    for name in _sync_to_async.routed_modules():
        module = importlib.import_module(name)
        table.append(
            Patch(
                module,
                "sync_to_async",
                _sync_to_async.router_for(name),
                f"{name} calls asgiref's sync_to_async by its module-level name in async code",
                _routed_module_holds(module),
            )
        )
    if hasattr(dispatcher, "_run_parallel"):  # Django 6
        table.append(
            Patch(
                dispatcher,
                "_run_parallel",
                _sync_to_async.ReceiversInTheirBlocks,
                "_run_parallel(*coroutines) runs async receivers as tasks of one TaskGroup",
                _calls("TaskGroup", "create_task"),
            )
        )
    table += [
        Patch(
            BaseIterable,
            "__aiter__",
            _queryset.aiter_natively,
            "BaseIterable.__aiter__ returns its _async_generator (chunks via sync_to_async)",
            _calls("_async_generator"),
        ),
        Patch(
            QuerySet, "__await__", _queryset.queryset_await, "QuerySet is not awaitable", _absent
        ),
        Patch(
            RawQuerySet,
            "__await__",
            _queryset.queryset_await,
            "RawQuerySet is not awaitable",
            _absent,
        ),
        Patch(QuerySet, "aall", _queryset.queryset_aall, "QuerySet has no aall()", _absent),
        Patch(BaseManager, "aall", _queryset.manager_aall, "managers have no aall()", _absent),
        Patch(
            AsyncToSync,
            "__call__",
            _sync_to_async.async_to_sync_call,
            "AsyncToSync.__call__ runs self.awaitable",
            _calls("awaitable"),
        ),
        Patch(
            SyncToAsync,
            "__call__",
            _sync_to_async.sync_to_async_call,
            "SyncToAsync.__call__ runs self.func, and thread_sensitive is `_thread_sensitive`",
            _calls("func", "_thread_sensitive"),
        ),
        Patch(Atomic, "__aenter__", _transaction.aenter, "Atomic has no __aenter__", _absent),
        Patch(Atomic, "__aexit__", _transaction.aexit, "Atomic has no __aexit__", _absent),
        Patch(
            Atomic,
            "__call__",
            _transaction.atomic_call,
            "Atomic's __call__ is ContextDecorator's: it wraps func in self._recreate_cm()",
            _calls("_recreate_cm"),
        ),
        Patch(
            BaseHandler,
            "make_view_atomic",
            _transaction.make_view_atomic,
            "BaseHandler.make_view_atomic(view) wraps sync views in atomic, refuses async ones",
            _calls("iscoroutinefunction", "atomic"),
        ),
    ]
    return table


def install() -> None:
    """Check every precondition, then apply the whole table; a second call changes nothing."""
    table = patches()
    broken = [
        patch for patch in table if not patch.applied() and not patch.holds(patch.original())
    ]
    if broken:
        lines = "\n".join(f"- {patch.name}: expected {patch.requires}" for patch in broken)
        raise ImproperlyConfigured(
            f"aorm cannot install on Django {django.get_version()}: what it replaces has "
            f"changed. Without these entries Django's async API would silently run in "
            f"threads:\n{lines}\nSupported Django versions: 5.2 and 6.x."
        )
    for patch in table:
        if patch.applied():
            continue
        replacement = patch.replacement
        if isinstance(replacement, type):  # a wrapper around the original object
            replacement = replacement(patch.original())
        setattr(patch.target, patch.attribute, replacement)
