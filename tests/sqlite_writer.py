"""A process writing through aorm to a SQLite file, for tests/test_sqlite_crash.py.

``python -m tests.sqlite_writer ROLE [COUNT]``, with tests.settings on the SQLite
file named by ``AORM_TEST_USE_NAME`` (``AORM_TEST_DATABASE=sqlite``). Each line
it prints is flushed at once: the test acts on them.

- ``migrate``: create the tables.
- ``committer COUNT``: commit COUNT transactions (``async with
  transaction.atomic()``, one Student each), printing ``committed I`` once
  block I has exited, i.e. once its commit is acknowledged; then open one more
  block, insert :data:`UNCOMMITTED_ROWS` students in it (more than SQLite's
  page cache holds, so uncommitted pages reach the WAL file), print
  ``inside <WAL size before the block> <WAL size now>``, and wait, in the
  block, to be killed.
- ``second``: print ``writing``, insert one Student named ``second`` outside
  any transaction (waiting for the write lock as long as the busy timeout
  allows), then print ``written``.
"""

from __future__ import annotations

import asyncio
import os
import sys

import django

UNCOMMITTED_ROWS = 40_000  # of about 100 bytes: 4 MB, twice SQLite's default page cache


def wal_size() -> int:
    from django.db import connection

    return os.path.getsize(f"{connection.settings_dict['NAME']}-wal")


async def committer(count: int) -> None:
    from django.db import transaction
    from students.models import Student

    for i in range(count):
        async with transaction.atomic():
            await Student.objects.acreate(name=f"committed-{i}", age=i)
        print(f"committed {i}", flush=True)
    before = wal_size()
    async with transaction.atomic():
        await Student.objects.abulk_create(
            Student(name=f"uncommitted-{i:090}", age=i) for i in range(UNCOMMITTED_ROWS)
        )
        print(f"inside {before} {wal_size()}", flush=True)
        await asyncio.Event().wait()  # until SIGKILL


async def second() -> None:
    from students.models import Student

    print("writing", flush=True)
    await Student.objects.acreate(name="second", age=0)
    print("written", flush=True)


def main(role: str, *args: str) -> None:
    django.setup()
    if role == "migrate":
        from django.core.management import call_command

        call_command("migrate", verbosity=0, interactive=False)
    elif role == "committer":
        asyncio.run(committer(int(args[0])))
    elif role == "second":
        asyncio.run(second())
    else:
        raise SystemExit(f"unknown role {role!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
