"""QuerySets awaited and iterated natively: ``await qs``, ``aall()``, ``async for``.

The seeds' awaitable QuerySet (``await Student.objects.all()``,
``await qs.aall()``) evaluates the QuerySet like ``list(qs)`` does, in the
bridge. ``async for`` fetches chunks through :class:`aorm._operation.KeptConnections`,
since a server-side cursor lives on one connection. On a Django alias both
fall back to Django's behaviour (a thread).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator
from itertools import islice
from typing import Any

from django.db.models import QuerySet
from django.db.models.manager import BaseManager
from django.db.models.query import BaseIterable, RawQuerySet

from aorm import _operation
from aorm._sync_to_async import is_native, route

__all__ = ["aiter_natively", "manager_aall", "queryset_aall", "queryset_await"]


_django_aiter = BaseIterable.__aiter__


def aiter_natively(self: BaseIterable) -> AsyncIterator[Any]:
    if is_native(self.queryset):
        return _native_chunks(self)
    return _django_aiter(self)  # type: ignore[no-any-return]


async def _native_chunks(iterable: BaseIterable) -> AsyncIterator[Any]:
    rows = iter(iterable)
    connections = _operation.KeptConnections(iterable.queryset.db, rows.close)  # type: ignore[attr-defined]
    try:
        while True:
            chunk = await connections.run(lambda: list(islice(rows, iterable.chunk_size)))
            for row in chunk:
                yield row
            if len(chunk) < iterable.chunk_size:
                break
    finally:
        await connections.close()


async def _evaluate(queryset: QuerySet[Any] | RawQuerySet) -> list[Any]:
    await route(queryset._fetch_all)()
    return list(queryset._result_cache)  # type: ignore[arg-type]


def queryset_await(self: QuerySet[Any] | RawQuerySet) -> Generator[Any, None, list[Any]]:
    """``await queryset`` evaluates it, like ``list(queryset)``, and returns the list."""
    return _evaluate(self).__await__()


async def queryset_aall(self: QuerySet[Any]) -> list[Any]:
    """``await queryset.aall()``: the rows of ``queryset.all()``, as a list."""
    return await _evaluate(self.all())


async def manager_aall(self: BaseManager[Any]) -> list[Any]:
    """``await Model.objects.aall()``: every row of the manager's QuerySet, as a list."""
    return await _evaluate(self.get_queryset())
