"""Read replicas: a primary, a replica alias and a Django database router.

The "replica" is a second database on the same server (created, migrated and
dropped by a module fixture), configured as a second aorm alias with its own
pool. The router sends reads to it and writes to ``default``, the primary.
The two databases hold different rows, and statements report the database
and server session that ran them (``current_database()``,
``pg_backend_pid()``), so every test sees where each statement went.

Each scenario runs twice from the same rows: through Django's synchronous API
(the reference, in a worker thread) and natively through aorm; the results
and the rows left in both databases must be equal. That is what "Django's
rules" means here: the router decides as in sync code, including inside
``async with transaction.atomic()`` (a plain read still goes to the replica;
``select_for_update()``, ``get_or_create()`` and ``using()`` reach the
primary, inside the transaction).
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.models.expressions import RawSQL
from pytest_django import DjangoDbBlocker, Settings
from students.models import Student

import aorm
from tests.conftest import ALL_DATABASES, SqlLog, postgresql_only
from tests.test_api import Call, native_call, sync_call

pytestmark = [ALL_DATABASES, postgresql_only("a second database on the same PostgreSQL server")]

REPLICA = "replica"
REPLICA_POOL = {"min_size": 1, "max_size": 3, "timeout": 10}
ROUTERS = ["tests.test_replicas.PrimaryReplicaRouter"]


class PrimaryReplicaRouter:
    """Reads from the replica, writes to the primary: Django's documented pattern."""

    def db_for_read(self, model: type, **hints: Any) -> str:
        return REPLICA

    def db_for_write(self, model: type, **hints: Any) -> str:
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return True


def _close(alias: str) -> None:
    """Close ``alias``'s sync connections, here and in asgiref's worker thread, and its pools."""
    if alias not in connections.settings:
        return
    connections[alias].close()
    SyncToAsync.single_thread_executor.submit(lambda: connections[alias].close()).result()
    connections[alias].close_pool()


@pytest.fixture(scope="module")
def replica_database(
    django_db_setup: None, django_db_blocker: DjangoDbBlocker
) -> Iterator[tuple[str, str]]:
    """The replica alias, on a database of its own; yields (primary name, replica name)."""
    primary = connections.settings[DEFAULT_DB_ALIAS]
    name = f"{primary['NAME']}_replica"
    original = connections.settings
    with django_db_blocker.unblock():
        with connections["stock"].cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            cursor.execute(f'CREATE DATABASE "{name}"')
        connections["stock"].close()
        connections.settings = {  # type: ignore[misc]
            **original,
            REPLICA: {
                **primary,
                "NAME": name,
                "OPTIONS": {**primary["OPTIONS"], "pool": REPLICA_POOL},
                "TEST": {**primary["TEST"], "NAME": name},
            },
        }
        try:
            call_command("migrate", database=REPLICA, verbosity=0, interactive=False)
            _close(REPLICA)
            yield primary["NAME"], name
        finally:
            _close(REPLICA)
            connections.settings = original  # type: ignore[misc]
            with connections["stock"].cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
            connections["stock"].close()


@pytest.fixture
def routed(replica_database: tuple[str, str], settings: Settings) -> Iterator[tuple[str, str]]:
    """The router on, and rows that tell the databases apart: p1, p2 on the primary, r1, r2."""
    settings.DATABASE_ROUTERS = ROUTERS

    reseed()
    try:
        yield replica_database
    finally:
        for alias in (DEFAULT_DB_ALIAS, REPLICA):
            Student.objects.using(alias).all().delete()
        connections[REPLICA].close()


def rows(alias: str) -> list[tuple[str, int]]:
    return sorted(Student.objects.using(alias).values_list("name", "age"))


def where() -> Any:
    """The database that runs a query, as a column of its rows."""
    return RawSQL("current_database()", ())


async def outcomes(scenario: Any, call: Call) -> tuple[Any, Any, Any]:
    """``scenario(call)``'s result and the rows it leaves in each database."""
    result = await scenario(call)
    primary = await sync_to_async(rows)(DEFAULT_DB_ALIAS)
    return result, primary, await sync_to_async(rows)(REPLICA)


async def same_as_sync(scenario: Any, sql_log: SqlLog) -> tuple[Any, Any, Any]:
    """Run ``scenario`` through Django's sync API, then natively: equal outcomes, returned.

    The native run's statements, on both aliases, all ran on the event loop's thread.
    """
    expected = await outcomes(scenario, sync_call)
    await sync_to_async(reseed)()
    sql_log.clear()
    result = await scenario(native_call)
    statements = list(sql_log.statements)
    native = (result, *(await outcomes(_nothing, native_call))[1:])
    assert native == expected
    assert {alias for alias, _, _ in statements} == {DEFAULT_DB_ALIAS, REPLICA}
    assert {thread for _, _, thread in statements} == {threading.get_ident()}
    return native


async def _nothing(call: Call) -> None:
    pass


def reseed() -> None:
    for alias, prefix in ((DEFAULT_DB_ALIAS, "p"), (REPLICA, "r")):
        Student.objects.using(alias).all().delete()
        Student.objects.using(alias).bulk_create(
            Student(name=f"{prefix}{i}", age=20 + i) for i in (1, 2)
        )


async def reads_and_writes(call: Call) -> dict[str, Any]:
    on = Student.objects.annotate(db=where()).values_list("db", flat=True)
    return {
        "listed": [s.name for s in await call(Student.objects.all(), "list")],
        "read on": sorted(set(await call(on, "list"))),
        "count": await call(Student.objects, "count"),
        "created": (await call(Student.objects, "create", name="new", age=1)).name,
        "renamed": await call(Student.objects.filter(name="p1"), "update", name=where()),
        "get_or_create": (await call(Student.objects, "get_or_create", name="p2"))[1],
        "new on the replica": await call(Student.objects.filter(name="new"), "exists"),
    }


async def test_reads_go_to_the_replica_and_writes_to_the_primary(
    routed: tuple[str, str], sql_log: SqlLog
) -> None:
    primary, replica = routed
    result, primary_rows, replica_rows = await same_as_sync(reads_and_writes, sql_log)
    assert result == {
        "listed": ["r1", "r2"],
        "read on": [replica],
        "count": 2,
        "created": "new",
        "renamed": 1,
        "get_or_create": False,  # found on the primary: get_or_create reads where it writes
        "new on the replica": False,
    }
    assert primary_rows == sorted([("new", 1), ("p2", 22), (primary, 21)])
    assert replica_rows == [("r1", 21), ("r2", 22)]


@contextlib.asynccontextmanager
async def atomic(call: Call) -> AsyncIterator[None]:
    """``transaction.atomic()`` on the primary: entered in the reference's thread, or natively."""
    if call is native_call:
        async with transaction.atomic():
            yield
        return
    block = transaction.atomic()
    await sync_to_async(block.__enter__)()
    try:
        yield
    except BaseException as exc:
        await sync_to_async(block.__exit__)(type(exc), exc, exc.__traceback__)
        raise
    await sync_to_async(block.__exit__)(None, None, None)


async def inside_a_transaction(call: Call) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with atomic(call):
        await call(Student.objects, "create", name="new", age=1)
        new = Student.objects.filter(name="new")
        result["plain read"] = await call(new, "exists")
        result["plain read on"] = await call(
            Student.objects.annotate(db=where()).values_list("db", flat=True)[:1], "list"
        )
        locked = new.select_for_update().annotate(db=where())
        result["select_for_update"] = [(s.name, s.db) for s in await call(locked, "list")]
        result["using primary"] = await call(new.using(DEFAULT_DB_ALIAS), "count")
        result["get_or_create"] = (await call(Student.objects, "get_or_create", name="new"))[1]
        result["count"] = await call(Student.objects, "count")
    result["after commit, replica"] = await call(new, "exists")
    return result


async def test_reads_inside_a_transaction_follow_djangos_rules(
    routed: tuple[str, str], sql_log: SqlLog
) -> None:
    primary, replica = routed
    result, primary_rows, replica_rows = await same_as_sync(inside_a_transaction, sql_log)
    assert result == {
        "plain read": False,  # the router's replica: outside the transaction
        "plain read on": [replica],
        "select_for_update": [("new", primary)],  # for_write: the primary, in the transaction
        "using primary": 1,
        "get_or_create": False,
        "count": 2,
        "after commit, replica": False,
    }
    assert primary_rows == [("new", 1), ("p1", 21), ("p2", 22)]
    assert replica_rows == [("r1", 21), ("r2", 22)]


async def test_statements_run_in_sessions_of_the_routed_database(
    routed: tuple[str, str],
) -> None:
    """Each statement's server session (pg_backend_pid) is one of the right database's."""
    primary, replica = routed
    session = RawSQL("pg_backend_pid()", ())

    def transaction_session() -> int:
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return int(cursor.fetchone()[0])

    reads = await asyncio.gather(
        *(Student.objects.annotate(pid=session).values_list("pid", flat=True) for _ in range(5))
    )
    async with transaction.atomic():
        in_transaction = await aorm.run(transaction_session)
        await Student.objects.acreate(name="new", age=1)
        locked = await Student.objects.select_for_update().annotate(pid=session).aget(name="new")
        assert locked.pid == in_transaction
        plain = await Student.objects.annotate(pid=session).values_list("pid", flat=True)
    written = await Student.objects.filter(name="p1").aupdate(age=RawSQL("pg_backend_pid()", ()))
    assert written == 1
    writer = (await Student.objects.using(DEFAULT_DB_ALIAS).aget(name="p1")).age

    def databases_of(pids: set[int]) -> dict[int, str]:
        with connections["stock"].cursor() as cursor:
            cursor.execute(
                "SELECT pid, datname FROM pg_stat_activity WHERE pid = ANY(%s)", [list(pids)]
            )
            return dict(cursor.fetchall())

    read_sessions = {pid for rows in [*reads, plain] for pid in rows}
    sessions = await sync_to_async(databases_of)({*read_sessions, in_transaction, writer})
    assert {sessions[pid] for pid in read_sessions} == {replica}
    assert sessions[in_transaction] == sessions[writer] == primary
    assert len({pid for rows in reads for pid in rows}) <= REPLICA_POOL["max_size"]


async def test_each_alias_has_its_own_pool(routed: tuple[str, str]) -> None:
    slow = RawSQL("(SELECT 1 FROM pg_sleep(0.5))", ())
    reads = asyncio.gather(
        *(Student.objects.annotate(slow=slow).values_list("slow", flat=True) for _ in range(6))
    )
    async with transaction.atomic():
        await Student.objects.acreate(name="new", age=1)
        task = asyncio.ensure_future(reads)
        deadline = asyncio.get_running_loop().time() + 10
        while aorm.pool_stats(REPLICA).in_use < REPLICA_POOL["max_size"]:
            assert asyncio.get_running_loop().time() < deadline, aorm.pool_stats(REPLICA)
            await asyncio.sleep(0.01)
        primary, replica = aorm.pool_stats(DEFAULT_DB_ALIAS), aorm.pool_stats(REPLICA)
        assert (primary.in_use, primary.max_size) == (1, 8)  # the transaction's connection
        assert (replica.max_size, replica.size, replica.in_use) == (3, 3, 3)
        assert replica.waiting == 3
        await task
    primary, replica = aorm.pool_stats(DEFAULT_DB_ALIAS), aorm.pool_stats(REPLICA)
    assert (primary.size, primary.in_use, primary.idle) == (1, 0, 1)
    assert (replica.size, replica.in_use, replica.idle) == (3, 0, 3)
