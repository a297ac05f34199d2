"""Which asyncio driver under aorm's MySQL adapter: ``aget()`` by primary key, µs per call.

``python -m bench.mysql_driver [HOST [PORT]]``: each contender runs in a
fresh process, 5 interleaved runs, best run reported, for two workloads:

- A: 2,000 sequential ``aget()`` by primary key, a pool of one connection;
- B: 100 concurrent tasks x 20 ``aget()``, a pool of 10 connections (stock
  Django: each task in its own ``ThreadSensitiveContext``, as its ASGI handler
  runs each request).

The figures are in ``aorm/backends/mysql/base.py``.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

CALLS = 2000
ROUNDS = 5
CONTENDERS = ("asyncmy", "aiomysql", "stock")
DATABASE = "aorm_driver_bench"


def setup(host: str, port: str, contender: str, pool_size: int = 1) -> None:
    import django
    from django.conf import settings

    engine = "django.db.backends.mysql" if contender == "stock" else "aorm.backends.mysql"
    settings.configure(
        INSTALLED_APPS=["aorm"],
        DATABASES={
            "default": {
                "ENGINE": engine,
                "NAME": DATABASE,
                "USER": "root",
                "HOST": host,
                "PORT": port,
                "OPTIONS": {} if contender == "stock" else {"pool": {"max_size": pool_size}},
            }
        },
        USE_TZ=True,
    )
    django.setup()
    if contender != "stock":
        from aorm.backends.mysql import driver

        driver.DRIVER = contender


def measure(host: str, port: str, contender: str, workload: str = "A") -> float:
    setup(host, port, contender, 1 if workload == "A" else 10)
    from django.db import connection, models

    class Row(models.Model):
        name = models.CharField(max_length=50)
        value = models.IntegerField()

        class Meta:
            app_label = "aorm"
            db_table = "bench_row"

    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE IF NOT EXISTS bench_row "
            "(id integer AUTO_INCREMENT PRIMARY KEY, name varchar(50), value integer)"
        )
        cursor.execute(
            "INSERT INTO bench_row (name, value) SELECT 'a', 1 FROM DUAL "
            "WHERE NOT EXISTS (SELECT 1 FROM bench_row)"
        )
        cursor.execute("SELECT min(id) FROM bench_row")
        pk = cursor.fetchone()[0]
    connection.close()

    async def task(calls: int) -> None:
        if contender == "stock":
            from asgiref.sync import ThreadSensitiveContext

            async with ThreadSensitiveContext():
                for _ in range(calls):
                    await Row.objects.aget(pk=pk)
        else:
            for _ in range(calls):
                await Row.objects.aget(pk=pk)

    async def run() -> float:
        await task(100)  # warm up: connection, wrappers, code paths
        start = time.perf_counter()
        if workload == "A":
            await task(CALLS)
        else:
            await asyncio.gather(*(task(20) for _ in range(100)))
        return (time.perf_counter() - start) / CALLS * 1e6

    return asyncio.run(run())


def main() -> None:
    host, port = [*sys.argv[1:], "127.0.0.1", "3306"][:2]
    subprocess.run(
        [
            "mariadb",
            "-uroot",
            f"-h{host}",
            f"-P{port}",
            "-e",
            f"CREATE DATABASE IF NOT EXISTS {DATABASE}",
        ],
        check=True,
    )
    best: dict[tuple[str, str], float] = {}
    for _ in range(ROUNDS):
        for workload in ("A", "B"):
            for contender in CONTENDERS:
                command = ["--one", host, port, contender, workload]
                out = subprocess.run(
                    [sys.executable, "-m", "bench.mysql_driver", *command],
                    check=True,
                    capture_output=True,
                    text=True,
                ).stdout
                value = json.loads(out.strip().splitlines()[-1])
                key = (workload, contender)
                best[key] = min(best.get(key, value), value)
    for (workload, contender), value in best.items():
        print(f"{workload}: {contender:10} {value:7.0f} µs per aget()")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--one"]:
        print(json.dumps(measure(*sys.argv[2:6])))
    else:
        main()
