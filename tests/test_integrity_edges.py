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
import contextlib
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import DatabaseError, IntegrityError, OperationalError, connections, transaction
from django.db.models import QuerySet
from students.models import Student

import aorm
from aorm import _sync_to_async
from tests.app.models import Author, Book, Event
from tests.conftest import ALL_DATABASES, postgresql_only, server_sessions, until_server_sessions

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


def slow_query() -> None:
    """A query that runs for seconds unless it is cancelled (synchronous ORM code)."""
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


async def test_a_request_cancelled_while_its_children_query_in_its_block() -> None:
    """A cancelled request rolls back everything, its children's writes included;
    the children's cancelled queries leave no connection or session behind."""
    querying = asyncio.Event()

    async def child(i: int) -> None:
        await Student.objects.acreate(name=f"child{i}", age=i)
        querying.set()
        await aorm.run(slow_query)

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

    async def querying_child() -> None:
        await Student.objects.acreate(name="child", age=1)
        querying.set()
        await aorm.run(slow_query)

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


# -- async for, left early inside a block


def chunks(queryset: QuerySet[Any], size: int = 10) -> AsyncIterator[Any]:
    """The async iterator ``aiterator()`` loops over: chunked, on a kept connection."""
    return queryset._iterable_class(queryset, chunked_fetch=True, chunk_size=size).__aiter__()


async def test_a_loop_left_in_a_rolled_back_savepoint_leaves_the_transaction_intact() -> None:
    """Sync Django closes a loop's cursor as the loop is left, before the block
    ends. Python closes an async loop later: here, after the savepoint's
    rollback destroyed its cursor, still inside the outer block. The late CLOSE
    of a cursor PostgreSQL no longer knew aborted the outer transaction behind
    Django's back (the error was swallowed in the generator's finalizer), and
    the commit then silently rolled back: 'kept' lost, on_commit callbacks run."""
    await Student.objects.abulk_create([Student(name=f"s{i:02}", age=i) for i in range(30)])
    calls: list[str] = []
    async with transaction.atomic():
        await Student.objects.acreate(name="kept", age=1)
        loop = chunks(Student.objects.order_by("id"))
        with pytest.raises(Boom):
            async with transaction.atomic():
                async for _ in loop:
                    raise Boom
        await loop.aclose()  # late, as Python's finalizer does
        transaction.on_commit(lambda: calls.append("committed"))
    assert calls == ["committed"]
    assert await Student.objects.filter(name="kept").acount() == 1
    await all_returned()


@pytest.mark.parametrize("alias", ["default", "checked"])
async def test_a_loop_closed_after_its_block_ended(alias: str) -> None:
    """Python's finalizer closes a loop left early in a task started where the
    loop was dropped, inside the block, which runs after the block ended. The
    close failed with TransactionManagementError; a loop on another alias than
    the block's kept its pooled connection for ever."""
    await Student.objects.abulk_create([Student(name=f"s{i:02}", age=i) for i in range(30)])
    ended = asyncio.Event()

    async def close_after_the_block(loop: AsyncIterator[Any]) -> None:
        await ended.wait()
        await loop.aclose()  # type: ignore[attr-defined]

    async with transaction.atomic():
        await Student.objects.acreate(name="kept", age=1)
        loop = chunks(Student.objects.using(alias).order_by("id"))
        async for _ in loop:
            break
        closing = asyncio.create_task(close_after_the_block(loop))
    ended.set()
    await closing
    assert await Student.objects.filter(name="kept").acount() == 1
    await all_returned(alias)


async def test_a_loop_started_in_a_released_savepoint_goes_on_in_its_parent() -> None:
    await Student.objects.abulk_create([Student(name=f"s{i:02}", age=i) for i in range(30)])
    async with transaction.atomic():
        loop = chunks(Student.objects.order_by("id"))
        async with transaction.atomic():
            first = [await anext(loop) for _ in range(3)]
            await Student.objects.acreate(name="in the savepoint", age=1)
        rest = [s async for s in loop]
    assert len(first) + len(rest) == 30
    assert await Student.objects.acount() == 31
    await all_returned()


async def test_a_loop_started_before_a_block_and_continued_in_it() -> None:
    """A loop's cursor opened outside any transaction stays on its own connection
    when the loop goes on inside a block: given back when the loop ends. It was
    replaced by the transaction's for the chunks, and its connection was never
    given back to the pool."""
    await Student.objects.abulk_create([Student(name=f"s{i:02}", age=i) for i in range(30)])
    loop = chunks(Student.objects.order_by("id"))
    first = await anext(loop)
    with pytest.raises(Boom):
        async with transaction.atomic():
            await Student.objects.acreate(name="rolled back", age=1)
            rest = [s async for s in loop]
            raise Boom
    assert [first, *rest] == [s async for s in Student.objects.order_by("id")]
    await all_returned()


async def test_a_loop_cancelled_inside_a_block() -> None:
    await Student.objects.abulk_create([Student(name=f"s{i:02}", age=i) for i in range(30)])
    looping = asyncio.Event()

    async def request() -> None:
        async with transaction.atomic():
            await Student.objects.acreate(name="rolled back", age=1)
            async for _ in Student.objects.order_by("id").aiterator(chunk_size=10):
                looping.set()
                await asyncio.sleep(10)

    task = asyncio.create_task(request())
    await looping.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await Student.objects.acount() == 30
    await all_returned()


async def test_writes_between_the_chunks_of_a_loop_inside_a_block() -> None:
    await Student.objects.abulk_create([Student(name=f"s{i:03}", age=i) for i in range(100)])
    async with transaction.atomic():
        async for student in Student.objects.order_by("id").aiterator(chunk_size=10):
            student.age += 1000
            await student.asave(update_fields=["age"])
        await Student.objects.filter(age__lt=1050).adelete()
    assert await Student.objects.acount() == 50
    assert await Student.objects.filter(age__lt=1050).acount() == 0
    await all_returned()


# -- children that roll back, misuse durable, run sync code


async def test_set_rollback_from_a_child_task() -> None:
    """set_rollback(True) in a child marks the block it is in: the whole
    transaction from a child of the outermost block, only its savepoint from a
    child's own block."""

    async def child_in_its_block(name: str) -> None:
        async with transaction.atomic():
            await Student.objects.acreate(name=name, age=1)
            transaction.set_rollback(True)

    async with transaction.atomic():
        await Student.objects.acreate(name="parent", age=1)
        await asyncio.gather(child_in_its_block("a"), child_in_its_block("b"))
    assert await names() == ["parent"]

    async def child() -> None:
        await Student.objects.acreate(name="child", age=1)
        transaction.set_rollback(True)

    async with transaction.atomic():
        await Student.objects.acreate(name="parent 2", age=1)
        await asyncio.gather(child())
    assert await names() == ["parent"]


async def test_durable_in_a_child_task_raises_and_rolls_back() -> None:
    """A child's durable block is nested in its parent's: RuntimeError, as Django."""

    async def child() -> None:
        async with transaction.atomic(durable=True):
            await Student.objects.acreate(name="child", age=1)

    with pytest.raises(RuntimeError, match="durable"):
        async with transaction.atomic():
            await Student.objects.acreate(name="parent", age=1)
            await asyncio.gather(child())
    assert await names() == []
    await all_returned()


@pytest.fixture
def all_aliases_aorm(monkeypatch: pytest.MonkeyPatch) -> None:
    """As a project with only aorm aliases (see tests/test_paths.py)."""
    monkeypatch.setattr(_sync_to_async, "every_alias_native", lambda: True)


async def test_sync_to_async_in_child_tasks_with_sync_savepoints(all_aliases_aorm: None) -> None:
    """Sync code of concurrent children, with sync savepoints of its own, takes
    part in the block: rolled back with it, committed with it."""

    def work(i: int) -> None:
        Event.objects.create(kind=f"plain {i}")
        with transaction.atomic():
            Event.objects.create(kind=f"nested {i}")
            if i % 2:
                raise Boom

    async def child(i: int) -> None:
        with contextlib.suppress(Boom):
            await sync_to_async(work)(i)

    with pytest.raises(Boom):
        async with transaction.atomic():
            await asyncio.gather(*(child(i) for i in range(6)))
            assert await Event.objects.acount() == 9
            raise Boom
    assert await Event.objects.acount() == 0
    async with transaction.atomic():
        await asyncio.gather(*(child(i) for i in range(6)))
    assert await Event.objects.acount() == 9
    await all_returned()


# -- failures at commit time


@pytest.mark.skipif(MYSQL, reason="MySQL checks foreign keys at once, not at commit")
async def test_a_deferred_constraint_failing_at_commit() -> None:
    """Django's foreign keys are checked at commit on PostgreSQL and SQLite: the
    commit raises IntegrityError, nothing is written, no callback runs."""
    calls: list[str] = []
    with pytest.raises(IntegrityError):
        async with transaction.atomic():
            await Author.objects.acreate(name="ann")
            await Book.objects.acreate(title="orphan", author_id=999_999)
            transaction.on_commit(lambda: calls.append("committed"))
    assert calls == []
    assert await Author.objects.acount() == 0
    await all_returned()
    async with transaction.atomic():
        await Author.objects.acreate(name="bob")
    assert await Author.objects.acount() == 1


@postgresql_only("two aliases on one SQLite file wait for each other's write lock")
async def test_two_aliases_at_once_and_the_inner_commit_fails() -> None:
    with pytest.raises(IntegrityError):
        async with transaction.atomic():
            await Author.objects.acreate(name="ann")
            async with transaction.atomic(using="checked"):
                await Author.objects.using("checked").acreate(name="bob")
                await Book.objects.using("checked").acreate(title="orphan", author_id=999_999)
    assert await Author.objects.acount() == 0
    await all_returned()
    await all_returned("checked")


# -- row locks under concurrency


no_row_locks = pytest.mark.skipif(SQLITE, reason="SQLite has no SELECT ... FOR UPDATE")


@no_row_locks
async def test_skip_locked_hands_each_job_to_one_worker() -> None:
    """A job queue: six workers, each job processed exactly once."""
    await Student.objects.abulk_create([Student(name=f"job{i:02}", age=0) for i in range(40)])
    taken: list[str] = []

    async def worker() -> None:
        while True:
            async with transaction.atomic():
                job = (
                    await Student.objects.select_for_update(skip_locked=True)
                    .filter(age=0)
                    .order_by("id")
                    .afirst()
                )
                if job is None:
                    return
                taken.append(job.name)
                await asyncio.sleep(0)
                job.age = 1
                await job.asave(update_fields=["age"])

    await asyncio.gather(*(worker() for _ in range(6)))
    assert sorted(taken) == [f"job{i:02}" for i in range(40)]
    assert await Student.objects.filter(age=1).acount() == 40
    await all_returned()


@no_row_locks
async def test_nowait_on_a_locked_row_fails_and_rolls_back() -> None:
    row = await Student.objects.acreate(name="locked", age=0)
    locked, done = asyncio.Event(), asyncio.Event()

    async def locker() -> None:
        async with transaction.atomic():
            await Student.objects.select_for_update().aget(pk=row.pk)
            locked.set()
            await done.wait()

    holding = asyncio.create_task(locker())
    await locked.wait()
    try:
        with pytest.raises(DatabaseError):
            async with transaction.atomic():
                await Student.objects.acreate(name="rolled back", age=0)
                await Student.objects.select_for_update(nowait=True).aget(pk=row.pk)
    finally:
        done.set()
        await holding
    assert await names() == ["locked"]
    await all_returned()
