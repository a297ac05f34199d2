"""Every path from async code into the database follows aorm's rules.

Signal receivers started inside an operation, Django's sessions and auth,
``Signal.asend`` with sync receivers, a user's ``sync_to_async`` and
``on_commit``: outside a transaction each gets connections of its own, inside
``async with transaction.atomic()`` each takes part in the transaction, and no
statement on an aorm alias runs off the loop's thread. Where a scenario runs
on the ``stock`` alias too, aorm's rows must equal stock Django's.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import importlib
import inspect
import json
import threading
import types
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import django
import django.middleware.common
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.core.signals import request_finished
from django.db import connections, transaction
from django.db.models.signals import post_delete, post_save
from django.db.transaction import TransactionManagementError
from django.dispatch import Signal
from django.test import AsyncClient, override_settings
from students.models import Student
from support import example

import aorm
from aorm import _sync_to_async
from tests.app.models import Author, Event
from tests.conftest import ALL_DATABASES, SqlLog

pytestmark = ALL_DATABASES

ALIASES = ["default", "stock"]


class Boom(Exception):
    pass


@pytest.fixture
def all_aliases_aorm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Treat the configuration as all-aorm, as a project with only aorm aliases is.

    The suite keeps Django's own backend configured as a reference alias
    (``stock``); code whose aliases cannot be known in advance (sync signal
    receivers, a user's ``sync_to_async``) runs in the bridge only when every
    alias is aorm's. Tests using this fixture touch aorm aliases only.
    """
    assert not _sync_to_async.every_alias_native()  # the suite's own settings
    monkeypatch.setattr(_sync_to_async, "every_alias_native", lambda: True)


@pytest.fixture
def receivers() -> Iterator[Callable[..., None]]:
    """Connect async receivers that write and read ``Event`` rows; disconnected afterwards."""
    connected: list[tuple[Signal, Any]] = []

    def connect(signal: Signal, count: int, sender: Any = Author) -> None:
        for number in range(count):

            async def receiver(sender: Any, number: int = number, **kwargs: Any) -> int:
                alias = kwargs.get("using") or kwargs.get("alias", "default")
                await Event.objects.using(alias).acreate(kind=f"r{number}")
                return await Event.objects.using(alias).acount()

            signal.connect(receiver, sender=sender, weak=False)
            connected.append((signal, receiver))

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver, sender=Author)


async def rows(alias: str) -> tuple[list[str], list[str]]:
    """The authors and the events on ``alias``, then both tables emptied for the next run."""
    authors = [a async for a in Author.objects.using(alias).values_list("name", flat=True)]
    events = sorted([e async for e in Event.objects.using(alias).values_list("kind", flat=True)])
    await Event.objects.using(alias).all().adelete()
    await Author.objects.using(alias).all().adelete()
    return authors, events


async def on_both(scenario: Callable[[str], Awaitable[object]]) -> tuple[Any, Any]:
    """Run ``scenario`` on aorm's alias, then on Django's; the rows each left behind.

    Where Django's own backend fails the scenario, its error stands for its rows.
    """
    with contextlib.suppress(Boom):
        await scenario("default")
    aorm_rows = await rows("default")
    try:
        await scenario("stock")
    except Boom:
        pass
    except Exception as error:
        await rows("stock")
        return aorm_rows, error
    return aorm_rows, await rows("stock")


def on_loop_thread(sql_log: SqlLog, alias: str = "default") -> bool:
    threads = {thread for a, _, thread in sql_log.statements if a == alias}
    return threads == {threading.get_ident()}


@pytest.mark.parametrize("count", [2, 5])
@pytest.mark.parametrize("where", ["autocommit", "atomic", "rolled back"])
@pytest.mark.parametrize("how", ["asave", "acreate", "adelete", "asend"])
async def test_async_receivers_that_query(
    receivers: Callable[..., None], sql_log: SqlLog, count: int, where: str, how: str
) -> None:
    custom = Signal()
    signal = {"adelete": post_delete, "asend": custom}.get(how, post_save)
    receivers(signal, count)

    async def scenario(alias: str) -> None:
        async def operation() -> None:
            if how == "asave":
                await Author(name="ann").asave(using=alias)
            elif how == "acreate":
                await Author.objects.using(alias).acreate(name="ann")
            elif how == "adelete":
                author = await Author.objects.using(alias).acreate(name="ann")
                await author.adelete(using=alias)
            else:
                responses = await custom.asend(sender=Author, alias=alias)
                assert sorted(count for _, count in responses)[-1] == count

        if where == "autocommit":
            await operation()
            return
        async with transaction.atomic(using=alias):
            await operation()
            if where == "rolled back":
                raise Boom

    sql_log.clear()
    aorm_rows, stock_rows = await on_both(scenario)
    if how == "asend" and django.VERSION >= (6,):
        # Django 6 runs async receivers in one shared context, where their
        # thread-sensitive sync_to_async calls collide; aorm's run natively.
        assert isinstance(stock_rows, RuntimeError | ExceptionGroup), stock_rows
        assert "would deadlock" in repr(stock_rows)
    else:
        assert aorm_rows == stock_rows
    expected_authors = [] if how in ("adelete", "asend") else ["ann"]
    expected_events = sorted(f"r{n}" for n in range(count))
    if where == "rolled back":
        expected_authors, expected_events = [], []
    assert aorm_rows == (expected_authors, expected_events)
    assert on_loop_thread(sql_log)


async def test_a_task_started_inside_an_operation_borrows_its_own_connection() -> None:
    """Outside a transaction, async receivers run at once, each on a connection of its own."""
    both_here = asyncio.Event()
    held: list[int] = []

    async def meet() -> None:
        if len(held) == 2:
            both_here.set()
        await asyncio.wait_for(both_here.wait(), 10)

    def hold_a_connection() -> int:
        wrapper = connections["default"]
        wrapper.ensure_connection()
        held.append(id(wrapper.connection))
        async_to_sync(meet)()  # still holding it while the other receiver holds its own
        Event.objects.create(kind="held")
        return id(wrapper.connection)

    async def receiver(sender: Any, **kwargs: Any) -> None:
        assert await aorm.run(hold_a_connection) in held

    post_save.connect(receiver, sender=Author, weak=False, dispatch_uid="first")
    post_save.connect(receiver, sender=Author, weak=False, dispatch_uid="second")
    try:
        await Author.objects.acreate(name="ann")
    finally:
        post_save.disconnect(sender=Author, dispatch_uid="first")
        post_save.disconnect(sender=Author, dispatch_uid="second")
    assert len(set(held)) == 2
    assert await Event.objects.acount() == 2


async def test_concurrent_receivers_with_transactions_of_their_own() -> None:
    """Each receiver's block is its own (Django 6 runs receivers in one shared context).

    Both are inside their blocks at once, then write. On SQLite a block holds
    the file's single write turn from its start, so the second waits for the
    first to end instead of meeting it.
    """
    both_inside = asyncio.Barrier(1 if settings.DATABASE == "sqlite" else 2)

    async def committing(sender: Any, **kwargs: Any) -> None:
        async with transaction.atomic():
            await asyncio.wait_for(both_inside.wait(), 10)
            await Event.objects.acreate(kind="kept")

    async def failing(sender: Any, **kwargs: Any) -> None:
        with contextlib.suppress(Boom):
            async with transaction.atomic():
                await asyncio.wait_for(both_inside.wait(), 10)
                await Event.objects.acreate(kind="lost")
                raise Boom

    for uid, receiver in (("kept", committing), ("lost", failing)):
        post_save.connect(receiver, sender=Author, weak=False, dispatch_uid=uid)
    try:
        await Author.objects.acreate(name="ann")
    finally:
        for uid in ("kept", "lost"):
            post_save.disconnect(sender=Author, dispatch_uid=uid)
    assert await rows("default") == (["ann"], ["kept"])


async def test_a_sync_atomic_block_is_lent_to_the_tasks_it_starts(
    receivers: Callable[..., None], sql_log: SqlLog
) -> None:
    """A sync receiver's ``async_to_sync`` inside ``aorm.run``'s atomic block: one transaction."""
    receivers(post_save, 3)

    def save_then_fail() -> None:
        with transaction.atomic():
            Author.objects.create(name="ann")
            assert Event.objects.count() == 3  # the receivers' rows, in this transaction
            raise Boom

    sql_log.clear()
    with pytest.raises(Boom):
        await aorm.run(save_then_fail)
    assert await rows("default") == ([], [])
    assert on_loop_thread(sql_log)


async def test_gather_in_code_awaited_from_an_operation(sql_log: SqlLog) -> None:
    """``async_to_sync`` in synchronous ORM code, on code that gathers ORM calls."""

    async def many() -> list[int]:
        await asyncio.gather(*(Event.objects.acreate(kind=f"e{n}") for n in range(4)))
        return await asyncio.gather(*(Event.objects.acount() for _ in range(4)))

    def sync_code() -> list[int]:
        Author.objects.create(name=f"ann{Author.objects.count()}")
        return async_to_sync(many)()

    sql_log.clear()
    assert await aorm.run(sync_code) == [4, 4, 4, 4]
    async with transaction.atomic():
        assert await aorm.run(sync_code) == [8, 8, 8, 8]
    with pytest.raises(Boom):
        async with transaction.atomic():
            await aorm.run(sync_code)
            raise Boom
    authors, events = await rows("default")
    assert len(authors) == 2 and len(events) == 8
    assert on_loop_thread(sql_log)


async def test_a_task_outliving_its_block_cannot_use_it() -> None:
    """A task started inside a block and still running after it gets the documented error."""
    started = asyncio.Event()
    release = asyncio.Event()

    async def late() -> None:
        started.set()
        await release.wait()
        await Event.objects.acreate(kind="late")

    async with transaction.atomic():
        task = asyncio.create_task(late())
        await started.wait()
    release.set()
    with pytest.raises(TransactionManagementError, match="already ended"):
        await task
    assert await Event.objects.acount() == 0


def record_sync(sender: Any, **kwargs: Any) -> None:
    Event.objects.create(kind="sync")


@pytest.mark.parametrize("robust", [False, True])
async def test_asend_with_sync_receivers_runs_them_in_the_transaction(
    all_aliases_aorm: None, sql_log: SqlLog, robust: bool
) -> None:
    signal = Signal()
    signal.connect(record_sync, sender=Author)
    send = signal.asend_robust if robust else signal.asend
    sql_log.clear()
    await send(sender=Author)
    with pytest.raises(Boom):
        async with transaction.atomic():
            await send(sender=Author)
            assert await Event.objects.acount() == 2
            raise Boom
    assert await rows("default") == ([], ["sync"])
    assert on_loop_thread(sql_log)


async def test_sync_to_async_inside_a_transaction_takes_part_in_it(
    all_aliases_aorm: None, sql_log: SqlLog
) -> None:
    def create_event() -> int:
        Event.objects.create(kind="helper")
        return Event.objects.count()

    sql_log.clear()
    with pytest.raises(Boom):
        async with transaction.atomic():
            assert await sync_to_async(create_event)() == 1
            raise Boom
    assert await Event.objects.acount() == 0
    assert on_loop_thread(sql_log)


async def test_sync_to_async_outside_a_transaction_keeps_django_behaviour() -> None:
    """Outside a transaction a user's ``sync_to_async`` still runs in a thread, as in Django."""

    def create_event() -> int:
        Event.objects.create(kind="helper")
        return threading.get_ident()

    assert await sync_to_async(create_event)() != threading.get_ident()
    assert await Event.objects.acount() == 1


async def test_a_thread_reaching_the_transaction_alias_is_refused() -> None:
    """Where the code cannot run in the bridge, it never writes outside the transaction."""

    def create_event() -> None:
        Event.objects.create(kind="helper")

    signal = Signal()
    signal.connect(record_sync, sender=Author)
    for call in (sync_to_async(create_event), lambda: signal.asend(sender=Author)):
        with pytest.raises(TransactionManagementError, match=r"aorm\.run"):
            async with transaction.atomic():
                await call()
    async with transaction.atomic():  # the documented way
        await aorm.run(create_event)
    assert await rows("default") == ([], ["helper"])


async def _asgi_get(path: str, cookie: bytes = b"") -> tuple[int, bytes, list[bytes]]:
    """One GET through Django's own ASGI handler, in this task, as a server would send it."""
    from django.core.handlers.asgi import ASGIHandler

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"testserver"), *([(b"cookie", cookie)] if cookie else [])],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    disconnected = asyncio.Event()

    async def receive() -> dict[str, Any]:
        if scope.pop("body_sent", None) is None:
            scope["body_sent"] = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnected.wait()  # the client stays until the response is sent
        return {"type": "http.disconnect"}

    status, body, cookies = 0, b"", []

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, body
        if message["type"] == "http.response.start":
            status = message["status"]
            cookies.extend(
                v.split(b";")[0] for k, v in message["headers"] if k.lower() == b"set-cookie"
            )
        else:
            body += message.get("body", b"")

    await ASGIHandler()(scope, receive, send)
    disconnected.set()
    return status, body, cookies


@contextlib.contextmanager
def threads_started(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """The names of the threads started while the block runs, but SQLite's I/O threads
    (one per connection opened: the documented exception)."""
    started: list[str] = []
    start = threading.Thread.start

    def recording_start(thread: threading.Thread) -> None:
        if not thread.name.startswith("aorm-sqlite3["):
            started.append(thread.name)
        start(thread)

    with monkeypatch.context() as patch:
        patch.setattr(threading.Thread, "start", recording_start)
        yield started


async def test_a_request_through_djangos_asgi_handler_starts_no_thread(
    all_aliases_aorm: None, sql_log: SqlLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Django's ASGI handler ends each request with ``sync_to_async(response.close)``, whose
    ``request_finished`` sync receivers (``close_old_connections``...) aorm runs on the
    loop: a request whose middleware and view are async starts no thread at all."""
    finished_on: list[int] = []

    def finished(sender: Any, **kwargs: Any) -> None:
        finished_on.append(threading.get_ident())

    await Student.objects.acreate(name="listed", age=20)
    request_finished.connect(finished)
    sql_log.clear()
    try:
        with override_settings(MIDDLEWARE=[]), threads_started(monkeypatch) as started:
            status, body, _ = await _asgi_get("/students/")
    finally:
        request_finished.disconnect(finished)
    assert (status, json.loads(body)) == (200, [{"name": "listed", "age": 20}])
    assert started == []
    assert finished_on == [threading.get_ident()]
    assert sql_log.statements and on_loop_thread(sql_log)
    await Student.objects.all().adelete()


class OwnMiddleware(django.middleware.common.CommonMiddleware):
    """A project's own middleware: any code, so it runs in a thread as in Django."""


async def test_djangos_own_middleware_runs_on_the_loop(
    all_aliases_aorm: None, sql_log: SqlLog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The middleware ``startproject`` writes (``MiddlewareMixin``: each hook through
    ``sync_to_async``) runs in the bridge when every alias is aorm's and sessions are in
    the database: a session's requests start no thread; a project's own middleware does."""
    sql_log.clear()
    project = override_settings(MIDDLEWARE=example.STARTPROJECT_MIDDLEWARE)
    with project, threads_started(monkeypatch) as started:
        status, body, cookies = await _asgi_get("/session/visit/")
        assert (status, json.loads(body)) == (200, {"user": "", "visits": 1})
        status, body, _ = await _asgi_get("/session/visit/", cookie=b"; ".join(cookies))
        assert (status, json.loads(body)) == (200, {"user": "", "visits": 2})
    assert started == []
    assert "django_session" in " ".join(sql for _, sql, _ in sql_log.statements)
    assert on_loop_thread(sql_log)
    own = [*example.STARTPROJECT_MIDDLEWARE, f"{__name__}.OwnMiddleware"]
    with override_settings(MIDDLEWARE=own), threads_started(monkeypatch) as started:
        assert (await _asgi_get("/session/visit/"))[0] == 200
    assert started  # the request's thread for OwnMiddleware's hooks


async def test_sessions_natively_and_inside_a_transaction(sql_log: SqlLog) -> None:
    sql_log.clear()
    session = SessionStore()
    await session.aset("k", "v")
    await session.asave()
    key = session.session_key
    assert key is not None
    assert await SessionStore().aexists(key)
    loaded = SessionStore(key)
    assert await loaded.aget("k") == "v"
    await loaded.acycle_key()
    assert not await SessionStore().aexists(key)
    await loaded.adelete()
    assert await Session.objects.acount() == 0
    with pytest.raises(Boom):
        async with transaction.atomic():
            rolled_back = SessionStore()
            await rolled_back.aset("k", "v")
            await rolled_back.asave()
            raise Boom
    assert await Session.objects.acount() == 0
    assert on_loop_thread(sql_log)


async def test_login_session_and_logout_through_the_async_client(
    all_aliases_aorm: None, sql_log: SqlLog
) -> None:
    """``alogin`` sends ``user_logged_in`` with a sync receiver (``update_last_login``)."""
    await sync_to_async(get_user_model().objects.db_manager("stock").create_user)(
        "ann", password="secret"
    )
    client = AsyncClient()
    sql_log.clear()
    bad = await client.post(
        "/session/login/", json.dumps({"username": "ann", "password": "nope"}), "application/json"
    )
    assert bad.status_code == 403
    response = await client.post(
        "/session/login/",
        json.dumps({"username": "ann", "password": "secret"}),
        "application/json",
    )
    assert response.json() == {"user": "ann"}
    for visits in (1, 2):
        response = await client.get("/session/visit/")
        assert response.json() == {"user": "ann", "visits": visits}
    assert (await client.post("/session/logout/")).json() == {"user": None}
    response = await client.get("/session/visit/")
    assert response.json() == {"user": "", "visits": 1}  # AnonymousUser, a new session
    assert on_loop_thread(sql_log)
    statements = " ".join(sql for _, sql, _ in sql_log.statements)
    assert "django_session" in statements and "auth_user" in statements


async def test_auth_functions_natively(sql_log: SqlLog) -> None:
    from django.contrib.auth import aauthenticate

    user_model = get_user_model()
    sql_log.clear()
    user = await user_model.objects.acreate_user("bob", password="pw")
    assert await user.acheck_password("pw")
    assert await aauthenticate(username="bob", password="pw") == user
    assert await aauthenticate(username="bob", password="no") is None
    assert not await user.ahas_perm("app.add_author")
    assert on_loop_thread(sql_log)


async def test_database_cache_natively(sql_log: SqlLog) -> None:
    from django.core.cache.backends.db import DatabaseCache
    from django.core.management import call_command

    await sync_to_async(call_command)("createcachetable", "aorm_cache", database="stock")
    cache = DatabaseCache("aorm_cache", {})
    sql_log.clear()
    await cache.aset("k", "v")
    assert await cache.aget("k") == "v"
    assert await cache.adelete("k")
    assert on_loop_thread(sql_log)

    def drop() -> None:
        with connections["stock"].cursor() as cursor:
            cursor.execute("DROP TABLE aorm_cache")

    await sync_to_async(drop)()


# on_commit from async code


async def test_on_commit_outside_a_transaction_runs_at_once() -> None:
    calls: list[str] = []
    transaction.on_commit(lambda: calls.append("sync"))
    assert calls == ["sync"]

    done = asyncio.Event()

    async def coroutine_callback() -> None:
        await Event.objects.acreate(kind="scheduled")
        done.set()

    transaction.on_commit(coroutine_callback)  # scheduled as a task, as documented
    await asyncio.wait_for(done.wait(), 10)

    async def awaited() -> None:
        await Event.objects.acreate(kind="awaited")

    await aorm.aon_commit(awaited)  # awaited before returning
    assert sorted([e async for e in Event.objects.values_list("kind", flat=True)]) == [
        "awaited",
        "scheduled",
    ]


async def test_on_commit_inside_a_transaction_waits_for_the_commit() -> None:
    calls: list[str] = []

    async def coroutine_callback() -> None:
        calls.append(f"async:{await Event.objects.acount()}")

    async with transaction.atomic():
        await Event.objects.acreate(kind="e")
        transaction.on_commit(lambda: calls.append("sync"))
        transaction.on_commit(coroutine_callback)
        await aorm.aon_commit(lambda: calls.append("aon"))
        assert calls == []
    assert calls == ["sync", "async:1", "aon"]
    with pytest.raises(Boom):
        async with transaction.atomic():
            await aorm.aon_commit(coroutine_callback)
            raise Boom
    assert calls == ["sync", "async:1", "aon"]


async def test_aon_commit_robust_logs_instead_of_raising(caplog: pytest.LogCaptureFixture) -> None:
    async def failing() -> None:
        raise Boom

    with pytest.raises(Boom):
        await aorm.aon_commit(failing)
    await aorm.aon_commit(failing, robust=True)
    assert "Error calling" in caplog.text
    with pytest.raises(TypeError):
        await aorm.aon_commit("not callable")  # type: ignore[arg-type]


# The census: every Django module that hands work to sync_to_async is accounted for.


def django_modules_calling_sync_to_async() -> set[str]:
    """Found in the installed Django's source, so that a new version's additions show up."""
    import django

    root = Path(django.__file__).parent
    found = set()
    for path in root.rglob("*.py"):
        if "sync_to_async" in path.read_text(encoding="utf-8"):
            parts = path.relative_to(root.parent).with_suffix("").parts
            found.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return found


def test_every_module_using_sync_to_async_is_routed_or_declared_threaded() -> None:
    found = django_modules_calling_sync_to_async()
    unaccounted = found - set(_sync_to_async.ROUTED) - set(_sync_to_async.THREADED)
    assert not unaccounted, f"classify in aorm._sync_to_async (ROUTED or THREADED): {unaccounted}"
    assert not set(_sync_to_async.ROUTED) & set(_sync_to_async.THREADED)


def test_every_middleware_class_of_django_is_listed() -> None:
    """Django's middleware classes (found in its source, whatever is installed) are each
    either run on the loop (``DJANGOS_MIDDLEWARE``) or declared with the reason not to."""
    root = Path(django.__file__).parent
    found = set()
    for path in [*root.glob("middleware/*.py"), *root.glob("contrib/*/middleware.py")]:
        module = ".".join(path.relative_to(root.parent).with_suffix("").parts)
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name.endswith("Middleware"):
                found.add(f"{module}.{node.name}")
    listed, other = _sync_to_async.DJANGOS_MIDDLEWARE, set(_sync_to_async.OTHER_DJANGO_MIDDLEWARE)
    assert "django.middleware.csrf.CsrfViewMiddleware" in found
    assert found - listed - other == set(), "classify in aorm._sync_to_async"
    assert not listed & other


def test_every_async_function_of_a_routed_module_goes_through_the_router() -> None:
    """Introspection: async functions whose code calls ``sync_to_async`` see aorm's router."""
    checked = 0
    for name in _sync_to_async.routed_modules():
        module = importlib.import_module(name)
        assert module.sync_to_async in _sync_to_async._routers.values(), name
        for function in async_functions(module):
            names = set(function.__code__.co_names)
            for const in function.__code__.co_consts:  # nested closures (asend's sync_send)
                if isinstance(const, types.CodeType):
                    names |= set(const.co_names)
            if "sync_to_async" in names:
                assert function.__globals__["sync_to_async"] is module.sync_to_async
                checked += 1
    assert checked >= 20  # aget, acreate, asave, aload, aauthenticate, asend...


def async_functions(module: types.ModuleType) -> Iterator[types.FunctionType]:
    for value in vars(module).values():
        members = vars(value).values() if isinstance(value, type) else [value]
        for member in members:
            function = getattr(member, "__func__", member)
            if (
                isinstance(function, types.FunctionType)
                and inspect.iscoroutinefunction(function)
                and function.__module__ == module.__name__
            ):
                yield function
