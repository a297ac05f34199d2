"""PostgreSQL's wait for an answer keeps the socket watched between statements, safely.

The reader stays registered with the loop after a statement; these tests cover
what must unregister it: unexpected input on an idle connection (no busy
loop), closing, a socket closed behind the driver's back.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from asgiref.sync import sync_to_async
from django.db import OperationalError, connections

import aorm
from tests.app.models import Student
from tests.conftest import ALL_DATABASES, postgresql_only

pytestmark = [ALL_DATABASES, postgresql_only("psycopg's socket")]


def _face(alias: str) -> Any:
    """The driver connection of ``alias`` in this operation, after one statement."""
    wrapper = connections[alias]
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT 1")
    return wrapper.connection


async def test_the_socket_stays_watched_between_statements_of_a_pooled_connection() -> None:
    face = await aorm.run(_face, "default")
    assert face._watched is asyncio.get_running_loop()
    assert await aorm.run(_face, "default") is face  # the same, still watched: no re-registration
    assert face._watched is asyncio.get_running_loop()


async def test_input_on_an_idle_connection_unwatches_it_and_the_next_wait_reads_it() -> None:
    def listen() -> Any:
        face = _face("default")
        with connections["default"].cursor() as cursor:
            cursor.execute("LISTEN aorm_wait_test")
        return face

    face = await aorm.run(listen)
    assert face._watched is not None

    def notify() -> None:
        with connections["unpooled"].cursor() as cursor:
            cursor.execute("NOTIFY aorm_wait_test")

    await aorm.run(notify)
    async with asyncio.timeout(10):  # level-triggered: without this, the loop would spin
        while face._watched is not None:
            await asyncio.sleep(0.01)
    assert await aorm.run(_face, "default") is face  # watched again, and answered
    assert face._watched is not None
    await aorm.run(lambda: connections["default"].cursor().execute("UNLISTEN *"))


async def test_connections_closed_one_after_another_never_hide_a_new_socket() -> None:
    # "pool": False closes each connection; the next one usually gets the same
    # file descriptor number, which must be watched afresh.
    async with asyncio.timeout(20):
        for _ in range(20):
            await Student.objects.using("unpooled").acount()


async def test_a_connection_lost_mid_wait_is_unwatched_before_its_number_is_reused() -> None:
    face = await aorm.run(_face, "default")
    pid = face.info.backend_pid

    def terminate() -> None:
        with connections["stock"].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

    await sync_to_async(terminate)()

    def use_it() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")

    async with asyncio.timeout(20):
        with contextlib.suppress(OperationalError):  # the server ended it: an error, once
            await aorm.run(use_it)
        assert face._watched is None
        for _ in range(10):  # new sockets, some with the same number, are watched afresh
            await Student.objects.using("unpooled").acount()
        assert await Student.objects.acount() == 0
