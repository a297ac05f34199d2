"""The seed documents' examples, verbatim, natively."""

from __future__ import annotations

import threading
from typing import Any

import httpx
import pytest
from asgiref.sync import sync_to_async
from students.models import Student

from tests.conftest import ALL_DATABASES
from tests.server import uvicorn_server

pytestmark = ALL_DATABASES


async def make_students() -> None:
    await Student.objects.abulk_create(
        [Student(name="Aman", age=20), Student(name="Ravi", age=21), Student(name="Sara", age=20)]
    )


async def test_await_queryset_returns_the_rows(sql_log: Any) -> None:
    await make_students()
    sql_log.clear()
    students = await Student.objects.all()
    assert isinstance(students, list)
    assert [s.name for s in students] == ["Aman", "Ravi", "Sara"]
    assert [s.name for s in await Student.objects.filter(age=20)] == ["Aman", "Sara"]
    assert sql_log.threads() == {threading.get_ident()}
    assert len(sql_log.statements) == 2


async def test_aall_on_managers_and_querysets() -> None:
    await make_students()
    assert [s.name for s in await Student.objects.aall()] == ["Aman", "Ravi", "Sara"]
    assert [s.name for s in await Student.objects.filter(age=21).aall()] == ["Ravi"]


async def test_await_yields_what_the_queryset_yields() -> None:
    await make_students()
    assert await Student.objects.filter(age=21).values("name", "age") == [
        {"name": "Ravi", "age": 21}
    ]
    assert await Student.objects.values_list("name", "age") == [
        ("Aman", 20),
        ("Ravi", 21),
        ("Sara", 20),
    ]
    assert await Student.objects.values_list("age", flat=True).distinct().order_by("age") == [
        20,
        21,
    ]
    assert await Student.objects.none() == []


async def test_await_fills_the_result_cache_once(sql_log: Any) -> None:
    await make_students()
    queryset = Student.objects.all()
    sql_log.clear()
    first = await queryset
    second = await queryset
    assert [s.pk for s in first] == [s.pk for s in second]
    assert len(sql_log.statements) == 1
    assert len(queryset) == 3  # the cache is Django's: no query, so no guard


async def test_seed_method_table() -> None:
    await Student.objects.acreate(name="Aman", age=20)
    student = await Student.objects.aget(name="Aman")
    assert student.age == 20
    assert await Student.objects.acount() == 1
    assert await Student.objects.filter(age=20).aexists()
    assert (await Student.objects.afirst()).name == "Aman"  # type: ignore[union-attr]
    assert (await Student.objects.alast()).name == "Aman"  # type: ignore[union-attr]
    assert await Student.objects.filter(age=20).aupdate(age=21) == 1
    assert await Student.objects.all().adelete() == (1, {"students.Student": 1})


async def test_sync_orm_in_async_code_is_refused_with_the_async_form() -> None:
    from django.core.exceptions import SynchronousOnlyOperation

    with pytest.raises(SynchronousOnlyOperation, match=r"await queryset"):
        list(Student.objects.all())
    with pytest.raises(SynchronousOnlyOperation, match=r"await queryset\.aget"):
        Student.objects.get(id=1)
    with pytest.raises(SynchronousOnlyOperation, match=r"await queryset\.acount"):
        Student.objects.count()
    with pytest.raises(SynchronousOnlyOperation, match=r"await obj\.asave"):
        Student(name="x", age=1).save()


def test_seed_views_under_uvicorn() -> None:
    Student.objects.create(name="Aman", age=20)
    with uvicorn_server() as url, httpx.Client(base_url=url, timeout=30) as client:
        listing = client.get("/students/")
        assert listing.status_code == 200
        assert listing.json() == [{"name": "Aman", "age": 20}]
        example = client.get("/example/")
        assert example.status_code == 200
        assert example.json() == {"student": "Ravi", "total_students": 2}
        assert client.get("/students/").json()[-1] == {"name": "Ravi", "age": 21}
    assert Student.objects.count() == 2


async def test_seed_views_in_process(sql_log: Any) -> None:
    """The same views through Django's AsyncClient: every statement on the loop's thread."""
    from django.test import AsyncClient

    await Student.objects.acreate(name="Aman", age=20)
    sql_log.clear()
    response = await AsyncClient().get("/example/")
    assert response.json() == {"student": "Ravi", "total_students": 2}
    assert len(sql_log.statements) == 3
    assert sql_log.threads() == {threading.get_ident()}
    assert await sync_to_async(Student.objects.count)() == 2
