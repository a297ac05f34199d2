"""The views of the ATOMIC_REQUESTS tests (the seeds' views are the students app's)."""

from django.db import transaction
from django.http import JsonResponse
from students.models import Student

import aorm


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
