"""Connections are borrowed per operation, held by transactions, and visible in pool_stats()."""

from __future__ import annotations

import asyncio

import pytest
from django.db import transaction

import aorm
from tests.app.models import Student
from tests.conftest import ALL_DATABASES, postgresql_only

pytestmark = ALL_DATABASES


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
