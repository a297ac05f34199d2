"""The load test's views, instrumented: where client disconnects cancelled them, what rolled back.

- ``/query/``: a count, then a slow query (``pg_sleep``) through ``aorm.run``.
- ``/write/?token=T``: inserts a Student named T inside ``async with
  transaction.atomic()``, awaits ``asyncio.sleep`` and a slow query inside the
  block, and answers with the row's id once the block has committed: an
  acknowledged write.
- ``/between/?pause=S``: a query, ``asyncio.sleep(S)``, another query. While
  it sleeps it must hold no connection (``sleeping`` counts the views asleep).
- ``/stats/``: ``aorm.pool_stats()`` for the server's event loop,
  where cancellations landed, and the tokens of writes whose block rolled back.

``/query/`` and ``/write/`` with ``signal=1`` stream their answer instead: a
first line, :data:`SIGNAL`, as soon as the view holds its connection (inside
the slow query, inside the transaction), then the JSON, or ``error`` if the
view failed (logged as Django logs a 500). A client that hangs up a few
milliseconds after the signal cancels the view while it uses its connection,
however long it waited in the pool's line first: the signalled views' slow
query lasts :data:`SIGNALLED_SLOW_QUERY`, far longer than the hang-up takes.
The view's work runs in a task of its own there, which the response cancels
when the client goes away, as Django's handler cancels a view.

Module state is per server process; the server serves on one event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from django.db import connections, transaction
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from students.models import Student

import aorm

SIGNAL = b"holding a connection\n"

# Cancellations (client disconnects) by view and by what the view was doing.
cancelled_in: Counter[str] = Counter()
# Tokens of writes whose atomic block exited by an exception: they must not be in the table.
rolled_back: list[str] = []
# Views inside the asyncio.sleep of /between/.
sleeping = 0

Work = Callable[["Phase", asyncio.Event], Awaitable[dict[str, Any]]]


class Phase:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


def _slow_query(seconds: float, phase: Phase, holding: asyncio.Event) -> None:
    with connections["default"].cursor() as cursor:  # takes a connection from the pool
        phase.name = f"in a query, {phase.name}"
        holding.set()
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


def _query(slow: float) -> Work:
    async def query(phase: Phase, holding: asyncio.Event) -> dict[str, Any]:
        phase.name = "count"
        total = await Student.objects.acount()
        phase.name = "outside a transaction"
        await aorm.run(_slow_query, slow, phase, holding)
        phase.name = "after the queries"
        return {"count": total}

    return query


def _write(token: str, slow: float) -> Work:
    async def write(phase: Phase, holding: asyncio.Event) -> dict[str, Any]:
        phase.name = "entering the block"
        async with transaction.atomic():
            try:
                phase.name = "in a transaction, insert"
                student = await Student.objects.acreate(name=token, age=0)
                phase.name = "in a transaction, asyncio.sleep"
                holding.set()
                await asyncio.sleep(0.02)
                phase.name = "in a transaction"
                await aorm.run(_slow_query, slow, phase, holding)
                phase.name = "leaving the block (commit)"
            except BaseException:
                rolled_back.append(token)  # the block exits by this exception: rollback
                raise
        phase.name = "after the commit"
        return {"id": student.pk, "token": token}

    return write


async def _tracked(view: str, work: Work, holding: asyncio.Event) -> dict[str, Any]:
    phase = Phase("")
    try:
        return await work(phase, holding)
    except asyncio.CancelledError:
        cancelled_in[f"{view}: {phase.name}"] += 1
        raise


async def _signalled(request: HttpRequest, view: str, work: Work) -> AsyncIterator[bytes]:
    holding = asyncio.Event()
    task = asyncio.ensure_future(_tracked(view, work, holding))
    try:
        signal = asyncio.ensure_future(holding.wait())
        try:
            await asyncio.wait({task, signal}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            signal.cancel()
        if holding.is_set():
            yield SIGNAL
        try:
            result = await task
        except Exception as exc:
            logging.getLogger("django.request").error(
                "Internal Server Error: %s", request.path, exc_info=exc
            )
            yield b"error\n"
            return
        yield json.dumps(result).encode()
    finally:
        task.cancel()  # the client went away (a no-op if the work is done)


# A signalled view's slow query outlasts the client's hang-up however loaded the
# machine is: the hang-up lands while the view holds its connection.
SIGNALLED_SLOW_QUERY = 2.0


async def query(request: HttpRequest) -> HttpResponse:
    if request.GET.get("signal"):
        return StreamingHttpResponse(_signalled(request, "query", _query(SIGNALLED_SLOW_QUERY)))
    return JsonResponse(await _tracked("query", _query(0.05), asyncio.Event()))


async def write(request: HttpRequest) -> HttpResponse:
    if request.GET.get("signal"):
        work = _write(request.GET["token"], SIGNALLED_SLOW_QUERY)
        return StreamingHttpResponse(_signalled(request, "write", work))
    work = _write(request.GET["token"], 0.02)
    return JsonResponse(await _tracked("write", work, asyncio.Event()))


async def between(request: HttpRequest) -> JsonResponse:
    global sleeping
    pause = float(request.GET.get("pause", "0.02"))
    phase = Phase("first query")
    try:
        first = await Student.objects.acount()
        phase.name = "asyncio.sleep between queries"
        sleeping += 1
        try:
            await asyncio.sleep(pause)
        finally:
            sleeping -= 1
        phase.name = "second query"
        second = await Student.objects.filter(age__gte=0).acount()
        phase.name = "after the queries"
    except asyncio.CancelledError:
        cancelled_in[f"between: {phase.name}"] += 1
        raise
    return JsonResponse({"first": first, "second": second})


async def stats(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "pool": asdict(aorm.pool_stats()),
            "cancelled_in": dict(cancelled_in),
            "rolled_back": rolled_back,
            "sleeping": sleeping,
        }
    )
