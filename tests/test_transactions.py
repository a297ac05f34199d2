"""Async transactions: ``async with transaction.atomic()`` and everything around it."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import IntegrityError, connections, transaction
from django.db.transaction import TransactionManagementError
from django.test import AsyncClient, override_settings
from students.models import Student

import aorm
from tests.app.models import Author
from tests.conftest import (
    ALL_DATABASES,
    postgresql_only,
    server_sessions,
    stock_sql,
    until_server_sessions,
)

pytestmark = ALL_DATABASES


class Boom(Exception):
    pass


async def names() -> list[str]:
    return await Student.objects.order_by("name").values_list("name", flat=True)


async def test_commit_on_success(sql_log: Any) -> None:
    sql_log.clear()
    async with transaction.atomic():
        await Student.objects.acreate(name="a", age=1)
        assert await aorm.aget_autocommit() is False
    assert await names() == ["a"]
    assert sql_log.threads() == {threading.get_ident()}
    assert any(sql.startswith("INSERT") for _, sql, _ in sql_log.statements)


async def test_rollback_reraises_the_same_exception() -> None:
    error = Boom("no")
    with pytest.raises(Boom) as info:
        async with transaction.atomic():
            await Student.objects.acreate(name="a", age=1)
            raise error
    assert info.value is error
    assert await names() == []


async def test_savepoint_rollback_keeps_the_outer_work() -> None:
    async with transaction.atomic():
        await Student.objects.acreate(name="outer", age=1)
        with pytest.raises(Boom):
            async with transaction.atomic():
                await Student.objects.acreate(name="inner", age=1)
                raise Boom
        await Student.objects.acreate(name="after", age=1)
    assert await names() == ["after", "outer"]


async def test_integrity_error_in_a_savepoint_then_the_block_goes_on() -> None:
    async with transaction.atomic():
        await Author.objects.acreate(name="ann")
        with pytest.raises(IntegrityError):
            async with transaction.atomic():
                await Author.objects.acreate(name="ann")
        await Author.objects.acreate(name="bob")
    assert await Author.objects.acount() == 2


async def test_durable_nested_raises_like_sync_django() -> None:
    async with transaction.atomic():
        with pytest.raises(RuntimeError, match="durable"):
            async with transaction.atomic(durable=True):
                pass
        await Student.objects.acreate(name="a", age=1)
    assert await names() == ["a"]


async def test_savepoint_false_rolls_back_the_whole_block() -> None:
    with pytest.raises(Boom):
        async with transaction.atomic():
            await Student.objects.acreate(name="outer", age=1)
            try:
                async with transaction.atomic(savepoint=False):
                    await Student.objects.acreate(name="inner", age=1)
                    raise Boom
            except Boom:
                assert await aorm.aget_rollback() is True
                raise
    assert await names() == []


async def test_set_rollback_from_async_code() -> None:
    async with transaction.atomic():
        await Student.objects.acreate(name="a", age=1)
        transaction.set_rollback(True)
        assert transaction.get_rollback() is True
    assert await names() == []
    async with transaction.atomic():
        await Student.objects.acreate(name="b", age=1)
        await aorm.aset_rollback(True)
        await aorm.aset_rollback(False)
    assert await names() == ["b"]


async def test_the_same_atomic_works_sync_and_as_a_decorator() -> None:
    block = transaction.atomic()
    async with block:
        await Student.objects.acreate(name="async", age=1)

    def sync_work() -> None:
        with block:
            Student.objects.create(name="sync", age=1)

    await sync_to_async(sync_work)()

    @transaction.atomic
    def decorated() -> None:
        Student.objects.create(name="decorated", age=1)

    await sync_to_async(decorated)()
    assert await names() == ["async", "decorated", "sync"]


async def test_decorator_on_async_def_wraps_the_awaited_body() -> None:
    @transaction.atomic
    async def create_then_fail() -> None:
        await Student.objects.acreate(name="a", age=1)
        raise Boom

    @transaction.atomic(using="default")
    async def create() -> int:
        await Student.objects.acreate(name="b", age=1)
        return await aorm.aget_autocommit()

    with pytest.raises(Boom):
        await create_then_fail()
    assert await create() is False
    assert await names() == ["b"]


async def test_on_commit_order_sync_and_async_callbacks() -> None:
    calls: list[str] = []

    async def async_callback() -> None:
        await asyncio.sleep(0)
        calls.append("async")

    async with transaction.atomic():
        transaction.on_commit(lambda: calls.append("sync 1"))
        transaction.on_commit(async_callback)
        async with transaction.atomic():
            transaction.on_commit(lambda: calls.append("inner"))
        transaction.on_commit(lambda: calls.append("sync 2"))
        assert calls == []
    assert calls == ["sync 1", "async", "inner", "sync 2"]


async def test_on_commit_never_after_rollback_nor_for_a_rolled_back_savepoint() -> None:
    calls: list[str] = []

    async def async_callback() -> None:
        calls.append("async")

    with pytest.raises(Boom):
        async with transaction.atomic():
            transaction.on_commit(async_callback)
            transaction.on_commit(lambda: calls.append("sync"))
            raise Boom
    async with transaction.atomic():
        transaction.on_commit(lambda: calls.append("kept"))
        with pytest.raises(Boom):
            async with transaction.atomic():
                transaction.on_commit(lambda: calls.append("dropped"))
                transaction.on_commit(async_callback)
                raise Boom
    assert calls == ["kept"]


async def test_robust_on_commit_callback() -> None:
    calls: list[str] = []

    def fails() -> None:
        raise Boom

    async with transaction.atomic():
        transaction.on_commit(fails, robust=True)
        transaction.on_commit(lambda: calls.append("after"))
    assert calls == ["after"]


@postgresql_only("SQLite has no SELECT ... FOR UPDATE")
async def test_select_for_update_needs_a_transaction() -> None:
    await Student.objects.acreate(name="a", age=1)
    with pytest.raises(TransactionManagementError):
        await Student.objects.select_for_update()
    async with transaction.atomic():
        rows = await Student.objects.select_for_update(nowait=True, of=("self",))
        assert [s.name for s in rows] == ["a"]
        assert await Student.objects.select_for_update(skip_locked=True, no_key=True).acount() == 1


async def test_fifty_concurrent_increments_with_select_for_update() -> None:
    counter = await Student.objects.acreate(name="counter", age=0)

    async def increment() -> None:
        async with transaction.atomic():
            row = await Student.objects.select_for_update().aget(pk=counter.pk)
            await asyncio.sleep(0.001)
            row.age += 1
            await row.asave(update_fields=["age"])

    await asyncio.gather(*(increment() for _ in range(50)))
    await counter.arefresh_from_db()
    assert counter.age == 50


async def test_children_share_the_transaction_with_their_own_savepoints() -> None:
    async def child(i: int) -> None:
        await Student.objects.acreate(name=f"plain{i}", age=i)
        try:
            async with transaction.atomic():
                await Student.objects.acreate(name=f"nested{i}", age=i)
                await asyncio.sleep(0)
                if i % 3 == 0:
                    raise Boom
        except Boom:
            pass

    async with transaction.atomic():
        await asyncio.gather(*(child(i) for i in range(30)))
        assert await Student.objects.acount() == 30 + 20
    expected = sorted(
        [f"plain{i}" for i in range(30)] + [f"nested{i}" for i in range(30) if i % 3]
    )
    assert await names() == expected


async def test_children_in_a_task_group_use_the_block() -> None:
    with pytest.raises(ExceptionGroup):
        async with transaction.atomic():
            async with asyncio.TaskGroup() as group:
                for i in range(5):
                    group.create_task(Student.objects.acreate(name=f"s{i}", age=i))
            raise ExceptionGroup("rollback", [Boom()])
    assert await names() == []


async def test_parent_failure_mid_child_writes_leaves_no_child_row() -> None:
    started = asyncio.Event()
    children: list[asyncio.Task[None]] = []

    async def child(i: int) -> None:
        started.set()
        for j in range(20):
            await Student.objects.acreate(name=f"c{i}-{j}", age=j)
            await asyncio.sleep(0.005)

    with pytest.raises(Boom):
        async with transaction.atomic():
            children.extend(asyncio.create_task(child(i)) for i in range(5))
            await started.wait()
            await asyncio.sleep(0.02)
            raise Boom
    results = await asyncio.gather(*children, return_exceptions=True)
    assert all(isinstance(r, TransactionManagementError) for r in results), results
    assert await Student.objects.acount() == 0
    await asyncio.sleep(1)
    assert await Student.objects.acount() == 0


async def test_uncommitted_row_is_invisible_outside_until_commit() -> None:
    inside = asyncio.Event()
    checked = asyncio.Event()

    async def outsider() -> int:
        await inside.wait()
        count = await Student.objects.acount()  # another task, outside any block
        checked.set()
        return count

    async def writer() -> None:
        async with transaction.atomic():
            await Student.objects.acreate(name="a", age=1)
            inside.set()
            await checked.wait()

    seen, _ = await asyncio.gather(asyncio.create_task(outsider()), writer())
    assert seen == 0
    assert await Student.objects.acount() == 1


async def test_cancelled_block_rolls_back_and_releases() -> None:
    inside = asyncio.Event()

    async def work() -> None:
        async with transaction.atomic():
            await Student.objects.acreate(name="a", age=1)
            inside.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await Student.objects.acount() == 0
    if settings.DATABASE == "postgresql":
        assert await server_sessions("state LIKE 'idle in transaction%%'") == 0


@postgresql_only("advisory locks and pg_stat_activity")
async def test_gather_outside_a_transaction_runs_in_parallel() -> None:
    def wait_for_the_lock() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock_shared(4242)")
            cursor.execute("SELECT pg_advisory_unlock_shared(4242)")

    await stock_sql("SELECT pg_advisory_lock(4242)")
    try:
        tasks = asyncio.gather(*(aorm.run(wait_for_the_lock) for _ in range(6)))
        # All six wait on the server at once: each operation has a connection of its own.
        await until_server_sessions("wait_event_type = 'Lock' AND query LIKE '%%4242%%'", 6)
    finally:
        await stock_sql("SELECT pg_advisory_unlock(4242)")
    await tasks


@override_settings(ROOT_URLCONF="tests.app.urls")
async def test_atomic_requests_with_async_views() -> None:
    databases = {alias: dict(connections.settings[alias]) for alias in connections.settings}
    databases["default"]["ATOMIC_REQUESTS"] = True
    connections.settings["default"]["ATOMIC_REQUESTS"] = True
    try:
        client = AsyncClient(raise_request_exception=False)
        assert (await client.post("/atomic/fail/")).status_code == 500
        assert await names() == []
        assert (await client.post("/atomic/ok/")).json() == {"autocommit": False}
        assert (await client.post("/atomic/non-atomic/")).json() == {"autocommit": True}
    finally:
        connections.settings["default"]["ATOMIC_REQUESTS"] = False
    assert await names() == ["non-atomic", "ok"]
