"""Strawberry (strawberry-graphql-django) in async views: resolvers that query, run natively.

In async code, strawberry-django hands what may query to ``sync_to_async``
(a worker thread, on Django's synchronous connection): a relation that is not
loaded yet (``book.author``), a sync resolver, a root field's QuerySet, the
optimizer's fetch. ``NativeORM``, a schema extension, runs those resolvers in
aorm's bridge instead, on the event loop and the async driver::

    schema = strawberry.Schema(
        query=Query,
        extensions=[NativeORM, DjangoOptimizerExtension],   # NativeORM first
    )

Why this form: one line per schema, through Strawberry's own extension
point; types, fields and resolvers stay as strawberry-django users write
them. For each field that may query, the extension calls the field's
resolver in the bridge with strawberry-django's own ``resolving_async`` flag
set, the flag by which strawberry-django knows that the code already runs
where the ORM is synchronous: it then runs its resolver in place, with no
thread. Extensions listed after this one (the optimizer) run inside it.
Columns already loaded on an instance are read as they are, with no detour.
Async resolvers run on the loop as written: they await the ORM, with
``await aorm.afetch(obj, "author")`` for a relation, and return objects or
lists (``await qs``), not an unevaluated QuerySet, which strawberry-django
would evaluate in a thread.

This module is imported only by users of Strawberry; aorm does not import it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.db.models import Model
from graphql import GraphQLResolveInfo
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema_converter import GraphQLCoreConverter
from strawberry_django.fields.base import StrawberryDjangoFieldBase
from strawberry_django.resolvers import resolving_async

from aorm import run

__all__ = ["NativeORM"]


class NativeORM(SchemaExtension):
    """Run strawberry-django's resolvers that may query natively, not in a worker thread."""

    def resolve(
        self,
        _next: Callable[..., Any],
        root: Any,
        info: GraphQLResolveInfo[Any],
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        if _may_query(root, info):
            return _natively(_next, root, info, *args, **kwargs)
        return _next(root, info, *args, **kwargs)


def _may_query(root: Any, info: GraphQLResolveInfo[Any]) -> bool:
    """A strawberry-django field whose resolution may query: not async, not a loaded column."""
    field = info.parent_type.fields[info.field_name].extensions.get(
        GraphQLCoreConverter.DEFINITION_BACKREF
    )
    if not isinstance(field, StrawberryDjangoFieldBase):
        return False
    if field.base_resolver is not None:
        return not field.base_resolver.is_async
    if field.is_relation or not isinstance(root, Model):
        return True
    return (field.django_name or field.python_name) not in root.__dict__


async def _natively(_next: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    result = await run(_in_place, _next, *args, **kwargs)
    if inspect.isawaitable(result):  # an async field extension's, or an async resolver's
        result = await result
    return result


def _in_place(_next: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """In the bridge: strawberry-django resolves synchronously, where it stands."""
    token = resolving_async.set(True)
    try:
        return _next(*args, **kwargs)
    finally:
        resolving_async.reset(token)
