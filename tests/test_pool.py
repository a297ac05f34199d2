"""aorm's async pool, as every backend uses it (aorm._pool, aorm.backends.pooling).

Connections are borrowed per operation and held by transactions; an alias
without a pool option pools with the documented defaults, ``"pool": False``
opens a connection per operation; idle connections expire; waiters are
served in order, and a cancelled or timed-out waiter loses nothing.

The ``defaults`` alias sets no ``OPTIONS["pool"]`` (and ``CONN_MAX_AGE = 60``
for its sync code), ``unpooled`` sets ``"pool": False``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import (
    OperationalError,
    close_old_connections,
    connections,
    reset_queries,
    transaction,
)
from django.db.utils import load_backend
from students.models import Student

import aorm
from aorm import _loops
from aorm._pool import DEFAULT_OPTIONS, AsyncPool, PoolTimeout, pool_key
from aorm.backends import pooling
from tests.conftest import ALL_DATABASES, postgresql_only, server_sessions
from tests.test_errors import backend_pid

pytestmark = ALL_DATABASES

POSTGRESQL = settings.DATABASE == "postgresql"
SQLITE = settings.DATABASE == "sqlite"
DEFAULT_SIZE = 8 if SQLITE else 10

# -- borrowed per operation, held by transactions


async def test_an_operation_borrows_a_connection_for_its_own_duration() -> None:
    await Student.objects.acount()
    stats = aorm.pool_stats("default")
    assert (stats.max_size, stats.in_use, stats.waiting) == (8, 0, 0)
    assert stats.idle == stats.size >= 1


async def test_a_task_awaiting_something_else_holds_no_connection() -> None:
    awaiting, go_on = asyncio.Event(), asyncio.Event()

    async def request() -> None:
        await Student.objects.acreate(name="a", age=1)
        awaiting.set()
        await go_on.wait()  # an HTTP call, say
        await Student.objects.acount()

    task = asyncio.create_task(request())
    await awaiting.wait()
    assert aorm.pool_stats().in_use == 0
    go_on.set()
    await task


async def test_a_transaction_holds_its_connection_until_it_ends() -> None:
    async with transaction.atomic():
        await Student.objects.acount()
        await asyncio.sleep(0)
        assert aorm.pool_stats().in_use == 1
    assert aorm.pool_stats().in_use == 0


def _initialized_before_and_after_a_query() -> tuple[list[str], list[str]]:
    def aliases() -> list[str]:
        return [wrapper.alias for wrapper in connections.all(initialized_only=True)]

    before = aliases()
    Student.objects.count()
    return before, aliases()


async def test_request_signal_receivers_borrow_no_connection() -> None:
    """``close_old_connections`` and ``reset_queries``, receivers of every request's
    ``request_started`` and ``request_finished``, walk ``connections.all(initialized_only=True)``:
    an operation's own wrappers, not a parked connection borrowed to be asked."""
    before, after = await aorm.run(_initialized_before_and_after_a_query)
    assert "default" not in before and "default" in after
    size = aorm.pool_stats("default").max_size
    held, release = asyncio.Event(), asyncio.Event()
    holders: list[None] = []

    await Student.objects.abulk_create([Student(name="a", age=1), Student(name="b", age=2)])

    async def hold() -> None:  # an open aiterator() keeps its connection (SQLite: no write turn)
        async for _ in Student.objects.all().aiterator(chunk_size=1):
            holders.append(None)
            if len(holders) == size:
                held.set()
            await release.wait()

    tasks = [asyncio.create_task(hold()) for _ in range(size)]
    try:
        async with asyncio.timeout(5):
            await held.wait()
        assert aorm.pool_stats().in_use == size
        async with asyncio.timeout(5):  # a borrow would wait out the pool's 10 s
            await aorm.run(close_old_connections)
            await aorm.run(reset_queries)
        assert aorm.pool_stats().waiting == 0
    finally:
        release.set()
        await asyncio.gather(*tasks)


@postgresql_only("pg_sleep")
async def test_concurrent_operations_use_separate_connections() -> None:
    def slow() -> None:
        from django.db import connection

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_sleep(1)")

    tasks = [asyncio.create_task(aorm.run(slow)) for _ in range(4)]
    async with asyncio.timeout(0.9):  # all four at once, before the first sleep ends
        while aorm.pool_stats().in_use < 4:
            await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    assert aorm.pool_stats().in_use == 0


async def test_unpooled_alias_reports_no_pool() -> None:
    await Student.objects.using("unpooled").acount()
    assert aorm.pool_stats("unpooled") == aorm.PoolStats("unpooled", 0, 0, 0, 0, 0)


# -- defaults and pool=False


def async_pool(alias: str) -> AsyncPool[Any]:
    """The AsyncPool of ``alias`` on the running loop."""
    pool = _loops.for_running_loop().find(pool_key(alias)).pool
    assert isinstance(pool, AsyncPool)
    return pool


async def test_an_alias_without_a_pool_option_pools_with_the_documented_defaults() -> None:
    await Student.objects.using("defaults").acount()
    stats = aorm.pool_stats("defaults")
    assert (stats.max_size, stats.size, stats.idle, stats.in_use) == (DEFAULT_SIZE, 1, 1, 0)
    pool = async_pool("defaults")
    assert (pool.min_size, pool.max_idle) == (DEFAULT_OPTIONS["min_size"], 60.0)


async def test_the_default_pool_lends_per_operation_up_to_its_size_under_gather() -> None:
    gate = asyncio.Event()
    extra = 5

    def hold() -> None:
        with connections["defaults"].cursor() as cursor:
            cursor.execute("SELECT 1")
        aorm.await_(gate.wait())  # the operation, and its connection, stay busy

    tasks = [asyncio.create_task(aorm.run(hold)) for _ in range(DEFAULT_SIZE + extra)]
    async with asyncio.timeout(10):
        while aorm.pool_stats("defaults").waiting < extra:
            await asyncio.sleep(0.005)
    stats = aorm.pool_stats("defaults")
    assert (stats.size, stats.in_use, stats.waiting) == (DEFAULT_SIZE, DEFAULT_SIZE, extra)
    gate.set()
    await asyncio.gather(*tasks)
    stats = aorm.pool_stats("defaults")
    assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (
        DEFAULT_SIZE,
        DEFAULT_SIZE,
        0,
        0,
    )

    # ORM operations: each borrows for its own duration, never more than the pool holds.
    counts = await asyncio.gather(
        *(Student.objects.using("defaults").acount() for _ in range(3 * DEFAULT_SIZE))
    )
    assert counts == [0] * (3 * DEFAULT_SIZE)
    assert aorm.pool_stats("defaults").size <= DEFAULT_SIZE
    assert aorm.pool_stats("defaults").in_use == 0


async def test_a_task_between_operations_holds_no_default_pooled_connection() -> None:
    awaiting, go_on = asyncio.Event(), asyncio.Event()

    async def request() -> int:
        await Student.objects.using("defaults").acreate(name="a", age=1)
        awaiting.set()
        await go_on.wait()  # an HTTP call, say
        return await Student.objects.using("defaults").acount()

    task = asyncio.create_task(request())
    await awaiting.wait()
    assert aorm.pool_stats("defaults").in_use == 0
    go_on.set()
    assert await task == 1


@postgresql_only("server sessions")
async def test_pool_false_opens_a_connection_per_operation() -> None:
    pids = [await aorm.run(backend_pid, "unpooled") for _ in range(3)]
    assert len(set(pids)) == 3
    assert aorm.pool_stats("unpooled") == aorm.PoolStats("unpooled", 0, 0, 0, 0, 0)
    async with asyncio.timeout(10):  # each was closed when its operation ended
        while await server_sessions(f"pid IN ({', '.join(map(str, pids))})"):
            await asyncio.sleep(0.01)


@postgresql_only("server sessions")
async def test_the_default_pool_reuses_its_connection() -> None:
    first = await aorm.run(backend_pid, "defaults")
    assert await aorm.run(backend_pid, "defaults") == first


def _sync_use(alias: str) -> tuple[int, Any, bool]:
    count = Student.objects.using(alias).count()
    wrapper = connections[alias]
    wrapper.close_if_unusable_or_obsolete()  # what request_finished does
    return count, getattr(wrapper, "pool", None), wrapper.connection is not None


async def test_sync_code_keeps_djangos_semantics() -> None:
    # No pool option: no pool in sync code, CONN_MAX_AGE keeps the connection.
    assert await sync_to_async(_sync_use)("defaults") == (0, None, True)
    # "pool": False reaches neither Django's pool nor the driver.
    assert await sync_to_async(_sync_use)("unpooled") == (0, None, False)


@postgresql_only("Django's pool option is PostgreSQL's")
async def test_an_explicit_pool_with_conn_max_age_is_refused_as_django_refuses_it() -> None:
    def wrapper(engine: str) -> Any:
        settings_dict = {
            **connections["default"].settings_dict,
            "ENGINE": engine,
            "CONN_MAX_AGE": 60,
            "OPTIONS": {"pool": True},
        }
        return load_backend(engine).DatabaseWrapper(settings_dict, "pool-and-max-age")

    message = "Pooling doesn't support persistent connections."
    with pytest.raises(ImproperlyConfigured, match=message):
        wrapper("django.db.backends.postgresql").pool  # noqa: B018
    aorm_wrapper = wrapper("aorm.backends.postgresql")
    with pytest.raises(ImproperlyConfigured, match=message):
        await aorm.run(lambda: aorm_wrapper.pool)


async def _new_pool(alias: str, options: dict[str, Any]) -> AsyncPool[Any]:
    """A pool built by the backend under test, for an alias of its own."""
    settings_dict = {**connections["default"].settings_dict, "OPTIONS": {"pool": options}}
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)
    if POSTGRESQL:
        pooled = await aorm.run(lambda: wrapper.pool)
    else:
        pooled = await aorm.run(lambda: wrapper._new_pool(wrapper.get_connection_params()))
    pool = pooled.pool
    assert isinstance(pool, AsyncPool)
    return pool


def _is_closed(conn: Any) -> bool:
    return not conn.io.thread.is_alive() if SQLITE else bool(conn.closed)


# -- waiters


async def _until_waiting(pool: AsyncPool[Any], count: int) -> None:
    async with asyncio.timeout(10):
        while pool.stats().waiting < count:
            await asyncio.sleep(0)


async def test_waiters_are_served_in_order_one_per_release() -> None:
    pool = await _new_pool("fifo", {"min_size": 1, "max_size": 1})
    try:
        held = await pool.acquire()
        first, second, third = (asyncio.create_task(pool.acquire()) for _ in range(3))
        await _until_waiting(pool, 3)
        await pool.release(held)
        assert await first is held
        assert not second.done() and not third.done()  # one release wakes one waiter
        assert pool.stats().waiting == 2
        await pool.release(held)
        assert await second is held
        await pool.release(held)
        assert await third is held
        await pool.release(held)
        assert (pool.stats().size, pool.stats().idle, pool.stats().waiting) == (1, 1, 0)
    finally:
        await pool.aclose()


async def test_a_cancelled_waiter_neither_loses_a_connection_nor_keeps_a_place() -> None:
    pool = await _new_pool("cancelled-waiter", {"min_size": 1, "max_size": 1})
    try:
        held = await pool.acquire()
        leaving, staying = asyncio.create_task(pool.acquire()), asyncio.create_task(pool.acquire())
        await _until_waiting(pool, 2)
        leaving.cancel()  # before its turn: it leaves the line
        with pytest.raises(asyncio.CancelledError):
            await leaving
        assert pool.stats().waiting == 1
        await pool.release(held)
        assert await staying is held

        woken = asyncio.create_task(pool.acquire())
        await _until_waiting(pool, 1)
        await pool.release(held)  # handed to `woken`...
        woken.cancel()  # ...which is cancelled before it could take it
        with pytest.raises(asyncio.CancelledError):
            await woken
        stats = pool.stats()  # the connection went back to the pool, not with the waiter
        assert (stats.size, stats.idle, stats.in_use, stats.waiting) == (1, 1, 0, 0)
        assert await pool.acquire() is held
        await pool.release(held)
    finally:
        await pool.aclose()


async def test_a_waiter_times_out_with_the_pools_state_and_leaves_the_line() -> None:
    pool = await _new_pool("timeout", {"min_size": 1, "max_size": 1, "timeout": 0.05})
    try:
        held = await pool.acquire()
        with pytest.raises(PoolTimeout, match=r"within 0.05s.*1 in use, 0 other tasks waiting"):
            await pool.acquire()
        assert pool.stats().waiting == 0
        await pool.release(held)
        assert await pool.acquire() is held
        await pool.release(held)
    finally:
        await pool.aclose()


async def test_closing_the_pool_fails_its_waiters() -> None:
    pool = await _new_pool("closed-waiters", {"min_size": 1, "max_size": 1})
    held = await pool.acquire()
    waiter = asyncio.create_task(pool.acquire())
    await _until_waiting(pool, 1)
    await pool.aclose()
    with pytest.raises(OperationalError, match="was closed"):
        await waiter
    await pool.release(held)  # closed, not kept
    assert pool.stats().size == 0
    with pytest.raises(OperationalError, match="is closed"):
        await pool.acquire()


# -- options


def test_pool_options_are_checked() -> None:
    from django.core.exceptions import ImproperlyConfigured

    from aorm._pool import AsyncPool

    async def connect() -> object:
        return object()

    async def close(_: object) -> None:
        pass

    with pytest.raises(ImproperlyConfigured, match=r"unsupported option.*num_workers"):
        AsyncPool("x", connect, close, lambda _: True, {"num_workers": 3})
    with pytest.raises(ImproperlyConfigured, match="max_size"):
        AsyncPool("x", connect, close, lambda _: True, {"min_size": 4, "max_size": 2})


# -- idle connections


async def test_idle_connections_are_closed_after_max_idle_down_to_min_size() -> None:
    max_idle = 0.3
    pool = await _new_pool("idle-expiry", {"min_size": 1, "max_size": 4, "max_idle": max_idle})
    try:
        conns = await asyncio.gather(*(pool.acquire() for _ in range(3)))
        for conn in conns:
            await pool.release(conn)
        released = time.monotonic()
        assert (pool.stats().size, pool.stats().idle) == (3, 3)
        async with asyncio.timeout(10):  # no operation runs: the pool's timer closes them
            while pool.stats().size > 1 or sum(map(_is_closed, conns)) < 2:
                await asyncio.sleep(0.01)
        assert time.monotonic() - released >= max_idle
        # The two released first are closed; the last one released is kept (min_size).
        assert [_is_closed(conn) for conn in conns] == [True, True, False]
        assert (pool.stats().size, pool.stats().idle) == (1, 1)
        assert pool._sweep_at is None  # nothing more to expire: no timer left
        # The pool works on: the kept connection first, then new ones.
        assert await pool.acquire() is conns[2]
        await pool.release(conns[2])
    finally:
        await pool.aclose()


async def test_a_connection_in_use_is_not_expired_and_min_size_zero_keeps_none() -> None:
    pool = await _new_pool("idle-reuse", {"min_size": 0, "max_size": 2, "max_idle": 0.3})
    try:
        first, second = await asyncio.gather(pool.acquire(), pool.acquire())
        await pool.release(first)
        await pool.release(second)
        async with asyncio.timeout(10):
            while not _is_closed(first):  # meanwhile `second`, the last returned, is used
                conn = await pool.acquire()
                assert conn is second
                await pool.release(conn)
                await asyncio.sleep(0.01)
        assert not _is_closed(second)
        assert pool.stats().size == 1
        async with asyncio.timeout(10):  # then idle too: min_size 0 keeps none
            while pool.stats().size or not _is_closed(second):
                await asyncio.sleep(0.01)
    finally:
        await pool.aclose()


# -- PostgreSQL: a pooled connection's socket stays watched between statements
#
# The reader stays registered with the loop after a statement; these tests
# cover what must unregister it: unexpected input on an idle connection (no
# busy loop), closing, a socket closed behind the driver's back.


def _face(alias: str) -> Any:
    """The driver connection of ``alias`` in this operation, after one statement."""
    wrapper = connections[alias]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    return wrapper.connection


@postgresql_only("psycopg's socket")
async def test_the_socket_stays_watched_between_statements_of_a_pooled_connection() -> None:
    face = await aorm.run(_face, "default")
    assert face._watched is asyncio.get_running_loop()
    assert await aorm.run(_face, "default") is face  # the same, still watched: no re-registration
    assert face._watched is asyncio.get_running_loop()


@postgresql_only("psycopg's socket")
async def test_input_on_an_idle_connection_unwatches_it_and_the_next_wait_reads_it() -> None:
    def listen() -> Any:
        face = _face("default")
        with connections["default"].cursor() as cursor:
            cursor.execute("LISTEN aorm_wait_test")
        return face

    face = await aorm.run(listen)
    assert face._watched is not None

    def notify() -> None:
        with connections["unpooled"].cursor() as cursor:
            cursor.execute("NOTIFY aorm_wait_test")

    await aorm.run(notify)
    async with asyncio.timeout(10):  # level-triggered: without this, the loop would spin
        while face._watched is not None:
            await asyncio.sleep(0.01)
    assert await aorm.run(_face, "default") is face  # watched again, and answered
    assert face._watched is not None
    await aorm.run(lambda: connections["default"].cursor().execute("UNLISTEN *"))


@postgresql_only("psycopg's socket")
async def test_connections_closed_one_after_another_never_hide_a_new_socket() -> None:
    # "pool": False closes each connection; the next one usually gets the same
    # file descriptor number, which must be watched afresh.
    async with asyncio.timeout(20):
        for _ in range(20):
            await Student.objects.using("unpooled").acount()


@postgresql_only("psycopg's socket")
async def test_a_connection_lost_mid_wait_is_unwatched_before_its_number_is_reused() -> None:
    face = await aorm.run(_face, "default")
    pid = face.info.backend_pid

    def terminate() -> None:
        with connections["stock"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await sync_to_async(terminate)()

    def use_it() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")

    async with asyncio.timeout(20):
        with contextlib.suppress(OperationalError):  # the server ended it: an error, once
            await aorm.run(use_it)
        assert face._watched is None
        for _ in range(10):  # new sockets, some with the same number, are watched afresh
            await Student.objects.using("unpooled").acount()
        assert await Student.objects.acount() == 0


# -- the bound on a cancelled query's cancel request


@pytest.mark.parametrize(
    ("connect_timeout", "bound"),
    [(None, 5.0), (0, 5.0), ("0", 5.0), (-1, 5.0), ("", 5.0), ("2", 2.0), (3, 3.0), (2.5, 2.5)],
)
def test_a_cancel_request_is_bounded_by_connect_timeout(
    connect_timeout: Any, bound: float
) -> None:
    """PostgreSQL's cancel request and MySQL's KILL QUERY open a connection of their own:
    ``connect_timeout`` bounds them; unset, or "no limit" (0), they get 5 s."""
    assert pooling.cancel_timeout(connect_timeout) == bound
