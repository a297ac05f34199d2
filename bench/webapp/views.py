"""Workload F's views that differ from the seeds' (``students.views``, served verbatim).

``student_list_stock`` is ``student_list`` for stock Django, where a QuerySet is
not awaitable: ``async for``. ``example_view`` is the seeds' verbatim except for
the name it creates: the seed creates "Ravi" then ``aget(name="Ravi")``, which
raises MultipleObjectsReturned from the second request on, so each request
creates its own Ravi. Same three queries (INSERT, SELECT by name, COUNT).
``no_database`` answers what ``student_list`` answers without a query: the
ceiling of workload F on the machine, whatever the ORM.
"""

import itertools

from django.http import JsonResponse
from students.models import Student

from bench import common

_request_numbers = itertools.count()
# The rows bench.db.reset_web() writes, as student_list returns them.
_STUDENTS = [{"name": f"student-{i}", "age": 18 + i % 12} for i in range(1, common.WEB_ROWS + 1)]


async def student_list_stock(request):
    students = [s async for s in Student.objects.all()]
    data = [{"name": s.name, "age": s.age} for s in students]
    return JsonResponse(data, safe=False)


async def no_database(request):
    return JsonResponse(_STUDENTS, safe=False)


# fmt: off
async def example_view(request):
    name = f"Ravi-{next(_request_numbers)}"

    # Create
    await Student.objects.acreate(name=name, age=21)

    # Get one
    student = await Student.objects.aget(name=name)

    # Count
    total = await Student.objects.acount()

    return JsonResponse({
        "student": student.name,
        "total_students": total
    })
# fmt: on
