"""aorm.backends.mysql: what MySQL and MariaDB have of their own, and what must match Django's.

Where a behaviour is Django's (update counts, error classes and their MySQL
error codes, time zone lookups), the same call runs on the ``stock`` alias
(Django's backend on mysqlclient, in a worker thread) and on aorm's, and the
two must agree.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import os
import random
import threading
from collections.abc import Callable, Iterator
from typing import Any

import django.db.utils
import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import OperationalError, connections, models, transaction
from django.db.utils import load_backend
from students.models import Student
from support.load_client import Outcome, Request, run_load

import aorm
from tests.app.models import Author, Book
from tests.conftest import ALL_DATABASES, fetch_all_and_close, one_error_then_a_new_session
from tests.server import uvicorn_server

pytestmark = [
    ALL_DATABASES,
    pytest.mark.skipif(settings.DATABASE != "mysql", reason="MySQL backend tests"),
]


class Doc(models.Model):
    """A table of this module's own (see ``doc_table``)."""

    key = models.CharField(max_length=20, unique=True)
    data = models.JSONField(default=dict)
    hits = models.IntegerField(default=0)
    seen = models.DateTimeField(null=True)

    class Meta:
        app_label = "aorm"
        db_table = "aorm_mysql_doc"
        ordering = ["key"]


@pytest.fixture(scope="module", autouse=True)
def doc_table(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """``Doc``'s table, for this module's tests only (its app has no migrations)."""
    if settings.DATABASE != "mysql":
        yield
        return
    with django_db_blocker.unblock(), connections["stock"].schema_editor() as editor:
        editor.create_model(Doc)
    yield
    with django_db_blocker.unblock(), connections["stock"].schema_editor() as editor:
        editor.delete_model(Doc)


def _on(alias: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(alias, *args)``: natively on an aorm alias, in a worker thread on ``stock``."""
    if alias == "stock":
        return sync_to_async(fn)(alias, *args)
    return aorm.run(fn, alias, *args)


def _outcome(alias: str, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return ("returned", fn(alias, *args))
    except Exception as exc:
        cause = exc.__cause__
        return ("raised", type(exc), exc.args, type(cause).__module__, type(cause).__name__)


async def both(fn: Callable[..., Any], *args: Any) -> tuple[Any, Any]:
    """``fn``'s outcome on Django's backend, then on aorm's."""
    stock = await _on("stock", _outcome, fn, *args)
    native = await _on("default", _outcome, fn, *args)
    return stock, native


def _sql(alias: str, sql: str, params: Any = None) -> Any:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else cursor.rowcount


async def test_update_counts_matched_rows_as_django_does() -> None:
    """Django asks for FOUND_ROWS: an update that changes nothing still counts its rows."""
    await Doc.objects.abulk_create([Doc(key="a", hits=1), Doc(key="b", hits=2)])

    def same_value(alias: str) -> int:
        return Doc.objects.using(alias).filter(key="a").update(hits=1)

    def all_rows(alias: str) -> int:
        return Doc.objects.using(alias).update(hits=2)

    assert await both(same_value) == (("returned", 1), ("returned", 1))
    assert await both(all_rows) == (("returned", 2), ("returned", 2))
    assert await Doc.objects.filter(key="a").aupdate(hits=2) == 1


async def test_json_field() -> None:
    data = {"tags": ["x", "y"], "nested": {"name": "Zoë", "n": 3}, "none": None}
    doc = await Doc.objects.acreate(key="j", data=data)
    assert (await Doc.objects.aget(pk=doc.pk)).data == data
    assert await Doc.objects.filter(data__nested__name="Zoë").acount() == 1
    assert await Doc.objects.filter(data__has_key="tags").acount() == 1
    assert await Doc.objects.filter(data__nested__n__gt=2).acount() == 1
    assert await Doc.objects.filter(data__tags__contains="x").acount() == 1
    values = await Doc.objects.values_list("data__nested__n", flat=True).aall()
    assert values == [3]


async def test_bulk_create_update_conflicts() -> None:
    """``ON DUPLICATE KEY UPDATE`` (MySQL takes no conflict target)."""
    await Doc.objects.acreate(key="a", hits=1)
    await Doc.objects.abulk_create(
        [Doc(key="a", hits=5), Doc(key="b", hits=7)], update_conflicts=True, update_fields=["hits"]
    )
    assert [(d.key, d.hits) async for d in Doc.objects.all()] == [("a", 5), ("b", 7)]
    await Doc.objects.abulk_create([Doc(key="a", hits=9)], ignore_conflicts=True)
    assert (await Doc.objects.aget(key="a")).hits == 5


async def test_select_for_update_skip_locked_and_nowait() -> None:
    await Doc.objects.abulk_create([Doc(key="a"), Doc(key="b")])
    locked, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with transaction.atomic():
            await Doc.objects.select_for_update().aget(key="a")
            locked.set()
            await release.wait()

    task = asyncio.create_task(holder())
    try:
        await locked.wait()
        async with transaction.atomic():
            free = await Doc.objects.select_for_update(skip_locked=True).values_list(
                "key", flat=True
            )
            assert free == ["b"]
        with pytest.raises(OperationalError) as native:
            async with transaction.atomic():
                await Doc.objects.select_for_update(nowait=True).aget(key="a")

        def nowait_on_stock() -> None:
            with transaction.atomic(using="stock"):
                Doc.objects.using("stock").select_for_update(nowait=True).get(key="a")

        with pytest.raises(OperationalError) as stock:
            await sync_to_async(nowait_on_stock)()
        assert native.value.args == stock.value.args
    finally:
        release.set()
        await task


def _create(alias: str, model: type[models.Model], fields: dict[str, Any]) -> Any:
    return model.objects.using(alias).create(**fields).pk


async def test_errors_are_djangos_with_mysqlclients_codes_and_messages() -> None:
    author = await Author.objects.acreate(name="ann")
    await Doc.objects.acreate(key="dup")
    cases: list[tuple[str, int, Callable[..., Any], tuple[Any, ...]]] = [
        ("IntegrityError", 1062, _create, (Doc, {"key": "dup"})),
        ("DataError", 1406, _create, (Doc, {"key": "x" * 21})),
        ("IntegrityError", 1452, _create, (Book, {"title": "t", "author_id": author.pk + 9})),
        # mysqlclient says OperationalError; Django's CursorWrapper makes it an IntegrityError.
        (
            "IntegrityError",
            1048,
            _sql,
            ("INSERT INTO students_student (name, age) VALUES ('a', NULL)",),
        ),
        ("OperationalError", 1054, _sql, ("SELECT nope FROM students_student",)),
        ("ProgrammingError", 1064, _sql, ("SELEC 1",)),
        ("ProgrammingError", 1146, _sql, ("SELECT * FROM no_such_table",)),
    ]
    for name, code, fn, args in cases:
        stock, native = await both(fn, *args)
        assert stock[:2] == ("raised", getattr(django.db.utils, name)), (code, stock)
        assert stock[2][0] == code, stock
        assert native == stock, (code, native, stock)
    assert await Doc.objects.acount() == 1  # and the connection works on


async def test_cancelled_query_is_killed_on_the_server_and_its_connection_closed() -> None:
    marker = "aorm-cancel-test"

    def slow() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(f"SELECT SLEEP(30) /* {marker} */")

    def running() -> list[tuple[int, str]]:
        rows = _sql(
            "stock",
            "SELECT ID, COMMAND FROM information_schema.PROCESSLIST "
            "WHERE INFO LIKE %s AND ID <> CONNECTION_ID()",
            [f"%{marker}%"],
        )
        return [(int(row[0]), str(row[1])) for row in rows]

    def session_exists(thread_id: int) -> bool:
        sql = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE ID = %s"
        return bool(_sql("stock", sql, [thread_id])[0][0])

    task = asyncio.create_task(aorm.run(slow))
    async with asyncio.timeout(10):
        while not (seen := await sync_to_async(running)()):
            await asyncio.sleep(0.01)
    [(thread_id, command)] = seen
    assert command == "Query"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # KILL QUERY was sent before the cancellation reached us: the statement ends at
    # once (MariaDB alone would notice the closed socket only seconds later).
    async with asyncio.timeout(2):
        while await sync_to_async(running)() or await sync_to_async(session_exists)(thread_id):
            await asyncio.sleep(0.01)
    stats = aorm.pool_stats("default")
    assert (stats.in_use, stats.waiting) == (0, 0)
    assert await Student.objects.acount() == 0  # the pool serves on


def connection_id(alias: str) -> int:
    return int(_sql(alias, "SELECT CONNECTION_ID()")[0][0])


def _kill(thread_id: int) -> None:
    _sql("stock", f"KILL CONNECTION {int(thread_id)}")


async def test_server_side_kill_costs_one_error_then_recovery() -> None:
    await one_error_then_a_new_session(connection_id, _kill)
    assert await Student.objects.acount() == 0


async def test_with_health_checks_a_killed_connection_costs_no_error() -> None:
    first = await aorm.run(connection_id, "checked")
    await sync_to_async(_kill)(first)
    assert await aorm.run(connection_id, "checked") != first  # pinged, discarded, replaced


async def test_no_sql_runs_off_the_event_loop_thread(sql_log: Any) -> None:
    await Doc.objects.acreate(key="a", data={"n": 1})
    async with transaction.atomic():
        doc = await Doc.objects.select_for_update().aget(key="a")
        try:
            async with transaction.atomic():  # a savepoint, rolled back
                await Doc.objects.acreate(key="b")
                raise RuntimeError
        except RuntimeError:
            pass
        doc.hits = 3
        await doc.asave()
    await Doc.objects.abulk_create([Doc(key="c")], update_conflicts=True, update_fields=["hits"])
    await asyncio.gather(*(Doc.objects.acount() for _ in range(5)))
    assert [d.key async for d in Doc.objects.all()] == ["a", "c"]
    assert any("SAVEPOINT" in sql for _, sql, _ in sql_log.statements)
    assert sql_log.threads() == {threading.get_ident()}


async def test_the_unix_socket() -> None:
    """HOST ``localhost`` means the server's socket, as for mysqlclient."""
    await Student.objects.using("socket").acreate(name="s", age=1)
    host = await aorm.run(
        _sql,
        "socket",
        "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()",
    )
    assert host == (("localhost",),)
    assert await Student.objects.acount() == 1


async def test_time_zone_lookups_match_django() -> None:
    if not await aorm.run(lambda: connections["default"].features.has_zoneinfo_database):
        pytest.skip("the server has no time zone tables (make test loads them)")
    # 23:30 UTC on 1 March is 00:30 on 2 March in Europe/Paris (TIME_ZONE).
    seen = datetime.datetime(2024, 3, 1, 23, 30, tzinfo=datetime.UTC)
    await Doc.objects.acreate(key="t", seen=seen)

    def lookups(alias: str) -> Any:
        docs = Doc.objects.using(alias)
        return (
            docs.filter(seen__date=datetime.date(2024, 3, 2)).count(),
            list(docs.values_list("seen__day", "seen__hour")),
            docs.get().seen,
        )

    stock, native = await both(lookups)
    assert stock == native == ("returned", (1, [(2, 0)], seen))


async def test_transaction_isolation_level_and_session_setup() -> None:
    level = await aorm.run(_sql, "default", "SELECT @@SESSION.tx_isolation")
    assert level == (("READ-COMMITTED",),)  # Django's default, set once per pooled connection
    charset = await aorm.run(_sql, "default", "SELECT @@character_set_client")
    assert charset == (("utf8mb4",),)


LOAD_USER = "aorm_load"  # the ASGI server's connections, told apart from the test's
LOAD_POOL = 8  # the pool of the test settings' default alias


def _load_sessions() -> list[tuple[int, str, int]]:
    """(id, command, open transactions) of the ASGI server's connections."""
    rows = _sql(
        "stock",
        "SELECT p.ID, p.COMMAND, COUNT(t.trx_id) FROM information_schema.PROCESSLIST p "
        "LEFT JOIN information_schema.INNODB_TRX t ON t.trx_mysql_thread_id = p.ID "
        "WHERE p.USER = %s GROUP BY p.ID, p.COMMAND",
        [LOAD_USER],
    )
    return [(int(i), str(command), int(n)) for i, command, n in rows]


def _kill_load_sessions() -> list[int]:
    killed = []
    for thread_id, _, _ in _load_sessions():
        _kill(thread_id)
        killed.append(thread_id)
    return killed


@pytest.mark.timeout(240)
def test_asgi_load_with_hang_ups_and_every_connection_killed() -> None:
    """600 requests at concurrency 50 under uvicorn, a quarter abandoned mid-request, every
    server connection killed once: only requests that ran into a killed connection fail,
    the server never holds more connections than its pool, none is left busy or in a
    transaction, and it serves normally afterwards."""
    database = connections["default"].settings_dict["NAME"]
    _sql("stock", f"CREATE USER IF NOT EXISTS {LOAD_USER}@'%'")  # no params: no % escaping
    _sql("stock", f"GRANT ALL ON `{database}`.* TO {LOAD_USER}@'%'")
    seed = int(os.environ.get("AORM_LOAD_SEED", random.randrange(1 << 32)))
    rng = random.Random(seed)
    requests = [
        Request(
            rng.choice(["/students/", "/atomic/ok/"]),
            hang_up_after=rng.uniform(0.002, 0.05) if i % 4 == 0 else None,
        )
        for i in range(600)
    ]
    after = [Request(path) for path in ("/students/", "/atomic/ok/") for _ in range(3 * LOAD_POOL)]

    async def scenario(port: int) -> tuple[list[Outcome], list[int], int, list[Outcome]]:
        killed: list[int] = []
        peak = 0
        faults: list[asyncio.Task[None]] = []

        async def fault() -> None:
            killed.extend(await sync_to_async(_kill_load_sessions)())

        def on_outcome(outcome: Outcome, completed: int) -> None:
            if completed == 200:
                faults.append(asyncio.get_running_loop().create_task(fault()))

        load = asyncio.create_task(
            run_load("127.0.0.1", port, requests, concurrency=50, on_outcome=on_outcome)
        )
        while not load.done():  # sampled: the server's connections, never more than its pool
            peak = max(peak, len(await sync_to_async(_load_sessions)()))
            await asyncio.wait({load}, timeout=0.05)
        outcomes = await load
        await asyncio.gather(*faults)
        return outcomes, killed, peak, await run_load("127.0.0.1", port, after, concurrency=8)

    try:
        with uvicorn_server(AORM_MYSQL_USER=LOAD_USER) as url:
            port = int(url.rsplit(":", 1)[1])
            outcomes, killed, peak, after_fault = asyncio.run(scenario(port))
            sessions = _load_sessions()
    finally:
        _sql("stock", f"DROP USER IF EXISTS {LOAD_USER}@'%'")
    statuses = [o.status for o in outcomes if not o.hung_up]
    summary = (seed, len(killed), peak, {s: statuses.count(s) for s in set(statuses)})
    assert [o.error for o in outcomes if o.error] == [], summary
    assert killed, summary
    assert set(statuses) <= {200, 500}, summary
    assert statuses.count(500) <= len(killed), summary  # a killed connection fails one operation
    assert sum(o.hung_up for o in outcomes) > 0, summary
    assert peak <= LOAD_POOL, summary
    assert [o.status for o in after_fault] == [200] * len(after), summary
    assert len(sessions) <= LOAD_POOL, (sessions, summary)
    assert [s for s in sessions if s[1] != "Sleep" or s[2]] == [], (sessions, summary)
    written = Student.objects.using("stock").filter(name="ok").count()
    acknowledged = sum(
        o.status == 200 for o in [*outcomes, *after_fault] if o.request.path == "/atomic/ok/"
    )
    issued = sum(o.request.path == "/atomic/ok/" for o in [*outcomes, *after_fault])
    assert acknowledged <= written <= issued, summary


def _wrapper(alias: str, **options: Any) -> Any:
    """A DatabaseWrapper of aorm's backend with these OPTIONS, on an alias of its own."""
    settings_dict = {**connections["default"].settings_dict, "OPTIONS": options}
    return load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, alias)


@pytest.mark.parametrize("pool", [False, {"max_size": 2}])
async def test_options_reach_the_async_connection(pool: Any) -> None:
    """init_command, sql_mode, isolation_level and charset mean what they mean to Django."""
    wrapper = _wrapper(
        f"options-{bool(pool)}",
        pool=pool,
        init_command="SET @aorm_marker = 42",
        sql_mode="STRICT_ALL_TABLES",
        isolation_level="repeatable read",
        charset="utf8mb4",
    )
    sql = "SELECT @aorm_marker, @@SESSION.sql_mode, @@SESSION.tx_isolation, @@character_set_client"
    assert await aorm.run(fetch_all_and_close, wrapper, sql) == (
        (42, "STRICT_ALL_TABLES", "REPEATABLE-READ", "utf8mb4"),
    )


async def test_an_option_the_async_driver_cannot_honour_is_refused() -> None:
    wrapper = _wrapper("compressed", compress=True)
    with pytest.raises(ImproperlyConfigured, match="compress cannot be passed to asyncmy"):
        await aorm.run(fetch_all_and_close, wrapper, "SELECT 1")


async def test_server_warnings_are_neither_fetched_nor_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """As on mysqlclient: no ``SHOW WARNINGS`` round trip, no log line per warning."""
    sql = "SELECT CAST('x' AS SIGNED), @@warning_count"
    with caplog.at_level(logging.DEBUG):
        assert await aorm.run(_sql, "default", sql) == ((0, 1),)
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncmy")] == []


async def test_a_socket_path_as_host() -> None:
    """HOST starting with ``/`` is the socket's path, as Django tells mysqlclient."""
    from aorm.backends.mysql import driver  # needs the mysql extra: only when run

    path = driver.default_socket()
    if path is None:
        pytest.skip("no local MariaDB/MySQL socket")
    settings_dict = {**connections["default"].settings_dict, "HOST": path, "PORT": ""}
    settings_dict["OPTIONS"] = {"pool": False}
    wrapper = load_backend(settings_dict["ENGINE"]).DatabaseWrapper(settings_dict, "socket-path")
    sql = "SELECT HOST FROM information_schema.PROCESSLIST WHERE ID = CONNECTION_ID()"
    assert await aorm.run(fetch_all_and_close, wrapper, sql) == (("localhost",),)
