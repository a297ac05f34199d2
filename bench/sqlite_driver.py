"""Where should aorm's SQLite backend make its blocking sqlite3 calls? Measured here.

    python bench/sqlite_driver.py [--quick]

Django's ORM runs on the event loop in every variant; only the place of the
sqlite3 calls changes:

- ``thread``: aorm's design, a dedicated I/O thread per connection; a query's
  first rows come back with its ``execute``.
- ``thread-noprefetch``: the same, without rows prefetched (each
  ``fetchmany`` is a round trip to the thread).
- ``aiosqlite``: the same adapter on aiosqlite's connection thread and queue
  (its ``_execute``, the primitive behind its public API).
- ``inline``: sqlite3 called right on the event loop thread.
- ``stock``: Django's own backend and ``sync_to_async`` (the reference), and
  ``sync``: Django's sync ORM with no event loop at all.

Workloads, on a file database in WAL mode: get by primary key, a 100-row list,
a single-row insert; one task in sequence (latency per operation) and 100
concurrent tasks (throughput). Then 200 tasks each writing 10 rows in its own
transaction, with and without aorm's per-file writer lock, and the open cost of
a connection (pool against a connection per operation).

aiosqlite is optional: install it anywhere and point ``AORM_BENCH_PATH`` at it
(``pip install --target /tmp/bench-extra aiosqlite``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
for extra in filter(None, os.environ.get("AORM_BENCH_PATH", "/tmp/bench-extra").split(":")):
    sys.path.append(extra)

import django  # noqa: E402
from django.conf import settings  # noqa: E402

DIRECTORY = tempfile.mkdtemp(prefix="aorm-bench-")
DB = os.path.join(DIRECTORY, "bench.sqlite3")


def configure(pool_size: int = 8) -> None:
    engine = "aorm.backends.sqlite3"
    settings.configure(
        SECRET_KEY="bench",
        USE_TZ=True,
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "aorm", "tests.app"],
        DATABASES={
            "default": {
                "ENGINE": engine,
                "NAME": DB,
                "OPTIONS": {"pool": {"max_size": pool_size}},
            },
            "unpooled": {"ENGINE": engine, "NAME": DB, "OPTIONS": {"pool": False}},
            "stock": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB},
        },
    )
    django.setup()


configure()

from django.core.management import call_command  # noqa: E402
from django.db import connections, transaction  # noqa: E402
from tests.app.models import Student  # noqa: E402

import aorm  # noqa: E402
from aorm import bridge  # noqa: E402
from aorm.backends.sqlite3 import driver  # noqa: E402

# -- the variants ------------------------------------------------------------


class _NoThread:
    def join(self, timeout: float | None = None) -> None:
        pass


class InlineIO:
    """sqlite3 called directly, on whatever thread calls (the event loop's)."""

    def __init__(self, name: str) -> None:
        self.thread = _NoThread()
        self.connection: sqlite3.Connection | None = None

    def open_in_thread(self, connect: Any) -> sqlite3.Connection:
        # Django's guard would refuse on the loop's thread: call what it guards.
        self.connection = connect.func.__wrapped__(*connect.args)
        return self.connection

    def future(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        future = asyncio.get_running_loop().create_future()
        try:
            future.set_result(fn(*args))
        except Exception as exc:
            future.set_exception(exc)
        return future

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return fn(*args)

    def stop(self, done: Any = None) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None
        if done is not None:
            done(None, None)


def _inline_call(self: driver.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class AiosqliteIO:
    """aiosqlite's connection thread and queue run the calls."""

    def __init__(self, name: str) -> None:
        self.aio: Any = None
        self.thread: Any = _NoThread()

    def open_in_thread(self, connect: Callable[[], sqlite3.Connection]) -> sqlite3.Connection:
        raise NotImplementedError  # aiosqlite runs its connector itself, in future()

    def future(self, fn: Callable[..., Any], *args: Any) -> asyncio.Future[Any]:
        import aiosqlite

        if fn == self.open_in_thread:
            self.aio = aiosqlite.Connection(args[0], 64)

            async def opened() -> sqlite3.Connection:
                await self.aio
                self.thread = self.aio._thread
                return self.aio._connection  # type: ignore[no-any-return]

            return asyncio.ensure_future(opened())
        return asyncio.ensure_future(self.aio._execute(fn, *args))

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        return bridge.await_(self.aio._execute(fn, *args))

    def stop(self, done: Any = None) -> None:
        future = self.aio.stop()
        if done is not None and future is not None:
            future.add_done_callback(lambda f: done(None, None))


def _aiosqlite_call(self: driver.Connection, fn: Callable[..., Any], *args: Any) -> Any:
    return self.io.call(fn, *args)


_original_call = driver.Connection.call


def use(variant: str) -> None:
    driver.PREFETCH_ROWS = 0 if variant == "thread-noprefetch" else 256
    if variant == "inline":
        driver.Connector.io_class = InlineIO  # type: ignore[assignment]
        driver.Connection.call = _inline_call  # type: ignore[method-assign]
    elif variant == "aiosqlite":
        driver.Connector.io_class = AiosqliteIO  # type: ignore[assignment]
        driver.Connection.call = _aiosqlite_call  # type: ignore[method-assign]
    else:
        driver.Connector.io_class = driver.IOThread
        driver.Connection.call = _original_call  # type: ignore[method-assign]


def have_aiosqlite() -> bool:
    try:
        import aiosqlite  # noqa: F401
    except ImportError:
        return False
    return True


# -- the workloads -----------------------------------------------------------

ROWS = 1000
_counter = iter(range(10**9))


def pks() -> list[int]:
    return list(Student.objects.using("stock").values_list("pk", flat=True)[:ROWS])


async def get_one(alias: str, pk: int) -> object:
    return await Student.objects.using(alias).aget(pk=pk)


async def list_100(alias: str, pk: int) -> object:
    return await Student.objects.using(alias).filter(pk__gte=pk % 500)[:100]  # type: ignore[misc]


async def insert_one(alias: str, pk: int) -> object:
    return await Student.objects.using(alias).acreate(name=f"n{next(_counter)}", age=pk % 90)


def sync_get(alias: str, pk: int) -> object:
    return Student.objects.using(alias).get(pk=pk)


def sync_list(alias: str, pk: int) -> object:
    return list(Student.objects.using(alias).filter(pk__gte=pk % 500)[:100])


def sync_insert(alias: str, pk: int) -> object:
    return Student.objects.using(alias).create(name=f"n{next(_counter)}", age=pk % 90)


WORKLOADS: dict[
    str, tuple[Callable[[str, int], Awaitable[object]], Callable[[str, int], object]]
] = {
    "get": (get_one, sync_get),
    "list100": (list_100, sync_list),
    "insert": (insert_one, sync_insert),
}


async def timed(
    work: Callable[[str, int], Awaitable[object]], alias: str, keys: list[int], tasks: int, n: int
) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the whole process) per operation."""

    async def worker(offset: int, count: int) -> None:
        for i in range(count):
            await work(alias, keys[(offset + i * 7) % len(keys)])

    for i in range(min(20, n)):  # warm up: pool, statement cache, features
        await work(alias, keys[i])
    start, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(t * 13, n // tasks) for t in range(tasks)))
    done = (n // tasks) * tasks
    return (time.perf_counter() - start) / done, (time.process_time() - cpu) / done


def sync_timed(work: Callable[[str, int], object], keys: list[int], n: int) -> tuple[float, float]:
    for i in range(20):
        work("stock", keys[i])
    start, cpu = time.perf_counter(), time.process_time()
    for i in range(n):
        work("stock", keys[(i * 7) % len(keys)])
    return (time.perf_counter() - start) / n, (time.process_time() - cpu) / n


def orm_table(n: int, repeats: int) -> None:
    """Each cell: the best of ``repeats`` runs, variants interleaved (the machine is shared)."""
    keys = pks()
    configs = [("sync Django (no event loop)", "stock", "sync")]
    configs.append(("stock aget (sync_to_async)", "stock", "thread"))
    for variant in ["thread", "thread-noprefetch", "inline"] + (
        ["aiosqlite"] if have_aiosqlite() else []
    ):
        configs.append((f"aorm {variant}", "default", variant))
    configs.append(("aorm thread, no pool", "unpooled", "thread"))
    best: dict[tuple[str, str, int], tuple[float, float]] = {}
    for repeat in range(repeats):
        for name, (work, sync_work) in WORKLOADS.items():
            for tasks in (1, 100):
                rotated = configs[repeat % len(configs) :] + configs[: repeat % len(configs)]
                for label, alias, variant in rotated:
                    if variant == "sync":
                        if tasks > 1:
                            continue
                        wall, cpu = sync_timed(sync_work, keys, n)
                    else:
                        use(variant)
                        wall, cpu = asyncio.run(timed(work, alias, keys, tasks, n))
                    key = (label, name, tasks)
                    old = best.get(key, (float("inf"), float("inf")))
                    best[key] = (min(old[0], wall), min(old[1], cpu))
    use("thread")
    columns = [(name, tasks) for name in WORKLOADS for tasks in (1, 100)]
    heads = [f"{name} x{tasks}" for name, tasks in columns]
    width = max(len(label) for label, _, _ in configs)
    for title, index in (("wall µs per operation", 0), ("CPU µs per operation (all threads)", 1)):
        print(f"{title} (x1: one task in sequence; x100: 100 concurrent tasks)")
        print(f"{'':{width}}  " + "  ".join(f"{h:>12}" for h in heads))
        for label, _, _ in configs:
            cells = []
            for name, tasks in columns:
                value = best.get((label, name, tasks))
                cells.append("-" if value is None else f"{value[index] * 1e6:.0f}")
            print(f"{label:{width}}  " + "  ".join(f"{c:>12}" for c in cells))
        print()


def pool_sizes(n: int, repeats: int) -> None:
    keys = pks()
    use("thread")
    print("100 concurrent get-by-pk, by pool size (thread variant), best of runs:")
    best: dict[int, float] = {}
    for _ in range(repeats):
        for size in (1, 2, 4, 8, 16):
            options = {"min_size": min(size, 4), "max_size": size}
            connections["default"].settings_dict["OPTIONS"]["pool"] = options
            wall, _ = asyncio.run(timed(get_one, "default", keys, 100, n))
            best[size] = min(best.get(size, float("inf")), wall)
    for size, wall in best.items():
        print(f"  max_size={size:<3} {wall * 1e6:5.0f} µs per operation ({1 / wall:.0f}/s)")
    connections["default"].settings_dict["OPTIONS"]["pool"] = {"max_size": 8}


def writers(
    lock: bool, transaction_mode: str | None, sqlite_timeout: float, read_first: bool = False
) -> str:
    """200 tasks x 10 rows, each task in its own transaction (which may read first)."""
    options = connections["default"].settings_dict["OPTIONS"]
    options["timeout"] = sqlite_timeout
    if transaction_mode:
        options["transaction_mode"] = transaction_mode
    else:
        options.pop("transaction_mode", None)
    original = driver.Connector.__init__

    def no_lock(self: driver.Connector, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        self.writer = None

    if not lock:
        driver.Connector.__init__ = no_lock  # type: ignore[method-assign]

    def task() -> None:
        with transaction.atomic():
            if read_first:
                Student.objects.filter(age=1).exists()
            for i in range(10):
                Student.objects.create(name=f"w{i}", age=i)

    async def main() -> tuple[int, list[str]]:
        results = await asyncio.gather(
            *(aorm.run(task) for _ in range(200)), return_exceptions=True
        )
        errors = [str(r) for r in results if isinstance(r, BaseException)]
        return len(results) - len(errors), errors

    before = Student.objects.using("stock").count()
    start = time.perf_counter()
    try:
        ok, errors = asyncio.run(main())
    finally:
        driver.Connector.__init__ = original  # type: ignore[method-assign]
        options.pop("transaction_mode", None)
        options.pop("timeout", None)
    elapsed = time.perf_counter() - start
    written = Student.objects.using("stock").count() - before
    kinds = sorted({e.split(" (")[0] for e in errors})
    return (
        f"{elapsed * 1e3:6.0f} ms, {written} rows, {ok} transactions committed, "
        f"{len(errors)} failed {kinds if kinds else ''}"
    )


def open_cost() -> None:
    print("\nWhat a connection per operation costs:")

    def raw_open() -> None:
        connections["stock"].get_new_connection(
            connections["stock"].get_connection_params()
        ).close()

    start = time.perf_counter()
    for _ in range(200):
        raw_open()
    setup = (time.perf_counter() - start) / 200
    print(f"  Django's sqlite3 connection setup alone: {setup * 1e6:.0f} µs")
    start = time.perf_counter()
    for _ in range(200):
        t = threading.Thread(target=lambda: None)
        t.start()
        t.join()
    print(f"  a thread started and joined: {(time.perf_counter() - start) / 200 * 1e6:.0f} µs")


SLOW_QUERY = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 400000) "
    "SELECT count(*) FROM c"
)


def loop_lag(variant: str) -> str:
    """The longest the event loop could not run anything else, in two situations."""
    use(variant)

    def slow_query() -> None:
        with connections["default"].cursor() as cursor:
            cursor.execute(SLOW_QUERY)
            cursor.fetchone()

    def other_process_writes(started: threading.Event) -> None:
        # Another process's write transaction (a plain sqlite3 connection here).
        connection = sqlite3.connect(DB, timeout=5, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        connection.execute("INSERT INTO app_student (name, age) VALUES ('other', 1)")
        started.set()
        time.sleep(0.3)
        connection.execute("COMMIT")
        connection.close()

    async def main() -> tuple[float, float, float, float]:
        loop = asyncio.get_running_loop()
        lags: list[float] = []
        running = True

        async def heartbeat() -> None:
            while running:
                start = loop.time()
                await asyncio.sleep(0.001)
                lags.append(loop.time() - start - 0.001)

        beat = asyncio.ensure_future(heartbeat())
        await Student.objects.acount()  # warm up the pool
        await asyncio.sleep(0.02)
        lags.clear()
        start = time.perf_counter()
        await aorm.run(slow_query)
        query = time.perf_counter() - start
        await asyncio.sleep(0.01)  # the heartbeat delayed by a blocked loop reports now
        lag_query = max(lags)
        lags.clear()
        started = threading.Event()
        other = threading.Thread(target=other_process_writes, args=(started,))
        other.start()
        started.wait()
        start = time.perf_counter()
        await Student.objects.acreate(name="waits", age=1)
        wait = time.perf_counter() - start
        await asyncio.sleep(0.01)
        lag_lock = max(lags)
        other.join()
        running = False
        await beat
        return query, lag_query, wait, lag_lock

    query, lag_query, wait, lag_lock = asyncio.run(main())
    return (
        f"a {query * 1e3:.0f} ms query: loop blocked up to {lag_query * 1e3:5.1f} ms; "
        f"an insert waiting {wait * 1e3:.0f} ms for another process's write lock: "
        f"loop blocked up to {lag_lock * 1e3:5.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer operations")
    parser.add_argument("--lag", action="store_true", help="only the event loop's stalls")
    args = parser.parse_args()
    n, repeats = (200, 2) if args.quick else (500, 5)
    call_command("migrate", database="stock", verbosity=0)
    with connections["stock"].cursor() as cursor:  # as aorm's connections will
        cursor.execute("PRAGMA journal_mode = WAL")
    Student.objects.using("stock").bulk_create(
        Student(name=f"s{i}", age=i % 90) for i in range(ROWS)
    )
    print(
        f"Python {sys.version.split()[0]}, Django {django.get_version()}, SQLite "
        f"{sqlite3.sqlite_version}, {os.cpu_count()} CPUs; file database in WAL mode\n"
    )
    if args.lag:
        for variant in ("thread", "inline"):
            print(f"  {variant:7}", loop_lag(variant))
        return
    orm_table(n, repeats)
    pool_sizes(n, repeats)
    open_cost()
    print("\n200 tasks x 10 rows, each task in its own transaction (thread variant):")
    # (inline is not an option without the writer lock: SQLite's busy handler
    # would sleep on the loop's thread while the lock holder cannot run.)
    use("thread")
    print("  aorm writer lock, BEGIN (default):     ", writers(True, None, 5.0))
    print("  aorm writer lock, IMMEDIATE:           ", writers(True, "IMMEDIATE", 5.0))
    print("  no lock, IMMEDIATE, busy timeout 5 s:  ", writers(False, "IMMEDIATE", 5.0))
    print("  no lock, BEGIN, busy timeout 5 s:      ", writers(False, None, 5.0))
    print("  no lock, IMMEDIATE, busy timeout 0.1 s:", writers(False, "IMMEDIATE", 0.1))
    print("  aorm writer lock, BEGIN, timeout 0.1 s:", writers(True, None, 0.1))
    print("each transaction reads, then writes:")
    print("  aorm writer lock, BEGIN (default):     ", writers(True, None, 5.0, True))
    print("  no lock, BEGIN, busy timeout 5 s:      ", writers(False, None, 5.0, True))
    print("  no lock, IMMEDIATE, busy timeout 5 s:  ", writers(False, "IMMEDIATE", 5.0, True))
    print("\nWhile one task waits for SQLite, can the event loop serve the others?")
    for variant in ("thread", "inline"):
        print(f"  {variant:7}", loop_lag(variant))
    use("thread")


if __name__ == "__main__":
    try:
        main()
    finally:
        connections.close_all()
        for name in os.listdir(DIRECTORY):
            os.remove(os.path.join(DIRECTORY, name))
        os.rmdir(DIRECTORY)
