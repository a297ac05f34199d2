"""The message of SynchronousOnlyOperation names the async form of the call that raised it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connection
from students.models import Student

from tests.app.models import Author, Book, Tag
from tests.conftest import ALL_DATABASES

pytestmark = ALL_DATABASES

RUN = "use `await aorm.run(fn, *args)`"


@pytest.mark.parametrize(
    ("call", "expected"),
    [
        (lambda qs: qs.get(pk=1), "QuerySet.get() queries the database: use `await queryset.aget"),
        (lambda qs: qs.count(), "use `await queryset.acount(...)`"),
        (lambda qs: qs.exists(), "use `await queryset.aexists(...)`"),
        (lambda qs: qs.first(), "use `await queryset.afirst(...)`"),
        (lambda qs: qs.update(age=1), "use `await queryset.aupdate(...)`"),
        (lambda qs: qs.delete(), "use `await queryset.adelete(...)`"),
        (lambda qs: qs.in_bulk([1]), "use `await queryset.ain_bulk(...)`"),
        (lambda qs: qs.create(name="a", age=1), "use `await queryset.acreate(...)`"),
        (lambda qs: list(qs.iterator()), "use `async for obj in queryset.aiterator(...)`"),
        (lambda qs: list(qs), "evaluating a QuerySet queries the database: use `await queryset`"),
        (lambda qs: len(qs), "evaluating a QuerySet"),
        (lambda qs: bool(qs), "evaluating a QuerySet"),
        (lambda qs: qs[0], "evaluating a QuerySet"),
    ],
    ids=lambda value: "" if callable(value) else value.split(":")[0][:30],
)
async def test_queryset_calls(call: Callable[[Any], Any], expected: str) -> None:
    with pytest.raises(SynchronousOnlyOperation) as error:
        call(Student.objects.all())
    message = str(error.value)
    assert message.startswith("You cannot call this from an async context: ")
    assert expected in message and RUN in message


@pytest.mark.parametrize("method", ["save", "delete", "refresh_from_db"])
async def test_model_methods(method: str) -> None:
    student = await Student.objects.acreate(name="a", age=1)
    with pytest.raises(SynchronousOnlyOperation, match=rf"await obj\.a{method}\(\.\.\.\)"):
        getattr(student, method)()


async def test_related_managers() -> None:
    author = await Author.objects.acreate(name="ann")
    book = await Book.objects.acreate(title="b", author=author)
    tag = await Tag.objects.acreate(name="red")
    with pytest.raises(SynchronousOnlyOperation, match=r"await manager\.aadd\(\.\.\.\)"):
        book.tags.add(tag)  # many-to-many
    with pytest.raises(SynchronousOnlyOperation, match=r"await manager\.acreate\(\.\.\.\)"):
        author.books.create(title="c")  # reverse foreign key


async def test_the_users_own_helpers_between_the_call_and_the_guard() -> None:
    def count_students() -> int:  # user code: the message is about the ORM call inside
        return Student.objects.count()

    with pytest.raises(SynchronousOnlyOperation, match=r"await queryset\.acount"):
        count_students()


async def test_anything_else_names_aorm_run() -> None:
    with pytest.raises(SynchronousOnlyOperation) as error:
        connection.cursor()
    expected = "to run a block of synchronous ORM code natively, "
    assert str(error.value) == f"You cannot call this from an async context: {expected}{RUN}."
