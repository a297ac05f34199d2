"""Django REST framework in async views: serializers that touch the database, natively.

DRF's serializers are synchronous: ``is_valid()`` runs ``UniqueValidator``
and ``UniqueTogetherValidator`` queries and ``PrimaryKeyRelatedField``
lookups, ``.data`` follows relations and nested serializers. In an async view
these raise SynchronousOnlyOperation; adrf runs them in worker threads
(``sync_to_async``), one hop per field.

:class:`NativeSerializerMixin` adds awaitable forms that run DRF's own
synchronous code, unchanged, in aorm's bridge (``aorm.run``): on the event
loop, on the async driver, one bridge call for the whole validation or
representation. It works on DRF's serializers and on adrf's::

    class BookSerializer(NativeSerializerMixin, serializers.ModelSerializer): ...

    serializer = BookSerializer(data=request.data)
    await serializer.ais_valid(raise_exception=True)
    await serializer.asave()
    return Response(await serializer.adata)

:class:`NativeViewMixin` does it for adrf's generic views and viewsets,
whose ``acreate``/``aupdate`` would otherwise validate in a thread and whose
pagination would query in one: put it first in the view's bases and nothing
else changes (the view's serializer class gets :class:`NativeSerializerMixin`
if it lacks it).

Why mixins: they are how DRF and adrf users already compose behaviour, they
keep DRF's code paths (validators, ``create()``/``update()``, ``to_representation``)
as they are, and they add only the ``a``-prefixed names adrf already uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Generator
from typing import TYPE_CHECKING, Any

from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.response import Response
from rest_framework.serializers import BaseSerializer

from aorm import run

if TYPE_CHECKING:
    from django.http import HttpRequest
    from rest_framework.request import Request

__all__ = ["NativeSerializerMixin", "NativeViewMixin"]


class _Awaitable:
    """Runs ``fn(*args)`` in the bridge when awaited (and not before, unlike a coroutine)."""

    __slots__ = ("args", "fn")

    def __init__(self, fn: Callable[..., Any], *args: Any) -> None:
        self.fn = fn
        self.args = args

    def __await__(self) -> Generator[Any, None, Any]:
        return run(self.fn, *self.args).__await__()


def _data(serializer: BaseSerializer) -> Any:
    return serializer.data


class NativeSerializerMixin:
    """Awaitable ``ais_valid()``, ``adata`` and ``asave()`` running DRF's code natively.

    Put it before the serializer base class. With ``many=True`` the list
    serializer DRF builds gets the same methods.
    """

    async def ais_valid(self, *, raise_exception: bool = False) -> bool:
        """``is_valid()`` (validators, related fields' lookups) run natively."""
        return await run(self.is_valid, raise_exception=raise_exception)  # type: ignore[attr-defined,no-any-return]

    @property
    def adata(self) -> Awaitable[Any]:
        """``await serializer.adata``: DRF's ``.data`` (relations, nested serializers) natively."""
        return _Awaitable(_data, self)

    async def asave(self, **kwargs: Any) -> Any:
        """adrf's ``asave()`` where the serializer has one, else DRF's ``save()``, natively."""
        parent = getattr(super(), "asave", None)
        if parent is not None:
            return await parent(**kwargs)
        return await run(self.save, **kwargs)  # type: ignore[attr-defined]

    @classmethod
    def many_init(cls, *args: Any, **kwargs: Any) -> Any:
        serializer = super().many_init(*args, **kwargs)  # type: ignore[misc]
        if not isinstance(serializer, NativeSerializerMixin):
            serializer.__class__ = native_serializer_class(type(serializer))
        return serializer


_native_classes: dict[type[Any], type[Any]] = {}


def native_serializer_class(serializer_class: type[Any]) -> type[Any]:
    """``serializer_class`` with :class:`NativeSerializerMixin` (itself if it has it)."""
    if issubclass(serializer_class, NativeSerializerMixin):
        return serializer_class
    native = _native_classes.get(serializer_class)
    if native is None:
        native = _native_classes[serializer_class] = type(
            serializer_class.__name__,
            (NativeSerializerMixin, serializer_class),
            {"__module__": serializer_class.__module__},
        )
    return native


class NativeViewMixin:
    """For adrf's views, generic views and viewsets: their database work runs natively.

    ``alist``, ``aretrieve``, ``acreate``, ``aupdate`` and ``adestroy`` keep
    adrf's behaviour; validation runs in the bridge instead of a thread, the
    paginator's queries too, and the serializer class gets
    :class:`NativeSerializerMixin`, so ``.data`` is computed natively. With
    DRF's ``SessionAuthentication``, the session's user is loaded natively
    (``request.auser()``) before adrf runs authentication in its thread.
    """

    async def async_dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        auser = getattr(request, "auser", None)  # Django's AuthenticationMiddleware
        if auser is not None and any(
            isinstance(authenticator, SessionAuthentication)
            for authenticator in self.get_authenticators()  # type: ignore[attr-defined]
        ):
            request.user = await auser()  # what SessionAuthentication reads, loaded
        return await super().async_dispatch(request, *args, **kwargs)  # type: ignore[misc]

    def get_serializer(self, *args: Any, **kwargs: Any) -> Any:
        """DRF's ``get_serializer()``, the class given :class:`NativeSerializerMixin`."""
        serializer_class = native_serializer_class(self.get_serializer_class())  # type: ignore[attr-defined]
        kwargs.setdefault("context", self.get_serializer_context())  # type: ignore[attr-defined]
        return serializer_class(*args, **kwargs)

    async def acreate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)  # type: ignore[attr-defined]
        await serializer.ais_valid(raise_exception=True)
        await self.perform_acreate(serializer)  # type: ignore[attr-defined]
        data = await serializer.adata
        headers = self.get_success_headers(data)  # type: ignore[attr-defined]
        return Response(data, status=status.HTTP_201_CREATED, headers=headers)

    async def aupdate(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        partial = kwargs.pop("partial", False)
        instance = await self.aget_object()  # type: ignore[attr-defined]
        serializer = self.get_serializer(instance, data=request.data, partial=partial)  # type: ignore[attr-defined]
        await serializer.ais_valid(raise_exception=True)
        await self.perform_aupdate(serializer)  # type: ignore[attr-defined]
        if getattr(instance, "_prefetched_objects_cache", None):
            instance._prefetched_objects_cache = {}  # as DRF: the update made it stale
        return Response(await serializer.adata, status=status.HTTP_200_OK)

    async def apaginate_queryset(self, queryset: Any) -> Any:
        paginator = self.paginator  # type: ignore[attr-defined]
        if paginator is None:
            return None
        if inspect.iscoroutinefunction(paginator.paginate_queryset):  # an async paginator
            return await paginator.paginate_queryset(queryset, self.request, view=self)  # type: ignore[attr-defined]
        return await run(paginator.paginate_queryset, queryset, self.request, view=self)  # type: ignore[attr-defined]
