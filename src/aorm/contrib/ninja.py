"""django-ninja in async views: response schemas that follow relations, resolved natively.

ninja awaits an async view, then validates what it returned against the
operation's response schema, synchronously: a ``Schema``/``ModelSchema`` with
a ForeignKey or a ManyToMany field reads ``book.author`` or
``book.tags.all()`` there, which raises SynchronousOnlyOperation in async
code. ``native(api)`` makes every async operation of a ``NinjaAPI`` (or of a
``Router``) run that step (ninja's own code, unchanged) in aorm's bridge:
on the event loop, on the async driver, with no thread::

    api = native(NinjaAPI())

    @api.get("/books", response=list[BookOut])
    @paginate                          # ninja's async pagination is native under aorm
    async def books(request):
        return Book.objects.all()

Why this form: it is one line per API, it leaves views, schemas and
``@paginate`` as ninja users write them, and it is installed through
ninja's own extension point, ``add_decorator``. It is a "view" mode
decorator because that mode is handed each mounted operation (``run``
bound to it): the hook replaces that operation's view function with one that
awaits the view, then validates and renders its result in the bridge through
the operation's ``_result_to_response`` (django-ninja 1.x). Sync operations
and streaming ones are left as they are (ninja runs sync views in a thread,
where the ORM is synchronous). Decorators added after it (operation mode)
wrap the view inside it, and see the view's own result.

This module does not import ninja.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from django.http import HttpRequest, HttpResponse, HttpResponseBase

from aorm import run

__all__ = ["native"]

A = TypeVar("A")


def native(api: A) -> A:
    """Resolve the response schemas of ``api``'s async operations natively; returns ``api``.

    ``api`` is a ``NinjaAPI`` or a ``Router``: its operations, and those of
    the routers mounted under it, are covered.
    """
    api.add_decorator(_natively, mode="view")  # type: ignore[attr-defined]
    return api


def _natively(run_operation: Callable[..., Any]) -> Callable[..., Any]:
    """Applied by ninja to each mounted operation's ``run``: swaps in a native view function."""
    operation = getattr(inspect.unwrap(run_operation), "__self__", None)
    if (
        operation is not None
        and getattr(operation, "is_async", False)
        and not getattr(operation, "stream_format", None)
        and hasattr(operation, "_result_to_response")
    ):
        operation.view_func = _native_view(operation, operation.view_func)
    return run_operation


def _native_view(operation: Any, view: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(view)
    async def native_view(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        result = await view(request, *args, **kwargs)
        if isinstance(result, HttpResponseBase):
            return result
        # The response the view was given to set headers or cookies on, if it asked for one.
        response = next((v for v in kwargs.values() if isinstance(v, HttpResponse)), None)
        if response is None:
            response = operation.api.create_temporal_response(request)
        return await run(operation._result_to_response, request, result, response)

    return native_view
