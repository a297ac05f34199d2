"""``await aorm.afetch(obj, "author", "tags")``: load relations so that attribute access works.

In async code an unloaded relation (``book.author``) raises
SynchronousOnlyOperation, since loading it is a query. ``afetch`` loads it
natively and fills Django's own caches, after which the plain attribute
works with no query: the same objects a sync access would give, with
``select_related``/``prefetch_related`` results and already-loaded
relations reused as they are.

Why a function and not an attribute form (SQLAlchemy's ``awaitable_attrs``):
it is Django-shaped (``aprefetch_related_objects(objs, *lookups)``, whose
lookups it accepts, ``"publisher__country"`` included), loads several
relations and several levels in one call, and adds nothing to users' models.

For one instance, single-valued relations (forward ``ForeignKey`` and
``OneToOneField``, reverse one-to-one, ``GenericForeignKey``) are loaded by
Django's own attribute access, run in the bridge, so Django 6.1's fetch modes
apply (``FETCH_PEERS`` loads the peers' relation too, as in sync code);
to-many relations, and lists of instances, go through
``prefetch_related_objects``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypeVar, overload

from django.core.exceptions import FieldDoesNotExist
from django.db.models import Model, prefetch_related_objects
from django.db.models.constants import LOOKUP_SEP
from django.db.models.fields.related_descriptors import ReverseOneToOneDescriptor

from aorm._operation import run

__all__ = ["afetch"]

M = TypeVar("M", bound=Model)


@overload
async def afetch(instances: M, /, *lookups: str) -> M: ...
@overload
async def afetch(instances: Iterable[M], /, *lookups: str) -> list[M]: ...  # type: ignore[overload-cannot-match]


async def afetch(instances: Any, /, *lookups: str) -> Any:
    """Load the relations named by ``lookups`` on ``instances`` (one, or several); return them."""
    if not lookups:
        raise TypeError("afetch() needs at least one relation name, e.g. afetch(book, 'author').")
    if isinstance(instances, Model):
        await run(_fetch_one, instances, lookups)
        return instances
    objs = list(instances)
    if objs:
        await run(prefetch_related_objects, objs, *lookups)
    return objs


def _fetch_one(instance: Model, lookups: Sequence[str]) -> None:
    for lookup in lookups:
        current: Any = instance
        parts = lookup.split(LOOKUP_SEP)
        for depth, name in enumerate(parts):
            if current is None:
                break
            if _is_to_many(current, name):
                prefetch_related_objects([current], LOOKUP_SEP.join(parts[depth:]))
                break
            current = getattr(current, name)


def _is_to_many(instance: Model, name: str) -> bool:
    try:
        field = instance._meta.get_field(name)
    except FieldDoesNotExist:
        # An accessor whose lookup name differs ("book_set" for "book"): its
        # descriptor tells; prefetch_related_objects reports a wrong name.
        return not isinstance(getattr(type(instance), name, None), ReverseOneToOneDescriptor)
    if not field.is_relation:
        raise ValueError(f"{name!r} is a field of {type(instance).__name__}, not a relation.")
    return bool(field.many_to_many or field.one_to_many)
