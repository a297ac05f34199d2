"""Messages for SynchronousOnlyOperation that name the async form to use instead.

Django's guard says "You cannot call this from an async context - use a thread
or sync_to_async", which is the one thing an aorm user should not do. The
frames between the user's code and the guard tell which ORM call it was.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path
from types import FrameType

import django

# Django's, aorm's and the standard library's frames (functools.cached_property
# sits between Model.save() and the guard on MySQL) lie between the user's call
# and the guard.
_LIBRARY_DIRS = (
    str(Path(django.__file__).parent),
    str(Path(__file__).parent),
    str(Path(functools.__file__).parent),
)

_QUERYSET_METHODS = {
    "get", "create", "get_or_create", "update_or_create", "bulk_create", "bulk_update",
    "count", "in_bulk", "latest", "earliest", "first", "last", "aggregate", "exists",
    "contains", "update", "delete", "explain",
}  # fmt: skip
_EVALUATION = {"__iter__", "__len__", "__bool__", "__getitem__", "_fetch_all", "__repr__"}
_MODEL_METHODS = {"save", "delete", "refresh_from_db"}
_RELATED_MANAGER_METHODS = {
    "add", "remove", "clear", "set", "create", "get_or_create", "update_or_create",
}  # fmt: skip

_RUN = "to run a block of synchronous ORM code natively, use `await aorm.run(fn, *args)`"


def _suggestion(frame: FrameType) -> str | None:
    code = frame.f_code
    owner, _, name = getattr(code, "co_qualname", code.co_name).rpartition(".")
    if owner.endswith("QuerySet"):
        if name in {"iterator", "_iterator"}:  # the generator's own frame is _iterator
            return (
                "QuerySet.iterator() queries the database: use "
                "`async for obj in queryset.aiterator(...)`"
            )
        if name in _QUERYSET_METHODS:
            return f"QuerySet.{name}() queries the database: use `await queryset.a{name}(...)`"
        if name in _EVALUATION:
            return (
                "evaluating a QuerySet queries the database: use `await queryset` "
                "(a list) or `async for obj in queryset`"
            )
    if owner == "Model" and name in _MODEL_METHODS:
        return f"Model.{name}() queries the database: use `await obj.a{name}(...)`"
    if "Related" in owner and "Manager" in owner and name in _RELATED_MANAGER_METHODS:
        return (
            f"{name}() on a related manager queries the database: use `await manager.a{name}(...)`"
        )
    if name == "__get__" and (owner.endswith("Descriptor") or owner == "GenericForeignKey"):
        relation, model = _relation_of(frame)
        return (
            f"{model}.{relation} is not loaded, and loading it queries the database: load it "
            f"with `await aorm.afetch(obj, {relation!r})`, or up front with "
            "select_related()/prefetch_related()"
        )
    return None


def _relation_of(frame: FrameType) -> tuple[str, str]:
    """The relation a descriptor's ``__get__`` was loading, and the instance's model."""
    descriptor, instance = frame.f_locals.get("self"), frame.f_locals.get("instance")
    model = type(instance).__name__ if instance is not None else "obj"
    field = getattr(descriptor, "field", None)
    related = getattr(descriptor, "related", None)
    if related is not None and hasattr(related, "get_accessor_name"):
        return related.get_accessor_name(), model  # reverse one-to-one
    name = getattr(field, "name", None) or getattr(descriptor, "name", None)
    return str(name or "<relation name>"), model


def async_form_of_current_call() -> str:
    """Explain, for the synchronous ORM call being made, what to write in async code."""
    frame = sys._getframe(1)
    library_frames = []
    while frame is not None and frame.f_code.co_filename.startswith(_LIBRARY_DIRS):
        library_frames.append(frame)
        frame = frame.f_back  # type: ignore[assignment]
    for library_frame in reversed(library_frames):
        suggestion = _suggestion(library_frame)
        if suggestion:
            return f"You cannot call this from an async context: {suggestion}; {_RUN}."
    return f"You cannot call this from an async context: {_RUN}."
