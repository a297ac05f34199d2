"""Database errors reach async callers as Django's exceptions, and the next call works."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django import forms
from django.db import DataError, IntegrityError, connections
from django.db.models.signals import post_save
from students.models import Student

import aorm
from tests.app.models import Author, Book
from tests.conftest import (
    ALL_DATABASES,
    one_error_then_a_new_session,
    postgresql_only,
    server_sessions,
    until_server_sessions,
)

pytestmark = ALL_DATABASES

ALIASES = ["default", "unpooled"]


@pytest.mark.parametrize("alias", ALIASES)
async def test_integrity_error_then_the_next_call_works(alias: str) -> None:
    await Author.objects.using(alias).acreate(name="ann")
    with pytest.raises(IntegrityError):
        await Author.objects.using(alias).acreate(name="ann")
    assert await Author.objects.using(alias).acount() == 1


@pytest.mark.parametrize("alias", ALIASES)
@postgresql_only("SQLite does not enforce column sizes")
async def test_data_error(alias: str) -> None:
    author = await Author.objects.using(alias).acreate(name="ann")
    with pytest.raises(DataError):
        await Book.objects.using(alias).acreate(title="t", author=author, pages=10**6)
    assert await Book.objects.using(alias).acount() == 0


@postgresql_only("server sessions; SQLite has none")
async def test_operational_error_when_the_server_ends_the_session_then_recovery() -> None:
    await one_error_then_a_new_session(backend_pid, _terminate)
    assert await Student.objects.acount() == 0


@postgresql_only("server sessions; SQLite has none")
async def test_with_health_checks_a_dropped_connection_costs_no_error() -> None:
    pid = await aorm.run(backend_pid, "checked")
    await sync_to_async(_terminate)(pid)
    assert await aorm.run(backend_pid, "checked") != pid  # checked, discarded, replaced
    assert await Student.objects.using("checked").acount() == 0


def backend_pid(alias: str) -> int:
    """The server process behind ``alias``'s connection (sync code, run through aorm.run)."""
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _terminate(pid: int) -> None:
    with connections["stock"].cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])


async def test_run_gives_lazy_relations_and_sync_helpers_native_access() -> None:
    author = await Author.objects.acreate(name="ann")
    await Book.objects.acreate(title="b1", author=author)
    book = await Book.objects.aget(title="b1")

    def describe(b: Book) -> str:  # lazy FK access and a related manager, in sync code
        return f"{b.title} by {b.author.name} ({b.author.books.count()} book)"

    assert await aorm.run(describe, book) == "b1 by ann (1 book)"


class AuthorForm(forms.ModelForm):  # type: ignore[type-arg]
    class Meta:
        model = Author
        fields = ["name"]


async def test_run_validates_a_model_form() -> None:
    await Author.objects.acreate(name="ann")
    form = AuthorForm(data={"name": "ann"})
    assert not await aorm.run(form.is_valid)  # the unique check queries the database
    assert "already exists" in str(form.errors)
    fresh = AuthorForm(data={"name": "bob"})
    assert await aorm.run(fresh.is_valid)
    await aorm.run(fresh.save)
    assert await Author.objects.filter(name="bob").aexists()


async def test_async_to_sync_in_a_signal_receiver_inside_the_bridge() -> None:
    counts: list[int] = []

    async def count() -> int:
        return await Student.objects.acount()

    def receiver(sender: Any, instance: Student, **kwargs: Any) -> None:
        counts.append(async_to_sync(count)())

    post_save.connect(receiver, sender=Student)
    try:
        await Student.objects.acreate(name="a", age=1)
    finally:
        post_save.disconnect(receiver, sender=Student)
    assert counts == [1]


@postgresql_only("pg_stat_activity; SQLite: test_sqlite_backend")
async def test_cancelled_query_leaves_no_connection_behind() -> None:
    def slow() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_sleep(5)")

    task = asyncio.create_task(aorm.run(slow))
    await until_server_sessions("query LIKE 'SELECT pg_sleep(5)%%' AND state = 'active'", 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await Student.objects.acount() == 0
    assert await server_sessions("query LIKE 'SELECT pg_sleep(5)%%' AND state = 'active'") == 0


@postgresql_only("pg_stat_activity; SQLite: test_sqlite_backend")
async def test_no_connection_leak_after_many_operations() -> None:
    await Student.objects.acreate(name="a", age=1)
    baseline = await server_sessions()
    for _ in range(2_000):
        await Student.objects.aget(name="a")
    assert await server_sessions() == baseline  # one, reused
    await asyncio.gather(*(Student.objects.acount() for _ in range(200)))
    assert await server_sessions() <= baseline + 7  # max_size 8
