"""Tests that isolate: Django's TestCase and pytest-django's ``db`` with aorm's async writes.

Each class has two tests that both expect a clean start and both write: in
whatever order they run, a write escaping the first one fails the second.
"""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys
import threading

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction
from django.test import AsyncClient, TestCase, TransactionTestCase
from students.models import Student

import aorm
from tests.app.models import Author
from tests.conftest import recording_sql
from tests.server import ROOT


class AsyncWritesInTestCase(TestCase):
    databases = {"default"}

    @classmethod
    def setUpTestData(cls) -> None:
        Author.objects.create(name="fixture")

    async def check_clean_then_write(self, name: str) -> None:
        self.assertEqual([a.name async for a in Author.objects.all()], ["fixture"])
        self.assertEqual(await Student.objects.acount(), 0)
        await Student.objects.acreate(name=name, age=1)
        async with transaction.atomic():
            await Student.objects.acreate(name=f"{name} in block", age=2)
        await aorm.run(lambda: Student.objects.create(name=f"{name} via run", age=3))
        self.assertEqual(len(await Student.objects.all()), 3)

    async def test_async_first(self) -> None:
        await self.check_clean_then_write("first")

    async def test_async_second(self) -> None:
        await self.check_clean_then_write("second")

    def test_a_connected_copy_does_not_hide_the_test_transaction(self) -> None:
        copy = connection.copy()  # as Django's own tests do
        copy.ensure_connection()
        del copy
        gc.collect()
        async_to_sync(self.check_clean_then_write)("after a copy")

    def test_sync_sees_the_same_rows(self) -> None:
        self.assertEqual(Student.objects.count(), 0)
        self.assertEqual(Author.objects.get().name, "fixture")

    async def test_the_sql_runs_on_the_event_loop_thread(self) -> None:
        with recording_sql() as log:
            await Student.objects.acount()
        self.assertEqual(log.threads(), {threading.get_ident()})

    async def test_assert_num_queries_counts_async_queries(self) -> None:
        with self.assertNumQueries(2):
            await Student.objects.acreate(name="a", age=1)
            await Student.objects.acount()

    async def test_capture_on_commit_callbacks_from_async_code(self) -> None:
        calls: list[str] = []

        async def notify() -> None:
            calls.append("async")

        with self.captureOnCommitCallbacks(execute=True) as callbacks:
            async with transaction.atomic():
                transaction.on_commit(lambda: calls.append("sync"))
                transaction.on_commit(notify)
        self.assertEqual(len(callbacks), 2)
        # Run from async code outside the bridge, a coroutine callback is a task on the loop.
        await asyncio.sleep(0)
        self.assertEqual(calls, ["sync", "async"])

    async def test_async_client_against_an_async_view(self) -> None:
        response = await AsyncClient().get("/example/")
        self.assertEqual(response.json(), {"student": "Ravi", "total_students": 1})


class AsyncWritesInTransactionTestCase(TransactionTestCase):
    databases = {"default"}

    async def check_clean_then_write(self, name: str) -> None:
        self.assertEqual(await Student.objects.acount(), 0)
        async with transaction.atomic():
            await Student.objects.acreate(name=name, age=1)
        self.assertTrue(await Student.objects.filter(name=name).aexists())

    async def test_first(self) -> None:
        await self.check_clean_then_write("first")

    async def test_second(self) -> None:
        await self.check_clean_then_write("second")


@pytest.fixture
def fixture_author(db: None) -> Author:
    return Author.objects.create(name="pytest fixture")


@pytest.mark.parametrize("round", [1, 2])
@pytest.mark.django_db
async def test_pytest_django_db_isolates_async_writes(round: int, fixture_author: Author) -> None:
    assert [a.name async for a in Author.objects.all()] == ["pytest fixture"]
    assert await Student.objects.acount() == 0
    await Student.objects.acreate(name=f"round {round}", age=round)
    async with transaction.atomic():
        await Student.objects.acreate(name=f"round {round} in block", age=round)
    assert await Student.objects.acount() == 2


@pytest.mark.parametrize("round", [1, 2])
@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.django_db
async def test_pytest_django_db_with_a_module_scoped_loop(round: int) -> None:
    assert await Student.objects.acount() == 0
    async with transaction.atomic():
        await Student.objects.acreate(name=f"round {round}", age=round)
    assert [s.name for s in await Student.objects.all()] == [f"round {round}"]


@pytest.mark.parametrize("round", [1, 2])
@pytest.mark.django_db(transaction=True)
async def test_pytest_django_transactional_db(round: int) -> None:
    assert await Student.objects.acount() == 0
    async with transaction.atomic():
        await Student.objects.acreate(name=f"round {round}", age=round)
    assert await Student.objects.acount() == 1


RUNNER_OPTIONS = ["-v", "2", "--noinput", "--parallel", "2", "--shuffle"]


def test_djangos_own_runner_on_these_test_cases() -> None:
    """``manage.py test`` (Django's DiscoverRunner) runs the TestCase classes above, shuffled."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "AORM_TEST_NAME": f"{connection.settings_dict['NAME']}_runner",
        "PYTHONPATH": str(ROOT),
    }
    result = subprocess.run(
        [sys.executable, "-m", "django", "test", "tests.test_isolation", *RUNNER_OPTIONS],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Ran 10 tests" in result.stderr and "OK" in result.stderr, result.stderr[-3000:]
