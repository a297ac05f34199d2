"""Data integrity of async transactions at their edges, on real databases.

Cancellations at awkward points (mid-statement inside a block, a request
cancelled while its children query, a child waiting for its turn), on_commit
callbacks that start tasks, query or open blocks of their own, ``async for``
loops left early inside a block, child tasks that roll back, misuse
``durable`` or run sync code, and row locks under concurrency. After each:
the rows are as Django's contract says, the pool is whole and (PostgreSQL) no
server session is left idle in a transaction.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import OperationalError, connections, transaction
from students.models import Student

import aorm
from tests.app.models import Event
from tests.conftest import ALL_DATABASES, server_sessions, until_server_sessions

pytestmark = ALL_DATABASES

POSTGRESQL = settings.DATABASE == "postgresql"
SQLITE = settings.DATABASE == "sqlite"
MYSQL = settings.DATABASE == "mysql"


class Boom(Exception):
    pass


async def names() -> list[str]:
    return await Student.objects.order_by("name").values_list("name", flat=True)


async def kinds() -> list[str]:
    return sorted([e async for e in Event.objects.values_list("kind", flat=True)])


async def all_returned(alias: str = "default") -> None:
    """The pool is whole: no connection in use, nobody waiting (bounded wait: a
    connection closed after a cancelled query is returned by its own task)."""
    async with asyncio.timeout(5):
        while (stats := aorm.pool_stats(alias)).in_use or stats.waiting:
            await asyncio.sleep(0.01)
    if POSTGRESQL:
        assert await server_sessions("state LIKE 'idle in transaction%%'") == 0


# -- a statement cancelled inside a block


def _running_sql(marker: str) -> str:
    return (
        "SELECT count(*) FROM information_schema.PROCESSLIST "
        f"WHERE INFO LIKE '%%{marker}%%' AND ID <> CONNECTION_ID()"
    )


async def _until_running(marker: str, sqlite_started: threading.Event) -> None:
    """Until the slow statement runs on the server (in SQLite's thread)."""
    if POSTGRESQL:
        await until_server_sessions(f"state = 'active' AND query LIKE '%%{marker}%%'", 1)
        return
    async with asyncio.timeout(10):
        while True:
            if SQLITE:
                if sqlite_started.is_set():
                    return
            else:

                def count() -> int:
                    with connections["stock"].cursor() as cursor:
                        cursor.execute(_running_sql(marker))
                        return int(cursor.fetchone()[0])

                if await sync_to_async(count)():
                    return
            await asyncio.sleep(0.005)


def _slow_statement(write: bool) -> str:
    """A statement that runs for seconds unless stopped; it says when it started."""
    if POSTGRESQL:
        select = "SELECT 'slow' AS name, 1 AS age FROM (SELECT pg_sleep(10) AS aorm_slow) s"
    elif MYSQL:
        select = "SELECT 'slow' AS name, 1 AS age FROM (SELECT SLEEP(10) AS aorm_slow) s"
    else:  # SQLite: aorm_started() tells the test, from the I/O thread
        select = (
            "SELECT 'slow' AS name, aorm_started() AS age FROM (WITH RECURSIVE c(x) AS "
            "(SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000000) SELECT x FROM c)"
        )
    if write:
        return f"INSERT INTO students_student (name, age) {select}"
    return f"SELECT sum(age) FROM ({select}) AS rows_"


@pytest.mark.parametrize("write", [True, False], ids=["write", "read"])
async def test_a_statement_cancelled_inside_a_block_dooms_the_transaction(write: bool) -> None:
    """Whether a cancelled statement ran, was stopped, or (SQLite, a write stopped
    by its interrupt) took the whole transaction with it is unknown: the block can
    only roll back. A later statement fails (caught, the block then rolls back as
    Django does after a caught ORM error); without one, the commit fails.
    Nothing is written either way.

    Without the doom, SQLite ran the later statements in autocommit after it had
    rolled the transaction back itself: 'after' survived the rollback and
    'before' was lost; or the block committed as if nothing had happened.
    """
    started = threading.Event()

    def prepare() -> None:
        if SQLITE:
            raw = connections["default"].connection
            raw.create_function("aorm_started", 0, lambda: started.set() or 1)

    def slow() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(_slow_statement(write))

    calls: list[str] = []

    async def cancel_a_statement() -> None:
        await Student.objects.acreate(name="before", age=1)
        transaction.on_commit(lambda: calls.append("committed"))
        await aorm.run(prepare)
        task = asyncio.create_task(aorm.run(slow))
        await _until_running("aorm_slow", started)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        started.clear()

    async with transaction.atomic():
        await cancel_a_statement()
        with pytest.raises(OperationalError):
            await Student.objects.acreate(name="after", age=1)
    assert await names() == []
    await all_returned()
    with pytest.raises(OperationalError):
        async with transaction.atomic():
            await cancel_a_statement()
            # Leaving the block normally: the commit fails, Django rolls back.
    assert await names() == []
    assert calls == []
    await all_returned()
    async with transaction.atomic():  # the pool's next transaction is a clean one
        await Student.objects.acreate(name="next", age=1)
    assert await names() == ["next"]


async def test_a_request_cancelled_while_its_children_query_in_its_block() -> None:
    """A cancelled request rolls back everything, its children's writes included;
    the children's cancelled queries leave no connection or session behind."""
    querying = asyncio.Event()

    def slow() -> None:
        with connections["default"].cursor() as cursor:
            if POSTGRESQL:
                cursor.execute("SELECT pg_sleep(10)")
            elif MYSQL:
                cursor.execute("SELECT SLEEP(10)")
            else:
                cursor.execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "LIMIT 100000000) SELECT count(*) FROM c"
                )

    async def child(i: int) -> None:
        await Student.objects.acreate(name=f"child{i}", age=i)
        querying.set()
        await aorm.run(slow)

    async def request() -> None:
        async with transaction.atomic():
            await Student.objects.acreate(name="parent", age=1)
            await asyncio.gather(*(child(i) for i in range(3)))

    task = asyncio.create_task(request())
    await querying.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await names() == []
    await all_returned()


async def test_a_child_cancelled_while_waiting_for_its_turn_takes_nothing_with_it() -> None:
    """A child cancelled in the queue for the connection neither writes nor blocks
    the others; the block commits the rest."""
    inside, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with transaction.atomic():  # a savepoint: its siblings wait meanwhile
            await Student.objects.acreate(name="holder", age=1)
            inside.set()
            await release.wait()

    async with transaction.atomic():
        holding = asyncio.create_task(holder())
        await inside.wait()
        waiting = asyncio.create_task(Student.objects.acreate(name="waiter", age=1))
        await asyncio.sleep(0)  # it starts, and waits for the turn
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        release.set()
        await holding
        await Student.objects.acreate(name="parent", age=1)
    assert await names() == ["holder", "parent"]
    await all_returned()


async def test_a_task_group_failure_cancels_a_sibling_mid_query() -> None:
    """One child fails, TaskGroup cancels a sibling mid-query: the whole block
    rolls back and raises the group."""
    querying = asyncio.Event()

    def slow() -> None:
        with connections["default"].cursor() as cursor:
            if POSTGRESQL:
                cursor.execute("SELECT pg_sleep(10)")
            elif MYSQL:
                cursor.execute("SELECT SLEEP(10)")
            else:
                cursor.execute(
                    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                    "LIMIT 100000000) SELECT count(*) FROM c"
                )

    async def querying_child() -> None:
        await Student.objects.acreate(name="child", age=1)
        querying.set()
        await aorm.run(slow)

    async def failing_child() -> None:
        await querying.wait()
        raise Boom

    with pytest.raises(ExceptionGroup) as info:
        async with transaction.atomic():
            await Student.objects.acreate(name="parent", age=1)
            async with asyncio.TaskGroup() as group:
                group.create_task(querying_child())
                group.create_task(failing_child())
    assert info.group_contains(Boom)
    assert await names() == []
    await all_returned()


# -- on_commit callbacks


async def test_a_task_started_by_an_on_commit_callback_runs_after_the_commit() -> None:
    """A callback runs after the commit, outside the transaction: a task it starts
    writes on connections of its own. It inherited the ended block and got
    TransactionManagementError: its writes were lost."""
    started: list[asyncio.Task[Any]] = []

    async def later(kind: str) -> None:
        await Event.objects.acreate(kind=kind)

    async def coroutine_callback() -> None:
        started.append(asyncio.create_task(later("from a coroutine callback")))

    async def gathering_callback() -> None:
        await asyncio.gather(later("gathered 1"), later("gathered 2"))

    for callback in (
        lambda: started.append(asyncio.create_task(later("from a sync callback"))),
        coroutine_callback,
        gathering_callback,
    ):
        async with transaction.atomic():
            await Event.objects.acreate(kind="in a block")
            transaction.on_commit(callback)
        await asyncio.gather(*started)
    assert await kinds() == [
        "from a coroutine callback",
        "from a sync callback",
        "gathered 1",
        "gathered 2",
        "in a block",
        "in a block",
        "in a block",
    ]
    await all_returned()


async def test_an_on_commit_callback_opens_blocks_of_its_own() -> None:
    """After the commit a callback may open a durable block, nest one in it, and
    roll one back, as in sync Django."""
    counts: list[int] = []

    async def callback() -> None:
        async with transaction.atomic(durable=True):
            await Event.objects.acreate(kind="callback")
            async with transaction.atomic():
                await Event.objects.acreate(kind="callback, nested")
        with pytest.raises(Boom):
            async with transaction.atomic():
                await Event.objects.acreate(kind="callback, rolled back")
                raise Boom
        counts.append(await Event.objects.acount())

    async with transaction.atomic():
        await Event.objects.acreate(kind="block")
        transaction.on_commit(callback)
    assert counts == [3]
    assert await kinds() == ["block", "callback", "callback, nested"]
    await all_returned()


async def test_an_on_commit_callback_raising_after_the_commit() -> None:
    """As in Django: the commit stands, the error propagates, later callbacks are
    dropped; the next transaction on the pool is a clean one."""
    calls: list[str] = []

    def fails() -> None:
        raise Boom

    with pytest.raises(Boom):
        async with transaction.atomic():
            await Event.objects.acreate(kind="committed")
            transaction.on_commit(lambda: calls.append("first"))
            transaction.on_commit(fails)
            transaction.on_commit(lambda: calls.append("dropped"))
    assert calls == ["first"]
    assert await kinds() == ["committed"]
    await all_returned()
    with pytest.raises(Boom):
        async with transaction.atomic():
            await Event.objects.acreate(kind="rolled back")
            transaction.on_commit(lambda: calls.append("never"))
            raise Boom
    assert calls == ["first"]
    assert await kinds() == ["committed"]
