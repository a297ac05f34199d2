"""What debugging and monitoring tools hook into sees aorm's async statements.

On an aorm alias, in async code: ``connection.execute_wrapper()`` sees every
statement (SQL, parameters, a duration measured around the real execution),
``connection.queries`` with ``DEBUG=True`` lists them with their timings, and
``connection_created`` is sent for the connections async code opens, in the
bridge, where its receiver can run SQL. Compared statement by statement with
what Django's cursor wrapper executed (``sql_log``), all on the loop's thread.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from django.conf import settings
from django.db import connection, reset_queries, transaction
from django.db.backends.signals import connection_created
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from students.models import Student

import aorm
from tests.app.models import Author, Book
from tests.conftest import ALL_DATABASES, SqlLog
from tests.server import uvicorn_server

pytestmark = ALL_DATABASES


class Recorder:
    """An ``execute_wrapper``: each statement's SQL, parameters, duration and thread."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any, float, int]] = []

    def __call__(
        self, execute: Callable[..., Any], sql: str, params: Any, many: bool, context: Any
    ) -> Any:
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            self.calls.append((sql, params, time.perf_counter() - start, threading.get_ident()))


def default_statements(sql_log: SqlLog) -> list[str]:
    return [sql for alias, sql, _ in sql_log.statements if alias == "default"]


async def workload(atomic: bool = True) -> None:
    """Each way async code reaches the database: a method, await, async for, run, gather..."""
    ann = await Author.objects.acreate(name="ann")
    await Book.objects.acreate(title="b1", author=ann)
    assert (await Author.objects.aget(name="ann")).id == ann.id
    assert [b.title for b in await Book.objects.filter(author=ann)] == ["b1"]
    assert [a.name async for a in Author.objects.all()] == ["ann"]
    assert await aorm.run(lambda: Book.objects.get(title="b1").author.name) == "ann"
    assert await asyncio.gather(Author.objects.acount(), Book.objects.acount()) == [1, 1]
    if atomic:
        async with transaction.atomic():
            await Student.objects.acreate(name="s", age=20)
            assert await Student.objects.filter(age=20).acount() == 1


async def test_execute_wrapper_sees_every_statement(sql_log: SqlLog) -> None:
    recorder = Recorder()
    with connection.execute_wrapper(recorder):
        await workload()
    assert [sql for sql, *_ in recorder.calls] == default_statements(sql_log)
    assert len(recorder.calls) >= 9
    assert {thread for *_, thread in recorder.calls} == {threading.get_ident()}
    assert all(duration > 0 for _, _, duration, _ in recorder.calls)
    inserted = [(sql, params) for sql, params, *_ in recorder.calls if "INSERT" in sql]
    assert [params[:1] for _, params in inserted] == [("ann",), ("b1",), ("s",)]
    # Gone once the block ends, as in sync code.
    before = len(recorder.calls)
    await Author.objects.acount()
    assert len(recorder.calls) == before


async def test_execute_wrapper_installed_inside_a_transaction(sql_log: SqlLog) -> None:
    outer, inner = Recorder(), Recorder()
    with connection.execute_wrapper(outer):
        async with transaction.atomic():
            with connection.execute_wrapper(inner):
                await Author.objects.acreate(name="ann")
            await Author.objects.acount()
    assert len(inner.calls) == 1 and "INSERT" in inner.calls[0][0]
    assert [sql for sql, *_ in outer.calls] == default_statements(sql_log)  # SQLite: BEGIN too


async def test_debug_queries_log(sql_log: SqlLog) -> None:
    with override_settings(DEBUG=True):
        reset_queries()
        await workload(atomic=False)
        outside = list(connection.queries)
        expected = default_statements(sql_log)
        async with transaction.atomic():
            await Author.objects.acreate(name="bob")
            inside = list(connection.queries)  # the transaction's wrapper: its own log
    # The task's log lists every statement run outside transactions, with its time
    # and its parameters, as Django's log of a thread does.
    assert len(outside) == len(expected) >= 8
    assert all(float(q["time"]) >= 0 for q in outside)
    # (MySQL's first connection also logs Django's query of the server's settings.)
    assert any("'ann'" in q["sql"] and "INSERT" in q["sql"] for q in outside)
    assert any("'bob'" in q["sql"] for q in inside)


async def test_capture_queries_context(sql_log: SqlLog) -> None:
    with CaptureQueriesContext(connection) as captured:
        await Author.objects.acreate(name="ann")
        await Author.objects.acount()
    # (MySQL's first connection also runs Django's query of the server's settings.)
    queries = [q for q in captured.captured_queries if "@@sql_mode" not in q["sql"]]
    assert len(captured.captured_queries) == len(default_statements(sql_log))
    assert len(queries) == 2
    assert "'ann'" in queries[0]["sql"] and "COUNT" in queries[1]["sql"]
    assert all(float(q["time"]) >= 0 for q in queries)


@pytest.fixture
def created() -> Iterator[list[tuple[Any, int, Any]]]:
    """``connection_created`` receivers' calls: the wrapper, the thread, a query's result."""
    calls: list[tuple[Any, int, Any]] = []

    def receiver(sender: Any, connection: Any, **kwargs: Any) -> None:
        with connection.cursor() as cursor:  # what receivers do: SET search_path...
            cursor.execute("SELECT 1")
            calls.append((connection, threading.get_ident(), cursor.fetchone()[0]))

    connection_created.connect(receiver)
    yield calls
    connection_created.disconnect(receiver)


async def test_connection_created_signal(
    created: list[tuple[Any, int, Any]], sql_log: SqlLog
) -> None:
    await asyncio.gather(*(Author.objects.acount() for _ in range(3)))
    await Author.objects.acount()
    assert created, "no connection_created for the connections async code opened"
    assert {thread for _, thread, _ in created} == {threading.get_ident()}
    assert {result for *_, result in created} == {1}
    assert {wrapper.alias for wrapper, *_ in created} == {"default"}
    assert sql_log.threads() == {threading.get_ident()}


@pytest.fixture
def observed_server() -> Iterator[str]:
    """uvicorn serving an async view with debug-toolbar, Sentry and OpenTelemetry set up."""
    with uvicorn_server(DJANGO_SETTINGS_MODULE="tests.frameworks.observe_settings") as url:
        yield url


def test_monitoring_tools_under_uvicorn(observed_server: str) -> None:
    """debug-toolbar's SQL panel (aorm's), Sentry and OpenTelemetry on an async view."""
    with httpx.Client(base_url=observed_server, timeout=30) as client:
        for _ in range(2):
            page = client.get("/books/")
            assert page.status_code == 200, page.text
        recorded = client.get("/observed/").json()
    executed = [sql for sql, _ in recorded["executed"]]
    loop_thread = set(recorded["threads"])
    assert len(loop_thread) == 1 and len(executed) >= 8
    assert {thread for _, thread in recorded["executed"]} == loop_thread  # no SQL off the loop

    # The toolbar's SQL panel (aorm.contrib.debug_toolbar.SQLPanel): every statement,
    # its parameters interpolated as the toolbar shows them.
    assert len(recorded["toolbar"]) == len(executed)
    assert "VALUES ('ann')" in next(sql for sql in recorded["toolbar"] if "INSERT" in sql)

    # Sentry's Django integration: a db span per statement, on the loop's thread.
    statements = [(sql, thread) for sql, thread in recorded["sentry"] if sql != "connect"]
    assert sorted(sql for sql, _ in statements) == sorted(executed)
    assert {int(thread) for _, thread in statements} == loop_thread

    # OpenTelemetry: spans made by an execute_wrapper are children of the request's span.
    spans = recorded["otel"]
    ours = [span for span in spans if span["by"] == "aorm.tests"]
    assert [span["statement"] for span in ours] == executed
    assert {span["parent"] for span in ours} == {"GET /books/"}
    # Its psycopg instrumentation sees none of aorm's statements (it instruments
    # connections opened by psycopg's connect(), aorm runs Django's cursor over the
    # async connection); its sqlite3 one sees them, outside the request's trace
    # (they run in the connection's thread). docs/frameworks.md says so.
    others = [span for span in spans if span["by"] != "aorm.tests"]
    if settings.DATABASE == "sqlite":
        assert others and {span["parent"] for span in others} == {None}
    else:  # PostgreSQL; and MySQL, which neither instruments
        assert others == []
