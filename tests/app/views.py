"""The seeds' async views, verbatim."""

from django.db import transaction
from django.http import JsonResponse

import aorm

from .models import Student


async def student_list(request):
    students = await Student.objects.all()
    data = [{"name": s.name, "age": s.age} for s in students]
    return JsonResponse(data, safe=False)


# fmt: off
async def example_view(request):

    # Create
    await Student.objects.acreate(name="Ravi", age=21)

    # Get one
    student = await Student.objects.aget(name="Ravi")

    # Count
    total = await Student.objects.acount()

    return JsonResponse({
        "student": student.name,
        "total_students": total
    })
# fmt: on


# Views for the ATOMIC_REQUESTS tests.


async def atomic_fail(request):
    await Student.objects.acreate(name="fail", age=1)
    raise RuntimeError("the view failed")


async def atomic_ok(request):
    await Student.objects.acreate(name="ok", age=1)
    return JsonResponse({"autocommit": await aorm.aget_autocommit()})


@transaction.non_atomic_requests
async def atomic_opt_out(request):
    await Student.objects.acreate(name="non-atomic", age=1)
    return JsonResponse({"autocommit": await aorm.aget_autocommit()})
