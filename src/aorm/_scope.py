"""Which DatabaseWrapper an awaited ORM operation uses, and for how long.

Django keeps one ``DatabaseWrapper`` per alias per thread, and per asyncio
context in async code. That is wrong for native async code twice over: tasks
started after their parent touched the database share its wrapper (asgiref's
context-local storage shares one dict between parent and children), so two
concurrent queries would interleave on one connection; and a task holds its
connection until something closes it, so an idle request pins a connection.

aorm therefore gives every awaited operation outside a transaction a *scope*:
its own wrappers for aorm aliases, created on first use, closed (connection
back to the pool) when the operation ends. The scope is found through a
context variable set inside the bridge for the operation's duration, so
``connections[alias]``, and all of Django's code that uses it, resolves to the
operation's wrapper. Aliases on Django's own backends are left to Django.
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, ParamSpec, TypeVar

from django.db import connections
from django.db.utils import load_backend

from aorm import bridge

__all__ = ["Scope", "install", "native_aliases", "run"]

P = ParamSpec("P")
T = TypeVar("T")

_current: ContextVar[dict[str, Any] | None] = ContextVar("aorm.scope", default=None)
_native: tuple[object, frozenset[str]] = (None, frozenset())


def native_aliases() -> frozenset[str]:
    """The database aliases configured with an aorm backend."""
    global _native
    configured = connections.settings
    if _native[0] is not configured:
        from aorm.backends.base import BridgedDatabaseWrapper

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


class _ScopedStorage:
    """Stands in for ``connections._connections``: aorm aliases resolve in the current scope."""

    __slots__ = ("_django",)

    def __init__(self, django_storage: Any) -> None:
        object.__setattr__(self, "_django", django_storage)

    def __getattr__(self, alias: str) -> Any:
        wrappers = _current.get()
        if wrappers is not None and alias in native_aliases():
            try:
                return wrappers[alias]
            except KeyError:
                raise AttributeError(alias) from None
        return getattr(self._django, alias)

    def __setattr__(self, alias: str, wrapper: Any) -> None:
        wrappers = _current.get()
        if wrappers is not None and alias in native_aliases():
            wrappers[alias] = wrapper
        else:
            setattr(self._django, alias, wrapper)

    def __delattr__(self, alias: str) -> None:
        wrappers = _current.get()
        if wrappers is not None and alias in native_aliases():
            del wrappers[alias]
        else:
            delattr(self._django, alias)


def install() -> None:
    if not isinstance(connections._connections, _ScopedStorage):
        connections._connections = _ScopedStorage(connections._connections)


def _release(wrappers: dict[str, Any]) -> None:
    """Close the scope's wrappers: their connections go back to the pool."""
    errors = []
    for wrapper in wrappers.values():
        try:
            wrapper.close()
        except Exception as exc:
            errors.append(exc)
    wrappers.clear()
    if errors:
        raise errors[0]


def _run_in_new_scope(fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    if _current.get() is not None:  # nested in an operation of the same task
        return fn(*args, **kwargs)
    wrappers: dict[str, Any] = {}
    token = _current.set(wrappers)
    try:
        return fn(*args, **kwargs)
    finally:
        try:
            _release(wrappers)
        finally:
            _current.reset(token)


async def run(fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> T:
    """Run synchronous ORM code natively: on the event loop, on async drivers.

    ``fn`` can use the ORM freely (lazy relations, serializers, forms, sync
    ``transaction.atomic``); its connections are borrowed for the call only.
    """
    return await bridge.run(_run_in_new_scope, fn, args, kwargs)


class Scope:
    """A scope that outlives one call: several bridge runs on the same connections.

    Used where Django keeps driver state between calls, as a server-side
    cursor iterated chunk by chunk.
    """

    def __init__(self) -> None:
        self._wrappers: dict[str, Any] = {}

    def _call(self, fn: Callable[..., T], args: Any) -> T:
        token = _current.set(self._wrappers)
        try:
            return fn(*args)
        finally:
            _current.reset(token)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await bridge.run(self._call, fn, args)

    async def close(self, finalizer: Callable[[], object] | None = None) -> None:
        """Run ``finalizer`` in the scope, then release its connections."""

        def finish() -> None:
            try:
                if finalizer is not None:
                    finalizer()
            finally:
                _release(self._wrappers)

        await self.run(finish)
