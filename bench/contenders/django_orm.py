"""The three Django-based contenders; one per process (Django has one settings module).

- ``stock``: ``django.db.backends.postgresql`` with its psycopg pool, Django's
  ``a*`` methods, each simulated request inside ``ThreadSensitiveContext`` as
  Django's ASGI handler runs it: ``sync_to_async`` hops to the request's own
  thread, which holds a pooled connection until the request ends (the handler
  closes it through ``request_finished`` in that thread; we do the same).
- ``aorm``: ``aorm.backends.postgresql``, Django's unchanged API (``aget``,
  ``acreate``, ``await queryset``), in the same ``ThreadSensitiveContext``.
- ``stock`` and ``aorm`` with ``database="sqlite"``: the same on the SQLite
  file ``common.SQLITE_FILE``, Django's default settings for both (workloads
  A, B and D).
- ``stock`` and ``aorm`` with ``database="mysql"``: the same on MariaDB:
  ``django.db.backends.mysql`` on mysqlclient (Django has no pool for MySQL:
  a connection per request, opened in the request's thread) and
  ``aorm.backends.mysql`` on asyncmy with its pool of POOL_SIZE.
- ``dab``: django-async-backend, its own API (``Model.async_objects``), its
  psycopg ``AsyncConnectionPool``; a request is an ``async_new_connection()``
  scope (what its README prescribes for concurrent tasks: each gets its own
  connection, given back to the pool when the scope ends).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from typing import Any

from bench import common


class Contender:
    def __init__(self, mode: str, database: str = "postgresql") -> None:
        self.mode = mode
        self.database = database
        os.environ["BENCH_DJANGO"] = mode
        if database == "mysql":
            os.environ["DJANGO_SETTINGS_MODULE"] = "bench.contenders.mysql_settings"
        else:
            os.environ["BENCH_DATABASE"] = database
            os.environ["DJANGO_SETTINGS_MODULE"] = "bench.djsettings"
        import django

        django.setup()
        from django.db.models import BooleanField
        from django.db.models.expressions import RawSQL

        from bench.djapp.models import Student

        self.Student = Student
        self.manager = Student.async_objects if mode == "dab" else Student.objects
        self.wait = RawSQL(common.WAIT_FUNCTION, (), output_field=BooleanField())
        self.description = {
            "stock": "django.db.backends.postgresql, a* methods via sync_to_async",
            "aorm": "aorm.backends.postgresql, Django's API (aget, await qs)",
            "dab": "django-async-backend, Model.async_objects",
        }[mode]
        if database == "sqlite":
            self.description = self.description.replace("postgresql", "sqlite3") + ", SQLite file"
        elif database == "mysql":
            driver = "mysqlclient" if mode == "stock" else "asyncmy"
            self.description = (
                self.description.replace("postgresql", "mysql") + f", MariaDB, {driver}"
            )

    async def setup(self) -> None:
        pass

    async def teardown(self) -> None:
        if self.mode == "dab":
            from django_async_backend.db import async_connections

            await async_connections["default"].close_pool()
        elif self.mode == "stock" and self.database == "postgresql":
            from asgiref.sync import sync_to_async
            from django.db import connection

            await sync_to_async(connection.close_pool)()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        if self.mode == "dab":
            from django_async_backend.db import async_new_connection

            async with async_new_connection():
                yield None
            return
        from asgiref.sync import ThreadSensitiveContext, sync_to_async
        from django.db import close_old_connections

        async with ThreadSensitiveContext():
            try:
                yield None
            finally:
                if self.mode == "stock":
                    # request_finished, in the request's thread: back to the pool.
                    await sync_to_async(close_old_connections)()

    async def get(self, ctx: None, pk: int) -> Any:
        return await self.manager.aget(pk=pk)

    async def get_wait(self, ctx: None, pk: int) -> Any:
        return await self.manager.annotate(wait=self.wait).aget(pk=pk)

    async def list100(self, ctx: None, start: int) -> list[Any]:
        queryset = self.manager.filter(id__gte=start).order_by("id")[:100]
        if self.mode == "aorm":
            return await queryset  # type: ignore[no-any-return]
        return [student async for student in queryset]

    async def create(self, ctx: None, name: str, age: int) -> int:
        student = await self.manager.acreate(name=name, age=age)
        return int(student.pk)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        import django

        found = {"Django": django.__version__}
        if self.database == "mysql":
            found["mysqlclient"] = version("mysqlclient")
            if self.mode == "aorm":
                found["django-aorm"] = version("django-aorm")
                found["asyncmy"] = version("asyncmy")
            return found
        import psycopg

        found["psycopg"] = f"{psycopg.__version__} ({psycopg.pq.__impl__})"
        if self.database == "sqlite":
            import sqlite3

            found["sqlite"] = sqlite3.sqlite_version
            if self.mode == "aorm":
                found["django-aorm"] = version("django-aorm")
        elif self.mode == "stock":
            found["psycopg_pool"] = version("psycopg-pool")
        elif self.mode == "aorm":
            found["django-aorm"] = version("django-aorm")
            found["greenlet"] = version("greenlet")
        else:
            found["django-async-backend"] = version("django-async-backend")
            found["psycopg_pool"] = version("psycopg-pool")
        return found
