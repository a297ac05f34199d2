"""aorm.backends.sqlite3: the ORM on the event loop, sqlite3 calls in each connection's thread."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import SynchronousOnlyOperation
from django.db import OperationalError, connections, transaction
from django.db.backends.sqlite3.base import SQLiteCursorWrapper
from django.test.utils import CaptureQueriesContext
from students.models import Student

import aorm
from aorm.backends.sqlite3.base import DatabaseWrapper
from aorm.backends.sqlite3.dbapi import PREFETCH_ROWS
from tests.app.models import Author, Book, Tag
from tests.conftest import ALL_DATABASES, SqlLog, fetch_all_and_close

pytestmark = [
    pytest.mark.skipif(settings.DATABASE != "sqlite", reason="SQLite backend tests"),
    ALL_DATABASES,
]

IO_THREAD = "aorm-sqlite3["


def io_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith(IO_THREAD)]


def open_sqlite_connections() -> int:
    """How many sqlite3 connections of this process are open."""
    gc.collect()
    count = 0
    for obj in gc.get_objects():
        # type(), not isinstance(): a lazy object's __class__ would set it up (DRF's
        # import creates django.contrib.admin's site, which fails without the app).
        if issubclass(type(obj), sqlite3.Connection):
            try:
                obj.total_changes  # noqa: B018
            except sqlite3.ProgrammingError:  # closed
                continue
            count += 1
    return count


def wrapper(alias: str, **options: Any) -> DatabaseWrapper:
    """A DatabaseWrapper of its own, on the default database's file, with these OPTIONS."""
    settings_dict = {**connections["default"].settings_dict}
    settings_dict["OPTIONS"] = {**settings_dict["OPTIONS"], **options}
    return DatabaseWrapper(settings_dict, alias)


@pytest.fixture
def sqlite_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, str]]]:
    """(thread name, SQL) of every statement Django's sqlite3 cursor class executed."""
    calls: list[tuple[str, str]] = []
    execute = SQLiteCursorWrapper.execute

    def recording(self: Any, query: str, params: Any = None) -> Any:
        calls.append((threading.current_thread().name, query))
        return execute(self, query, params)

    monkeypatch.setattr(SQLiteCursorWrapper, "execute", recording)
    yield calls


# -- the ORM, natively ---------------------------------------------------------


async def test_crud_through_async_methods() -> None:
    ada = await Student.objects.acreate(name="Ada", age=36)
    await Student.objects.abulk_create([Student(name=f"s{i}", age=i) for i in range(5)])
    assert (await Student.objects.aget(pk=ada.pk)).name == "Ada"
    assert await Student.objects.acount() == 6
    assert [s.name for s in await Student.objects.filter(age__lt=3)] == ["s0", "s1", "s2"]
    assert await Student.objects.filter(age__gte=3).aupdate(age=99) == 3
    ada.age = 37
    await ada.asave()
    await ada.arefresh_from_db()
    assert ada.age == 37
    names = [s.name async for s in Student.objects.filter(age=99)]
    assert names == ["s3", "s4"]
    deleted, _ = await Student.objects.filter(age=99).adelete()
    assert deleted == 2
    assert await Student.objects.filter(name="s0").aexists()
    assert (await Student.objects.aall())[0].name == "Ada"


async def test_relations_cascades_and_prefetch() -> None:
    author = await Author.objects.acreate(name="Le Guin")
    tags = [await Tag.objects.acreate(name=n) for n in ("sf", "fantasy")]
    book = await Book.objects.acreate(title="Earthsea", author=author)
    await book.tags.aset(tags)
    fetched = await Book.objects.select_related("author").prefetch_related("tags").aget(pk=book.pk)
    assert fetched.author.name == "Le Guin"
    assert sorted(t.name for t in fetched.tags.all()) == ["fantasy", "sf"]
    await author.adelete()  # cascades to the book and its tag links
    assert await Book.objects.acount() == 0
    assert await Tag.objects.acount() == 2


async def test_unpooled_alias_and_stock_alias_see_the_same_file() -> None:
    await Student.objects.using("unpooled").acreate(name="u", age=1)
    assert await Student.objects.acount() == 1
    assert await Student.objects.using("stock").acount() == 1


async def test_iteration_beyond_the_prefetched_rows() -> None:
    total = PREFETCH_ROWS * 2 + 17
    await Student.objects.abulk_create([Student(name=f"s{i}", age=i) for i in range(total)])
    ages = [s.age async for s in Student.objects.all()]
    assert ages == list(range(total))
    ages = [s.age async for s in Student.objects.aiterator(chunk_size=100)]
    assert ages == list(range(total))

    def raw_fetches() -> tuple[Any, list[Any], list[Any]]:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT age FROM students_student ORDER BY id")
            return cursor.fetchone(), cursor.fetchmany(3), cursor.fetchall()

    first, some, rest = await aorm.run(raw_fetches)
    assert first == (0,) and some == [(1,), (2,), (3,)] and len(rest) == total - 4


async def test_debug_cursor_quotes_params_on_the_raw_connection() -> None:
    def captured() -> str:
        connection = connections["default"]
        with CaptureQueriesContext(connection) as queries:
            Student.objects.filter(name="O'Hara").count()
        return str(queries[0]["sql"])

    assert "'O''Hara'" in await aorm.run(captured)


# -- where the work runs ---------------------------------------------------------


async def test_orm_on_loop_thread_sqlite_calls_in_io_thread(
    sql_log: SqlLog, sqlite_calls: list[tuple[str, str]]
) -> None:
    loop_thread = threading.get_ident()
    author = await Author.objects.acreate(name="Borges")
    await Book.objects.acreate(title="Ficciones", author=author)
    assert await Book.objects.filter(author__name="Borges").acount() == 1
    assert [b.title for b in await Book.objects.select_related("author")] == ["Ficciones"]

    def in_transaction() -> None:
        with transaction.atomic():
            Student.objects.create(name="t", age=1)
            Student.objects.filter(name="t").update(age=2)

    await aorm.run(in_transaction)
    assert sql_log.statements, "no SQL recorded"
    # Django's cursor wrapper (and all the ORM around it) ran on the loop's thread...
    assert sql_log.threads() == {loop_thread}
    # ...and every sqlite3 call in an I/O thread, never on the loop's.
    assert sqlite_calls
    assert {name for name, _ in sqlite_calls} == {f"{IO_THREAD}default]"}
    assert [sql for _, sql in sqlite_calls] == [sql for _, sql, _ in sql_log.statements]


def test_sync_code_is_django_unchanged(sqlite_calls: list[tuple[str, str]]) -> None:
    Student.objects.create(name="sync", age=1)
    assert Student.objects.get(name="sync").age == 1
    connection = connections["default"]
    assert type(connection.connection).__module__ == "sqlite3"
    assert {name for name, _ in sqlite_calls} == {threading.current_thread().name}
    assert not io_threads()


async def test_sync_orm_call_in_async_code_still_raises() -> None:
    with pytest.raises(SynchronousOnlyOperation, match="acount"):
        Student.objects.count()
    with pytest.raises(SynchronousOnlyOperation):
        list(Student.objects.all())
    with pytest.raises(SynchronousOnlyOperation):
        connections["default"].cursor()


# -- concurrency -------------------------------------------------------------------


def _write_ten() -> None:
    with transaction.atomic():
        for i in range(10):
            Student.objects.create(name=f"w{i}", age=i)


async def test_200_concurrent_writers_each_in_a_transaction() -> None:
    await asyncio.gather(*(aorm.run(_write_ten) for _ in range(200)))
    assert await Student.objects.acount() == 2000


async def test_concurrent_writers_on_both_aorm_aliases_and_autocommit_inserts() -> None:
    def write_ten_unpooled() -> None:
        with transaction.atomic(using="unpooled"):
            for i in range(10):
                Student.objects.using("unpooled").create(name=f"u{i}", age=i)

    jobs = [aorm.run(_write_ten) for _ in range(30)]
    jobs += [aorm.run(write_ten_unpooled) for _ in range(30)]
    jobs += [Student.objects.acreate(name="a", age=0) for _ in range(100)]
    await asyncio.gather(*jobs)
    assert await Student.objects.acount() == 700


async def test_readers_are_not_blocked_by_an_open_write_transaction() -> None:
    await Student.objects.acreate(name="before", age=1)

    def journal_mode() -> str:
        with connections["default"].cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            return str(cursor.fetchone()[0])

    assert await aorm.run(journal_mode) == "wal"
    writing, commit = asyncio.Event(), asyncio.Event()

    def slow_writer() -> None:
        with transaction.atomic():
            Student.objects.create(name="during", age=2)
            aorm.await_(asyncio.sleep(0))
            writing.set()
            aorm.await_(commit.wait())

    writer = asyncio.ensure_future(aorm.run(slow_writer))
    await asyncio.wait_for(writing.wait(), 5)
    # Readers on other connections read the last committed state, right away.
    counts = await asyncio.wait_for(
        asyncio.gather(*(Student.objects.acount() for _ in range(20))), 2
    )
    assert counts == [1] * 20
    assert await Student.objects.using("unpooled").acount() == 1
    # A second writer waits for its turn instead of failing with "database is locked".
    second = asyncio.ensure_future(Student.objects.acreate(name="after", age=3))
    await asyncio.sleep(0.05)
    assert not second.done()
    commit.set()
    await asyncio.wait_for(asyncio.gather(writer, second), 5)
    assert await Student.objects.acount() == 3


async def test_a_write_turn_waits_at_most_the_sqlite_timeout() -> None:
    impatient = wrapper("impatient", timeout=0.2)

    def deadlock() -> None:
        with transaction.atomic():
            Student.objects.create(name="holder", age=1)
            # A second connection to the same file, in the same operation: it
            # can never get the write lock the first one holds (sync Django
            # would wait for SQLite's busy timeout, then fail the same way).
            try:
                with impatient.cursor() as cursor:
                    cursor.execute("INSERT INTO students_student (name, age) VALUES ('x', 1)")
            finally:
                impatient.close()

    with pytest.raises(OperationalError, match="database is locked"):
        await aorm.run(deadlock)
    assert await Student.objects.acount() == 0  # the failed transaction was rolled back


async def test_transaction_mode_option(sql_log: SqlLog) -> None:
    immediate = wrapper("immediate", transaction_mode="IMMEDIATE")

    def write() -> None:
        try:
            immediate.ensure_connection()
            immediate._start_transaction_under_autocommit()  # what atomic() does on SQLite
            with immediate.cursor() as cursor:
                cursor.execute("INSERT INTO students_student (name, age) VALUES ('i', 1)")
            immediate.commit()
        finally:
            immediate.close()

    await aorm.run(write)
    assert sql_log.statements[0][1] == "BEGIN IMMEDIATE"
    assert await Student.objects.acount() == 1


async def test_transactions_take_write_turns_unless_deferred(sql_log: SqlLog) -> None:
    most_at_once: list[int] = []
    for options in ({}, {"transaction_mode": "DEFERRED"}):
        inside = [0, 0]  # now, most at once

        def read_in_transaction(
            options: dict[str, Any] = options, inside: list[int] = inside
        ) -> None:
            db = wrapper("turns", **options)
            try:
                db.ensure_connection()
                db._start_transaction_under_autocommit()  # what atomic() does on SQLite
                with db.cursor() as cursor:
                    cursor.execute("SELECT count(*) FROM students_student")
                inside[0] += 1
                inside[1] = max(inside)
                aorm.await_(asyncio.sleep(0.1))
                inside[0] -= 1
                db.commit()
            finally:
                db.close()

        await asyncio.gather(*(aorm.run(read_in_transaction) for _ in range(3)))
        most_at_once.append(inside[1])
    # By default a transaction holds the file's write turn from BEGIN: read-only
    # ones take turns too. DEFERRED, as in SQLite, lets them overlap.
    assert most_at_once == [1, 3]
    assert "BEGIN DEFERRED" in [sql for _, sql, _ in sql_log.statements]

    # A DEFERRED transaction takes the turn at its first write. (One that read
    # first may then fail with "database is locked", as in SQLite: its snapshot
    # is stale if another transaction committed meanwhile.)
    def write_deferred() -> None:
        db = wrapper("turns", transaction_mode="DEFERRED")
        try:
            db.ensure_connection()
            db._start_transaction_under_autocommit()
            with db.cursor() as cursor:
                cursor.execute("INSERT INTO students_student (name, age) VALUES ('d', 1)")
                cursor.execute("SELECT count(*) FROM students_student")
                cursor.execute("INSERT INTO students_student (name, age) VALUES ('d', 2)")
            db.commit()
        finally:
            db.close()

    await asyncio.gather(*(aorm.run(write_deferred) for _ in range(5)), aorm.run(_write_ten))
    assert await Student.objects.acount() == 20


def test_wal_unless_init_command_sets_a_journal_mode() -> None:
    default = wrapper("wal")
    default.get_connection_params()
    assert default.init_commands[0] == "PRAGMA journal_mode = WAL"
    chosen = wrapper("delete", init_command="PRAGMA journal_mode=DELETE;PRAGMA synchronous=1")
    chosen.get_connection_params()
    assert chosen.init_commands == ["PRAGMA journal_mode=DELETE", "PRAGMA synchronous=1"]


# -- in-memory databases ------------------------------------------------------------


async def test_django_in_memory_test_database_is_shared_across_tasks() -> None:
    assert connections["memory"].is_in_memory_db()
    memory = Student.objects.using("memory")
    await asyncio.gather(*(memory.acreate(name=f"m{i}", age=i) for i in range(50)))
    counts = await asyncio.gather(*(memory.acount() for _ in range(20)))
    assert counts == [50] * 20

    def in_transaction() -> None:
        with transaction.atomic(using="memory"):
            Student.objects.using("memory").create(name="tx", age=0)

    await asyncio.gather(*(aorm.run(in_transaction) for _ in range(10)))
    assert await memory.acount() == 60
    # Django's own connection (a thread's, as in sync code) sees the same database.
    assert await sync_to_async(memory.count)() == 60
    assert await Student.objects.acount() == 0  # and the file database is another one


async def test_plain_memory_database_lives_in_the_loops_single_connection() -> None:
    settings_dict = {**connections["default"].settings_dict, "NAME": ":memory:", "OPTIONS": {}}

    def run_sql(sql: str) -> Callable[[], Any]:
        def call() -> Any:
            return fetch_all_and_close(DatabaseWrapper(settings_dict, "plain"), sql)

        return call

    await aorm.run(run_sql("CREATE TABLE t (x integer)"))
    await asyncio.gather(*(aorm.run(run_sql(f"INSERT INTO t VALUES ({i})")) for i in range(30)))
    totals = await asyncio.gather(
        *(aorm.run(run_sql("SELECT count(*) FROM t")) for _ in range(10))
    )
    assert totals == [[(30,)]] * 10
    assert len([t for t in io_threads() if t.name == f"{IO_THREAD}plain]"]) == 1


# -- resources --------------------------------------------------------------------


async def test_cancelled_query_leaves_no_dirty_connection() -> None:
    slow = (
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 100000000) "
        "SELECT count(*) FROM c"
    )

    querying = asyncio.Event()

    def long_query_in_transaction() -> None:
        with transaction.atomic():
            Student.objects.create(name="rolled back", age=1)
            with connections["default"].cursor() as cursor:
                querying.set()  # seen once the query is in the I/O thread: the bridge waits
                cursor.execute(slow)

    task = asyncio.ensure_future(aorm.run(long_query_in_transaction))
    await asyncio.wait_for(querying.wait(), 5)
    task.cancel()
    # The statement is stopped, whether it had started in the thread or not:
    # run to its end, it takes over a minute.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done, "the cancelled statement was not stopped"
    with pytest.raises(asyncio.CancelledError):
        task.result()
    # The transaction was rolled back and the write turn given back.
    await asyncio.wait_for(asyncio.gather(*(aorm.run(_write_ten) for _ in range(10))), 5)
    assert await Student.objects.filter(name="rolled back").acount() == 0
    assert await Student.objects.acount() == 100


async def test_a_call_abandoned_before_it_starts_is_not_made() -> None:
    """A statement cancelled while it waits in the I/O thread's queue never runs.

    ``interrupt()`` is a no-op before a statement starts: without the check
    before each call, the statement would run once the thread is free.
    """
    gate = threading.Event()
    made = threading.Event()
    queued = asyncio.Event()
    dbapi: list[Any] = []

    def statement_behind_a_blocked_thread() -> None:
        connection = connections["default"]
        connection.ensure_connection()
        dbapi.append(connection.connection)
        connection.connection.create_function("aorm_mark", 0, made.set)
        connection.connection.io.future(gate.wait, 10)  # the thread waits on the gate
        queued.set()
        with connection.cursor() as cursor:
            cursor.execute("SELECT aorm_mark()")

    async def abandoned() -> None:
        while not dbapi[0].busy:
            await asyncio.sleep(0)

    task = asyncio.ensure_future(aorm.run(statement_behind_a_blocked_thread))
    await asyncio.wait_for(queued.wait(), 5)
    task.cancel()
    await asyncio.wait_for(abandoned(), 5)  # the cancellation reached the waiting call
    gate.set()
    # The task ends once the connection was reset, in the same thread, after the SELECT's turn.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done
    with pytest.raises(asyncio.CancelledError):
        task.result()
    assert not made.is_set()


async def test_pool_exhaustion_names_the_alias_and_size() -> None:
    tiny = {
        **connections["default"].settings_dict,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 1, "timeout": 0.1}},
    }
    holding = asyncio.Event()

    def hold() -> None:
        db = DatabaseWrapper(tiny, "tiny")
        try:
            db.ensure_connection()
            holding.set()
            aorm.await_(asyncio.sleep(0.5))
        finally:
            db.close()

    def use() -> None:
        db = DatabaseWrapper(tiny, "tiny")
        try:
            db.ensure_connection()
        finally:
            db.close()

    holder = asyncio.ensure_future(aorm.run(hold))
    await holding.wait()
    with pytest.raises(aorm.PoolTimeout, match=r"'tiny'.*pool's 1 connections"):
        await aorm.run(use)
    await holder
    await aorm.run(use)  # free again


def test_no_thread_or_connection_leaks_after_1000_operations() -> None:
    connections_before = open_sqlite_connections()
    peak: list[int] = []

    async def operations() -> None:
        for round_ in range(10):
            for alias in ("default", "unpooled"):
                students = Student.objects.using(alias)
                await asyncio.gather(
                    *(students.acreate(name=f"r{round_}", age=i) for i in range(20)),
                    *(students.filter(age=i).acount() for i in range(20)),
                    *(aorm.run(_write_ten) for _ in range(8)),
                )
                await students.filter(name=f"r{round_}").aupdate(age=0)
                await students.filter(age=0)  # type: ignore[misc]
                peak.append(len(io_threads()))
        assert await Student.objects.acount() == 10 * 2 * (20 + 80)

    asyncio.run(operations())  # 10 rounds x 2 aliases x 50 operations
    assert 0 < max(peak) <= 8 + 50
    assert io_threads() == []
    assert open_sqlite_connections() == connections_before
