"""The soak's views (bench/soak.py), on the seeds' ``Student`` model, and its diagnostics.

- ``/students/``: the seeds' ``student_list``, verbatim (``await Student.objects.all()``).
- ``/example/?name=N``: the seeds' ``example_view`` (``acreate``, ``aget``, ``acount``),
  with a name of its own so that ``aget`` finds one row; the row is deleted afterwards,
  so that the table stays small over 100,000 requests.
- ``/atomic/?name=N[&fail=1]``: ``async with transaction.atomic()``: an insert, then
  ``asyncio.gather`` of three queries on the block's connection, an ``asyncio.sleep``
  holding it, then a delete and commit, or (``fail``) an exception that rolls it all
  back. Either way the row is gone afterwards, which the answer says (``kept``).
- ``/gather/``: ``asyncio.gather`` of four operations outside a transaction, each on a
  pooled connection of its own.
- ``/slow/``: ``pg_sleep(0.05)``: a hang-up lands in the middle of a query.
- ``/diagnostics/``: the server process's RSS, live greenlets and asyncio tasks (after a
  ``gc.collect()``), threads, the pool's stats, and the views the client's hang-ups
  cancelled. It exists only in this app.

Served by ``bench.webapp.asgi:application`` with ``DJANGO_SETTINGS_MODULE=bench.soak_settings``.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import threading
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict

import greenlet
from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from students.models import Student
from students.views import student_list

import aorm

View = Callable[[HttpRequest], Awaitable[HttpResponse]]

# Views cancelled by a client hang-up (Django cancels the view's task on http.disconnect).
cancelled: Counter[str] = Counter()


def tracked(view: View) -> View:
    @functools.wraps(view)
    async def wrapper(request: HttpRequest) -> HttpResponse:
        try:
            return await view(request)
        except asyncio.CancelledError:
            cancelled[view.__name__] += 1
            raise

    return wrapper


@tracked
async def example(request: HttpRequest) -> HttpResponse:
    name = request.GET["name"]
    await Student.objects.acreate(name=name, age=21)
    student = await Student.objects.aget(name=name)
    total = await Student.objects.acount()
    await Student.objects.filter(pk=student.pk).adelete()
    return JsonResponse({"student": student.name, "total_students": total})


class Rollback(Exception):
    """Raised inside the atomic block of ``/atomic/?fail=1``."""


@tracked
async def atomic(request: HttpRequest) -> HttpResponse:
    name = request.GET["name"]
    try:
        async with transaction.atomic():
            student = await Student.objects.acreate(name=name, age=30)
            total, exists, same = await asyncio.gather(
                Student.objects.acount(),
                Student.objects.filter(name=name).aexists(),
                Student.objects.aget(pk=student.pk),
            )
            await asyncio.sleep(0.005)  # awaiting inside the block, which keeps its connection
            if "fail" in request.GET:
                raise Rollback
            await Student.objects.filter(pk=student.pk).adelete()
    except Rollback:
        pass
    kept = await Student.objects.filter(name=name).aexists()
    return JsonResponse({"total": total, "exists": exists, "same": same.pk == student.pk,
                         "kept": kept})  # fmt: skip


@tracked
async def gather(request: HttpRequest) -> HttpResponse:
    adults = Student.objects.filter(age__gte=18)
    total, first, exists, some = await asyncio.gather(
        Student.objects.acount(), Student.objects.afirst(), adults.aexists(), adults[:10]
    )
    return JsonResponse({"total": total, "first": first and first.name, "exists": exists,
                         "some": [s.name for s in some]})  # fmt: skip


def _pg_sleep(seconds: float) -> None:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


@tracked
async def slow(request: HttpRequest) -> HttpResponse:
    await aorm.run(_pg_sleep, 0.05)
    return JsonResponse({"slept": 0.05})


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))


async def diagnostics(request: HttpRequest) -> HttpResponse:
    gc.collect()
    return JsonResponse(
        {
            "rss_kb": _rss_kb(),
            "greenlets": sum(isinstance(o, greenlet.greenlet) for o in gc.get_objects()),
            "tasks": len(asyncio.all_tasks()),
            "threads": threading.active_count(),
            "pool": asdict(aorm.pool_stats()),
            "cancelled": dict(cancelled),
        }
    )


urlpatterns = [
    path("students/", student_list),
    path("example/", example),
    path("atomic/", atomic),
    path("gather/", gather),
    path("slow/", slow),
    path("diagnostics/", diagnostics),
]
