"""Async code pools by default; ``"pool": False`` opts out; idle connections expire.

The ``defaults`` alias sets no ``OPTIONS["pool"]`` (and ``CONN_MAX_AGE = 60``
for its sync code), ``unpooled`` sets ``"pool": False``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.db.utils import load_backend

import aorm
from aorm import _loops
from aorm._pool import DEFAULT_OPTIONS, AsyncPool, pool_key
from tests.app.models import Student
from tests.conftest import ALL_DATABASES, postgresql_only, server_sessions
from tests.test_errors import backend_pid

pytestmark = ALL_DATABASES

POSTGRESQL = settings.DATABASE == "postgresql"
SQLITE = settings.DATABASE == "sqlite"
DEFAULT_SIZE = 8 if SQLITE else 10


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
