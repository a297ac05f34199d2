"""Django's async ORM API, routed through the bridge on aorm aliases.

Django's async methods (``aget``, ``acreate``, ``asave``, related managers'
``aadd``...) are one-liners: ``await sync_to_async(self.get)(...)``. aorm
replaces the name ``sync_to_async`` in the modules that define them with
``route``, which looks at the object the method belongs to: if every database
alias it can use is an aorm alias, the synchronous method runs natively through
the bridge; otherwise Django's ``sync_to_async`` runs it in a thread, exactly as
before. Django's method bodies are not copied, so methods added by later Django
versions are covered as they appear.

Three more entry points are not one-liners and are wrapped here:
``async for`` over an iterable (chunks fetched through one scope, since a
server-side cursor lives on one connection), the seeds' awaitable QuerySet
(``await qs``, ``await qs.aall()``), and ``async_to_sync`` called inside the
bridge (a sync signal receiver calling async code), which awaits on the loop
instead of failing on "AsyncToSync in the same thread as an event loop".

Async code that runs inside a synchronous caller's transaction (a test
case's, a sync view's under ``ATOMIC_REQUESTS``) uses that transaction's
connection: see ``aorm._scope``.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable, Coroutine, Generator
from itertools import islice
from typing import Any

from asgiref.sync import AsyncToSync
from asgiref.sync import sync_to_async as _threaded
from django.apps import apps
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager
from django.db.models.query import BaseIterable, RawQuerySet

from aorm import _scope, bridge

__all__ = ["install", "route"]

_ROUTED_MODULES = (
    "django.db.models.query",
    "django.db.models.base",
    "django.db.models.fields.related_descriptors",
)


def _candidate_aliases(target: Any, using: Any) -> set[str]:
    """Every alias an ORM call on ``target`` may read from or write to."""
    if isinstance(using, str):
        return {using}
    if isinstance(target, list | tuple):
        target = target[0] if target else None
    if isinstance(target, Model):
        model: Any = type(target)
        hints: dict[str, Any] = {"instance": target}
        fixed = target._state.db
    elif isinstance(target, QuerySet | RawQuerySet | BaseManager):
        model, hints, fixed = target.model, target._hints, target._db
    elif isinstance(target, BaseIterable):
        return _candidate_aliases(target.queryset, None)
    else:
        return set()
    if fixed:
        return {fixed}
    return {router.db_for_read(model, **hints), router.db_for_write(model, **hints)}


def is_native(target: Any, using: Any = None) -> bool:
    """Whether an ORM call on ``target`` runs through the bridge."""
    native = _scope.native_aliases()
    if not native:
        return False
    if len(native) == len(connections.settings) and not isinstance(using, str):
        return True
    aliases = _candidate_aliases(target, using)
    return bool(aliases) and aliases <= native


def route(
    func: Callable[..., Any], *, thread_sensitive: bool = True, executor: Any = None
) -> Callable[..., Coroutine[Any, Any, Any]]:
    """Stand-in for asgiref's ``sync_to_async`` inside Django's ORM modules."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        target = getattr(func, "__self__", None)
        if target is None and args:
            target = args[0]
        if is_native(target, kwargs.get("using")):
            return await _scope.run(func, *args, **kwargs)
        threaded = _threaded(func, thread_sensitive=thread_sensitive, executor=executor)
        return await threaded(*args, **kwargs)

    return call


_django_aiter = BaseIterable.__aiter__


def _aiter(self: BaseIterable) -> AsyncIterator[Any]:
    if is_native(self.queryset):
        return _native_chunks(self)
    return _django_aiter(self)  # type: ignore[no-any-return]


async def _native_chunks(iterable: BaseIterable) -> AsyncIterator[Any]:
    scope = _scope.Scope()
    rows = iter(iterable)
    try:
        while True:
            chunk = await scope.run(lambda: list(islice(rows, iterable.chunk_size)))
            for row in chunk:
                yield row
            if len(chunk) < iterable.chunk_size:
                break
    finally:
        await scope.close(rows.close)  # type: ignore[attr-defined]


async def _evaluate(queryset: QuerySet[Any] | RawQuerySet) -> list[Any]:
    await route(queryset._fetch_all)()
    return list(queryset._result_cache)  # type: ignore[arg-type]


def _queryset_await(self: QuerySet[Any] | RawQuerySet) -> Generator[Any, None, list[Any]]:
    """``await queryset`` evaluates it, like ``list(queryset)``, and returns the list."""
    return _evaluate(self).__await__()


async def _queryset_aall(self: QuerySet[Any]) -> list[Any]:
    """``await queryset.aall()``: the rows of ``queryset.all()``, as a list."""
    return await _evaluate(self.all())


async def _manager_aall(self: BaseManager[Any]) -> list[Any]:
    """``await Model.objects.aall()``: every row of the manager's QuerySet, as a list."""
    return await _evaluate(self.get_queryset())


_django_async_to_sync_call = AsyncToSync.__call__


def _async_to_sync_call(self: AsyncToSync[Any, Any], *args: Any, **kwargs: Any) -> Any:
    if bridge.in_bridge():
        return bridge.await_(self.awaitable(*args, **kwargs))
    return _django_async_to_sync_call(self, *args, **kwargs)


def install() -> None:
    """Route Django's async ORM entry points; idempotent."""
    modules = list(_ROUTED_MODULES)
    if apps.is_installed("django.contrib.contenttypes"):
        modules.append("django.contrib.contenttypes.fields")
    for name in modules:
        importlib.import_module(name).sync_to_async = route  # type: ignore[attr-defined]
    BaseIterable.__aiter__ = _aiter  # type: ignore[method-assign]
    QuerySet.__await__ = _queryset_await  # type: ignore[attr-defined]
    QuerySet.aall = _queryset_aall  # type: ignore[attr-defined]
    RawQuerySet.__await__ = _queryset_await  # type: ignore[attr-defined]
    BaseManager.aall = _manager_aall  # type: ignore[attr-defined]
    AsyncToSync.__call__ = _async_to_sync_call  # type: ignore[method-assign]
