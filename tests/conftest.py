"""Fixtures shared by the whole suite.

Async tests write through their own pooled connections, which a test
transaction cannot contain, so they use ``transactional_db`` semantics:
tables are flushed after each test (see ``native_db``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import OperationalError, connections
from django.db.backends import utils as backend_utils
from django.db.backends.base.base import BaseDatabaseWrapper

import aorm

ALL_DATABASES = pytest.mark.django_db(transaction=True, databases="__all__")


def postgresql_only(reason: str) -> pytest.MarkDecorator:
    """For what only PostgreSQL has (server sessions, pg_sleep, SELECT FOR UPDATE...)."""
    return pytest.mark.skipif(settings.DATABASE != "postgresql", reason=reason)


async def server_sessions(condition: str = "TRUE") -> int:
    """PostgreSQL sessions on the test database matching ``condition``, other than ours."""

    def count() -> int:
        with connections["stock"].cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                f"AND pid <> pg_backend_pid() AND {condition}"
            )
            return int(cursor.fetchone()[0])

    return await sync_to_async(count)()


async def until_server_sessions(condition: str, count: int, seconds: float = 10) -> None:
    """Wait until ``count`` sessions match ``condition``; fail after ``seconds``."""
    async with asyncio.timeout(seconds):
        while await server_sessions(condition) < count:
            await asyncio.sleep(0.01)


async def stock_sql(sql: str) -> None:
    """Run ``sql`` on the suite's stock-backend connection (Django's own, in its thread)."""

    def execute() -> None:
        with connections["stock"].cursor() as cursor:
            cursor.execute(sql)

    await sync_to_async(execute)()


async def one_error_then_a_new_session(
    session_id: Callable[[str], int], end: Callable[[int], None], alias: str = "default"
) -> None:
    """The server ends ``alias``'s pooled session (``end``, given ``session_id``'s answer):
    the next call fails, the one after runs on a new session. No health checks here."""
    first = await aorm.run(session_id, alias)
    await sync_to_async(end)(first)
    with pytest.raises(OperationalError):
        await aorm.run(session_id, alias)  # the pool hands back the dead connection
    assert await aorm.run(session_id, alias) != first


def fetch_all_and_close(wrapper: BaseDatabaseWrapper, sql: str) -> Any:
    """``sql``'s rows as the driver gives them, on ``wrapper``'s own connection, closed after."""
    try:
        with wrapper.cursor() as cursor:
            cursor.execute(sql)
            return cursor.fetchall()
    finally:
        wrapper.close()


@dataclass
class SqlLog:
    """Every SQL statement executed through Django's cursors, with the thread that ran it."""

    statements: list[tuple[str, str, int]] = field(default_factory=list)

    def threads(self) -> set[int]:
        return {thread for _, _, thread in self.statements}

    def clear(self) -> None:
        self.statements.clear()


@contextmanager
def recording_sql() -> Iterator[SqlLog]:
    """Record every statement run through Django's cursors while the block runs."""
    log = SqlLog()
    original = backend_utils.CursorWrapper._execute_with_wrappers

    def recording(self, sql, params, many, executor):  # type: ignore[no-untyped-def]
        log.statements.append((self.db.alias, str(sql), threading.get_ident()))
        return original(self, sql, params, many, executor)

    backend_utils.CursorWrapper._execute_with_wrappers = recording  # type: ignore[method-assign]
    try:
        yield log
    finally:
        backend_utils.CursorWrapper._execute_with_wrappers = original  # type: ignore[method-assign]


@pytest.fixture
def sql_log() -> Iterator[SqlLog]:
    with recording_sql() as log:
        yield log


@pytest.fixture(autouse=True)
def close_reference_connections() -> Iterator[None]:
    """Close what ``sync_to_async`` reference calls left open in asgiref's worker thread."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()


async def library() -> tuple[Any, Any, Any, Any]:
    """Authors ann and bob; tags red and blue; books b1 (ann: red, blue), b2 (ann: red), b3."""
    from tests.app.models import Author, Book, Tag

    ann = await Author.objects.acreate(name="ann")
    bob = await Author.objects.acreate(name="bob")
    red = await Tag.objects.acreate(name="red")
    blue = await Tag.objects.acreate(name="blue")
    for title, author, tags in (("b1", ann, [red, blue]), ("b2", ann, [red]), ("b3", bob, [])):
        book = await Book.objects.acreate(title=title, author=author)
        await book.tags.aset(tags)
    return ann, bob, red, blue
