"""Django's async APIs, routed through the bridge on aorm aliases.

Django's async methods (``aget``, ``acreate``, ``asave``, related managers'
``aadd``, sessions' ``aload``, ``Signal.asend``...) are mostly one-liners:
``await sync_to_async(self.get)(...)``. aorm replaces the name
``sync_to_async`` in the modules that define them with a router that looks at
what the call works on: if the work touches only aorm aliases (and does no
other blocking I/O), the synchronous method runs natively through the bridge;
otherwise Django's ``sync_to_async`` runs it in a thread, exactly as before.
Django's method bodies are not copied, so methods added by later Django
versions are covered as they appear. Which modules are routed, and by what
test, is declared in :data:`ROUTED`; every other Django module that calls
``sync_to_async`` is listed in :data:`THREADED` with the reason, and a test
fails on a Django version that adds a module to neither.

More entry points are wrapped here (``await qs`` and ``async for`` are in
``aorm._queryset``):

- ``async_to_sync`` called inside the bridge (a sync signal receiver calling
  async code, Django's dispatch of async receivers from ``send()``), which
  awaits on the loop instead of failing on "AsyncToSync in the same thread as
  an event loop", as the task's own async code (``aorm._operation.await_``);
- ``sync_to_async`` (thread-sensitive, Django's default) called by a task
  inside an async transaction when every alias is aorm's: the function runs
  in the bridge, in the transaction's turn, so its statements take part in
  the transaction. Elsewhere it runs in a thread as in Django, and such a
  thread that reaches an aorm alias of the task's transaction gets
  ``TransactionManagementError`` (``aorm._operation``).

Async code that runs inside a synchronous caller's transaction (a test
case's, a sync view's under ``ATOMIC_REQUESTS``) uses that transaction's
connection: see ``aorm._operation``.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any

from asgiref.sync import AsyncToSync, SyncToAsync
from asgiref.sync import sync_to_async as _threaded
from django.apps import apps
from django.conf import settings
from django.db import connections, router
from django.db.models import Model, QuerySet
from django.db.models.manager import BaseManager
from django.db.models.query import BaseIterable, RawQuerySet

from aorm import _blocks, _operation, bridge
from aorm.backends.base import native_aliases

__all__ = [
    "ROUTED",
    "THREADED",
    "ReceiversInTheirBlocks",
    "async_to_sync_call",
    "route",
    "router_for",
    "sync_to_async_call",
]


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
        instance = getattr(target, "instance", None)
        if isinstance(instance, Model):
            # A related manager: Django routes its queries with its instance as the
            # hint (the instance's alias by default), not with the manager's _hints.
            hints = {**hints, "instance": instance}
    elif isinstance(target, BaseIterable):
        return _candidate_aliases(target.queryset, None)
    elif isinstance(target, type) and hasattr(target, "_meta"):  # a model class
        model, hints, fixed = target, {}, None
    else:
        return set()
    if fixed:
        return {fixed}
    return {router.db_for_read(model, **hints), router.db_for_write(model, **hints)}


def every_alias_native() -> bool:
    """Whether every configured database alias uses an aorm backend."""
    return len(native_aliases()) == len(connections.settings)


def is_native(target: Any, using: Any = None) -> bool:
    """Whether an ORM call on ``target`` runs through the bridge."""
    native = native_aliases()
    if not native:
        return False
    if len(native) == len(connections.settings) and not isinstance(using, str):
        return True
    aliases = _candidate_aliases(target, using)
    return bool(aliases) and aliases <= native


def _orm(target: Any, using: Any) -> bool:
    return is_native(target, using)


def _database_sessions(target: Any, using: Any) -> bool:
    """Sessions kept in the database (``db``, ``cached_db``); others do file or cache I/O."""
    from django.contrib.sessions.backends.db import SessionStore

    store: Any = target if isinstance(target, type) else type(target)
    return issubclass(store, SessionStore) and is_native(store.get_model_class())


def _model_backend(target: Any, using: Any) -> bool:
    """Django's ``ModelBackend`` (users and permissions in the database); others are the user's."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.backends import ModelBackend

    return isinstance(target, ModelBackend) and is_native(get_user_model())


def _database_cache(target: Any, using: Any) -> bool:
    """``DatabaseCache``; the other cache backends do their own (blocking) I/O."""
    from django.core.cache.backends.db import BaseDatabaseCache

    return isinstance(target, BaseDatabaseCache) and is_native(target.cache_model_class)


def _session_middleware(target: Any) -> bool:
    """Django's ``SessionMiddleware`` saving a database session."""
    if not apps.is_installed("django.contrib.sessions"):
        return False
    from django.contrib.sessions.middleware import SessionMiddleware

    return isinstance(target, SessionMiddleware) and _database_sessions(target.SessionStore, None)


# Django's own middleware whose hooks do no blocking I/O of their own: what they
# reach is the database (sessions, users, sites, flatpages, redirects) and the
# request's body, which an async view parses on the loop too. Exact classes: a
# subclass is the user's code. Left to threads: the cache middleware (the cache's
# own I/O) and BrokenLinkEmailsMiddleware (mail).
DJANGOS_MIDDLEWARE = frozenset(
    {
        "django.middleware.security.SecurityMiddleware",
        "django.middleware.common.CommonMiddleware",
        "django.middleware.csrf.CsrfViewMiddleware",
        "django.middleware.csp.ContentSecurityPolicyMiddleware",  # Django 6
        "django.middleware.clickjacking.XFrameOptionsMiddleware",
        "django.middleware.gzip.GZipMiddleware",
        "django.middleware.http.ConditionalGetMiddleware",
        "django.middleware.locale.LocaleMiddleware",
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "django.contrib.auth.middleware.LoginRequiredMiddleware",
        "django.contrib.messages.middleware.MessageMiddleware",
        "django.contrib.sites.middleware.CurrentSiteMiddleware",
        "django.contrib.flatpages.middleware.FlatpageFallbackMiddleware",
        "django.contrib.redirects.middleware.RedirectFallbackMiddleware",
        "django.contrib.admindocs.middleware.XViewMiddleware",
    }
)


# Django's other middleware classes, and why their hooks are not listed above (a
# test fails on a Django version that adds a class to neither).
OTHER_DJANGO_MIDDLEWARE: dict[str, str] = {
    "django.contrib.sessions.middleware.SessionMiddleware": "routed if its store is the database",
    "django.middleware.cache.UpdateCacheMiddleware": "the cache backend's own I/O",
    "django.middleware.cache.FetchFromCacheMiddleware": "the cache backend's own I/O",
    "django.middleware.cache.CacheMiddleware": "the cache backend's own I/O",
    "django.middleware.common.BrokenLinkEmailsMiddleware": "sends mail",
    "django.contrib.auth.middleware.RemoteUserMiddleware": "async in Django (aauthenticate)",
    "django.contrib.auth.middleware.PersistentRemoteUserMiddleware": "async, as its parent",
}


def _sessions_in_database() -> bool:
    """No sessions app, or sessions kept in the database on aorm aliases."""
    if not apps.is_installed("django.contrib.sessions"):
        return True
    return _database_sessions(importlib.import_module(settings.SESSION_ENGINE).SessionStore, None)


def _djangos_middleware(target: Any, using: Any) -> bool:
    """A hook of :data:`DJANGOS_MIDDLEWARE` (what may reach the session: its store too) when
    every alias is aorm's; ``SessionMiddleware`` saving a database session."""
    cls = type(target)
    if f"{cls.__module__}.{cls.__qualname__}" in DJANGOS_MIDDLEWARE:
        return every_alias_native() and _sessions_in_database()
    return _session_middleware(target)


def _response_close(target: Any, using: Any) -> bool:
    """``response.close()`` (resource closers, then ``request_finished``'s sync receivers), as
    ``Signal.asend()``'s sync receivers; an upload spooled to disk is still written in a thread."""
    from django.http import HttpResponseBase

    return isinstance(target, HttpResponseBase) and every_alias_native()


def _every_alias(target: Any, using: Any) -> bool:
    """Code whose database aliases cannot be known in advance: native when all are aorm's."""
    return every_alias_native()


# Django modules whose async functions hand database work to ``sync_to_async``,
# with the test that decides, per call, whether it runs in the bridge. The
# target is the bound method's object, or the first argument; the alias is the
# ``using`` argument, or the one a closure captured.
ROUTED: dict[str, Callable[[Any, Any], bool]] = {
    "django.db.models.query": _orm,
    "django.db.models.base": _orm,
    "django.db.models.fields.related_descriptors": _orm,
    "django.contrib.contenttypes.fields": _orm,
    "django.core.paginator": _orm,  # list(object_list)
    "django.contrib.sessions.backends.base": _database_sessions,
    "django.contrib.sessions.backends.db": _orm,  # asave()'s atomic block: captures `using`
    "django.contrib.auth.backends": _model_backend,
    "django.core.cache.backends.base": _database_cache,
    "django.dispatch.dispatcher": _every_alias,  # Signal.asend()'s sync receivers
    "django.utils.deprecation": _djangos_middleware,  # MiddlewareMixin's sync hooks
    "django.core.handlers.base": _djangos_middleware,  # process_view, process_exception...
    "django.core.handlers.asgi": _response_close,  # each request's end: no thread started
}

# The other Django modules that call ``sync_to_async``: what they run is not
# database work, or is the user's own code that may block the loop. Left to
# threads, as in Django (inside an async transaction, see ``_sync_to_async``).
THREADED: dict[str, str] = {
    "django.contrib.auth": "hashing a password for a missing user: CPU-bound, off the loop",
    "django.contrib.auth.hashers": "password hashing: CPU-bound, off the loop on purpose",
    "django.contrib.auth.decorators": "user_passes_test's test function: the user's code",
    "django.contrib.auth.middleware": "a sync middleware's process_request",
    "django.contrib.staticfiles.handlers": "serving static files",
    "django.core.handlers.exception": "sync exception handlers",
    "django.http.response": "a streaming response's sync iterator",
    "django.test.client": "closing responses",
    "django.utils.asyncio": "named in the async-unsafe guard's message only",
    "django.tasks.base": "a task's sync function: the user's code",
    "django.tasks.backends.base": "task backends' enqueue: the backend's own I/O",
}

_APP_OF = {  # routed modules that exist only with their app installed
    "django.contrib.contenttypes.fields": "django.contrib.contenttypes",
    "django.contrib.sessions.backends.base": "django.contrib.sessions",
    "django.contrib.sessions.backends.db": "django.contrib.sessions",
    "django.contrib.auth.backends": "django.contrib.auth",
}


def _captured_using(func: Callable[..., Any]) -> Any:
    """The alias a closure captured as ``using`` (Django's inner functions do), or None."""
    code = getattr(func, "__code__", None)
    if code is None or "using" not in code.co_freevars:
        return None
    return func.__closure__[code.co_freevars.index("using")].cell_contents  # type: ignore[index]


def _router(native: Callable[[Any, Any], bool]) -> Callable[..., Any]:
    """A stand-in for asgiref's ``sync_to_async``: what ``native`` accepts runs in the bridge."""

    def route(
        func: Callable[..., Any], *, thread_sensitive: bool = True, executor: Any = None
    ) -> Callable[..., Coroutine[Any, Any, Any]]:
        async def call(*args: Any, **kwargs: Any) -> Any:
            target = getattr(func, "__self__", None)
            if target is None and args:
                target = args[0]
            if native(target, kwargs.get("using") or _captured_using(func)):
                return await _operation.run(func, *args, **kwargs)
            threaded = _threaded(func, thread_sensitive=thread_sensitive, executor=executor)
            return await threaded(*args, **kwargs)

        return call

    return route


_routers = {test: _router(test) for test in set(ROUTED.values())}
route = _routers[_orm]


def router_for(module: str) -> Callable[..., Any]:
    """The ``sync_to_async`` stand-in installed in ``module`` (one of :data:`ROUTED`)."""
    return _routers[ROUTED[module]]


def routed_modules() -> list[str]:
    """The modules of :data:`ROUTED` that this Django version has, uses and has installed."""
    names = []
    for name in ROUTED:
        app = _APP_OF.get(name)
        if app is not None and not apps.is_installed(app):
            continue
        if importlib.util.find_spec(name) is None:
            continue
        if hasattr(importlib.import_module(name), "sync_to_async"):  # else nothing to route
            names.append(name)
    return names


class ReceiversInTheirBlocks:
    """Django 6's ``_run_parallel``, each async receiver inside the sender's atomic blocks.

    Django 6 runs async receivers as concurrent tasks sharing one Context (so
    that what they set reaches the sender), where one receiver's
    ``async with atomic()`` would become its siblings' too. aorm keeps that
    state per task (``aorm._operation``); each receiver starts in the blocks the
    sender is in, whatever a sibling opens meanwhile.
    """

    def __init__(self, run_parallel: Callable[..., Coroutine[Any, Any, list[Any]]]) -> None:
        self.run_parallel = run_parallel

    async def __call__(self, *coroutines: Coroutine[Any, Any, Any]) -> list[Any]:
        blocks = _blocks.own_blocks()
        with _blocks.blocks_kept():
            return await self.run_parallel(*(_blocks.in_blocks_of(blocks, c) for c in coroutines))


_django_async_to_sync_call = AsyncToSync.__call__


def async_to_sync_call(self: AsyncToSync[Any, Any], *args: Any, **kwargs: Any) -> Any:
    if bridge.in_bridge():
        return _operation.await_(self.awaitable(*args, **kwargs))
    return _django_async_to_sync_call(self, *args, **kwargs)


_django_sync_to_async_call = SyncToAsync.__call__


async def sync_to_async_call(self: SyncToAsync[Any, Any], *args: Any, **kwargs: Any) -> Any:
    """Thread-sensitive sync code called inside an async transaction takes part in it."""
    if self._thread_sensitive and _blocks.in_async_transaction() and every_alias_native():
        return await _operation.run(self.func, *args, **kwargs)
    return await _django_sync_to_async_call(self, *args, **kwargs)
