"""Workload F's views that differ from the seeds' (``students.views``, served verbatim).

``student_list_stock`` is ``student_list`` for stock Django, where a QuerySet is
not awaitable: ``async for``. ``example_view`` is the seeds' verbatim except for
the name it creates: the seed creates "Ravi" then ``aget(name="Ravi")``, which
raises MultipleObjectsReturned from the second request on, so each request
creates its own Ravi. Same three queries (INSERT, SELECT by name, COUNT).
"""

import itertools

from django.http import JsonResponse
from students.models import Student

_request_numbers = itertools.count()


async def student_list_stock(request):
    students = [s async for s in Student.objects.all()]
    data = [{"name": s.name, "age": s.age} for s in students]
    return JsonResponse(data, safe=False)


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
