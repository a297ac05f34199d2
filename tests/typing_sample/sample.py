"""What mypy says of aorm's API, checked by tests/test_typing.py (never run).

``# revealed: T`` is the type ``reveal_type`` must show on that line, and
``# error: code`` the error mypy must report there (qualified names are
compared by their last part).
"""

from typing import reveal_type

from django.db import transaction

import aorm
from tests.typing_sample.models import Course, Student


async def querysets(course: Course) -> None:
    reveal_type(await Student.objects.filter(name="Ada"))  # revealed: list[Student]
    reveal_type(await Student.objects.all())  # revealed: list[Student]
    reveal_type(await Student.objects.filter(name="Ada").aall())  # revealed: list[Student]
    reveal_type(await Student.objects.aall())  # revealed: list[Student]
    reveal_type(await course.students.all())  # revealed: list[Student]
    reveal_type(await course.students.aall())  # revealed: list[Student]
    reveal_type(await Student.objects.values_list("name", flat=True))  # revealed: list[str]
    reveal_type(await Student.objects.raw("SELECT 1"))  # revealed: list[Student]
    reveal_type(await Course.objects.open())  # revealed: list[Course]
    reveal_type(await Course.objects.aall())  # revealed: list[Course]
    async for student in Student.objects.all():
        reveal_type(student)  # revealed: Student
    await Course.objects.aall(1)  # error: call-arg
    await Student.objects  # error: misc


async def misuse() -> int:
    return await Student.objects.all()  # error: return-value


async def public_api(student: Student, students: list[Student]) -> None:
    reveal_type(await aorm.afetch(student, "course"))  # revealed: Student
    reveal_type(await aorm.afetch(students, "course"))  # revealed: list[Student]
    reveal_type(await aorm.run(Student.objects.count))  # revealed: int
    reveal_type(aorm.await_(Student.objects.acount()))  # revealed: int
    reveal_type(await aorm.aget_autocommit())  # revealed: bool
    reveal_type(await aorm.aget_rollback("default"))  # revealed: bool
    reveal_type(aorm.pool_stats("default"))  # revealed: PoolStats
    async with transaction.atomic() as block:
        reveal_type(block)  # revealed: Atomic
        await aorm.aset_rollback(True)
        await aorm.aon_commit(lambda: None)
    await aorm.run(len, 1)  # error: arg-type
