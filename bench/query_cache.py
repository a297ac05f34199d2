"""How much CPU a cache of compiled SQL could save per query: Django's compile in a query's cost.

    python -m bench.query_cache [--ops 1000] [--rounds 9]

For each query shape, repeated with other values on aorm's PostgreSQL backend
(pool of ``common.POOL_SIZE``, database ``aorm_bench_query_cache``, 10,000
students), one task, sequential, three CPU times per operation
(``time.thread_time``, median over the rounds):

- the whole operation, awaited (build, compile, I/O, hydration);
- Django's ``SQLCompiler.as_sql`` for that query: all that a cache of
  compiled SQL could remove;
- the compile of the WHERE clause's lookups alone: what a safe cache must
  still run on every execution, since a lookup's SQL and parameters depend on
  its value (``pk__in`` lengths, booleans, custom lookups).

The ceiling for a cache is (as_sql - lookups) / operation, before the cost of
computing the cache key from the query. ``bench/results/query_cache.md``
records the prototype (commit a553183) measured against these figures.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENCH_DB", "aorm_bench_query_cache")

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

from bench import db

ROWS = 10_000


def setup_django() -> None:
    os.environ["BENCH_DJANGO"] = "aorm"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.djsettings"
    import django

    django.setup()


Shape = tuple[Callable[[int], Any], Callable[[Any], Any], Callable[[Any], Any]]


def shapes() -> dict[str, Shape]:
    """Each shape: its QuerySet for a key, how it is awaited, and the QuerySet Django compiles."""
    from bench.djapp.models import Student

    def get(pk: int) -> Any:
        return Student.objects.filter(pk=pk)

    def list100(start: int) -> Any:
        return Student.objects.filter(id__gte=min(start, ROWS - 100)).order_by("id")[:100]

    def filter_exclude(pk: int) -> Any:
        queryset = Student.objects.filter(age=18 + pk % 12, id__lt=pk + 50).exclude(id=pk)
        return queryset.order_by("-id")[:5]

    def in_list(pk: int) -> Any:
        return Student.objects.filter(pk__in=[pk, pk // 2 + 1, pk // 3 + 1])

    def values_list(pk: int) -> Any:
        return Student.objects.filter(pk=pk).values_list("name", "age")

    async def aget(queryset: Any) -> Any:
        return await queryset.aget()

    async def awaited(queryset: Any) -> Any:
        return await queryset

    def as_is(queryset: Any) -> Any:
        return queryset

    return {
        # What get() compiles: its QuerySet with LIMIT 21.
        "filter(pk=…).aget()": (get, aget, lambda queryset: queryset[:21]),
        "filter(id__gte=…).order_by('id')[:100]": (list100, awaited, as_is),
        "filter(age=…, id__lt=…).exclude(id=…).order_by('-id')[:5]": (
            filter_exclude,
            awaited,
            as_is,
        ),
        "filter(pk__in=[3 values])": (in_list, awaited, as_is),
        "filter(pk=…).values_list('name', 'age')": (values_list, awaited, as_is),
    }


def lookups(node: Any) -> list[Any]:
    """The leaves of a WHERE tree, in the order Django compiles them."""
    children = getattr(node, "children", None)
    if children is None:
        return [node]
    return [leaf for child in children for leaf in lookups(child)]


def compile_times(querysets: list[Any]) -> tuple[float, float]:
    """CPU µs per query of Django's as_sql, and of its lookups' compile alone."""
    queries = [queryset.query for queryset in querysets]
    compilers = [query.get_compiler("default") for query in queries]
    start = time.thread_time()
    for compiler in compilers:
        compiler.as_sql()
    as_sql = time.thread_time() - start
    compilers = [query.get_compiler("default") for query in queries]
    leaves = [(compiler, lookups(compiler.query.where)) for compiler in compilers]
    start = time.thread_time()
    for compiler, found in leaves:
        for leaf in found:
            compiler.compile(leaf)
    leaf_time = time.thread_time() - start
    return as_sql / len(queries) * 1e6, leaf_time / len(queries) * 1e6


async def measure(ops: int, rounds: int) -> dict[str, dict[str, list[float]]]:
    import aorm

    rng = random.Random(7)
    results: dict[str, dict[str, list[float]]] = {}
    for _ in range(rounds):
        for name, (build, run, compiled) in shapes().items():
            keys = [rng.randint(1, ROWS) for _ in range(ops)]
            for key in keys[: ops // 10]:
                await run(build(key))
            querysets = [build(key) for key in keys]
            start = time.thread_time()
            for queryset in querysets:
                await run(queryset)
            operation = (time.thread_time() - start) / ops * 1e6
            as_sql, leaves = await aorm.run(compile_times, [compiled(build(key)) for key in keys])
            sample = results.setdefault(name, {})
            sample.setdefault("operation", []).append(operation)
            sample.setdefault("as_sql", []).append(as_sql)
            sample.setdefault("lookups", []).append(leaves)
    return results


def report(results: dict[str, dict[str, list[float]]], ops: int, rounds: int) -> str:
    lines = [
        f"{ops} operations per measurement after a 10% warm-up (the QuerySet built beforehand, "
        f"so the operation's time is compile + I/O + hydration), {rounds} rounds; CPU µs per "
        "operation, medians over the rounds.",
        "",
        "| shape | operation | Django's as_sql | of which lookups | ceiling for a cache "
        "((as_sql - lookups) / operation) |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, sample in results.items():
        operation, as_sql, leaves = (
            statistics.median(sample[part]) for part in ("operation", "as_sql", "lookups")
        )
        lines.append(
            f"| `{name}` | {operation:.0f} | {as_sql:.0f} | {leaves:.0f} | "
            f"{(as_sql - leaves) / operation:.1%} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    db.create(ROWS)
    try:
        setup_django()
        import django

        results = asyncio.run(measure(args.ops, args.rounds))
        print(f"Django {django.get_version()}\n")
        print(report(results, args.ops, args.rounds))
    finally:
        db.drop()


if __name__ == "__main__":
    main()
