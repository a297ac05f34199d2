"""aorm's query cache (``AORM_QUERY_CACHE_SIZE``) on and off: client CPU per operation.

    python -m bench.query_cache [--ops 2000] [--rounds 7]

The same query shapes, repeated with other values, on aorm's PostgreSQL
backend (pool of ``common.POOL_SIZE``, database ``aorm_bench_query_cache``,
10,000 students), one task, sequential: the cache on (the default size) and
off (``AORM_QUERY_CACHE_SIZE = 0``), interleaved round by round in one
process. Each cell is the median over the rounds of the CPU time of the
process per operation (``time.process_time``), and the wall time per
operation. "compile" times Django's ``as_sql`` alone (no I/O), in the bridge.
"""

from __future__ import annotations

import os

os.environ.setdefault("BENCH_DB", "aorm_bench_query_cache")

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench import db

ROWS = 10_000


def setup_django() -> None:
    os.environ["BENCH_DJANGO"] = "aorm"
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.djsettings"
    import django

    django.setup()


def shapes() -> dict[str, Callable[[int], Awaitable[Any]]]:
    """Each shape as an async function of a random key in 1..ROWS."""
    import aorm
    from bench.djapp.models import Student

    async def get(pk: int) -> Any:
        return await Student.objects.aget(pk=pk)

    async def list100(start: int) -> Any:
        return await Student.objects.filter(id__gte=min(start, ROWS - 100)).order_by("id")[:100]

    async def filter_exclude(pk: int) -> Any:
        queryset = Student.objects.filter(age=18 + pk % 12, id__lt=pk + 50).exclude(id=pk)
        return await queryset.order_by("-id")[:5]

    async def in_list(pk: int) -> Any:
        return await Student.objects.filter(pk__in=[pk, pk // 2 + 1, pk // 3 + 1]).aall()

    async def values_list(pk: int) -> Any:
        return await Student.objects.filter(pk=pk).values_list("name", "age")

    def compile_get(pk: int) -> Any:
        return Student.objects.filter(pk=pk)[:21].query.get_compiler("default").as_sql()

    async def compile_only(pk: int) -> Any:
        return await aorm.run(compile_get, pk)

    return {
        "aget(pk=…)": get,
        "filter(id__gte=…).order_by('id')[:100]": list100,
        "filter(age=…, id__lt=…).exclude(id=…).order_by('-id')[:5]": filter_exclude,
        "filter(pk__in=[3 values]).aall()": in_list,
        "filter(pk=…).values_list('name', 'age')": values_list,
        "compile only: filter(pk=…)[:21] as_sql()": compile_only,
    }


async def timed(op: Callable[[int], Awaitable[Any]], keys: list[int]) -> tuple[float, float]:
    for key in keys[: len(keys) // 10]:
        await op(key)
    cpu, wall = time.process_time(), time.perf_counter()
    for key in keys:
        await op(key)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return cpu / len(keys) * 1e6, wall / len(keys) * 1e6


async def measure(ops: int, rounds: int) -> dict[str, dict[str, list[tuple[float, float]]]]:
    from django.test.utils import override_settings

    from aorm import _query_cache

    rng = random.Random(7)
    results: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for round_ in range(rounds):
        # Alternate which mode goes first, so that neither always runs warmer.
        modes = ["on", "off"] if round_ % 2 == 0 else ["off", "on"]
        for name, op in shapes().items():
            for mode in modes:
                keys = [rng.randint(1, ROWS) for _ in range(ops)]
                if mode == "off":
                    with override_settings(**{_query_cache.SETTING: 0}):
                        sample = await timed(op, keys)
                else:
                    sample = await timed(op, keys)
                results.setdefault(name, {}).setdefault(mode, []).append(sample)
    return results


def report(results: dict[str, dict[str, list[tuple[float, float]]]], ops: int, rounds: int) -> str:
    lines = [
        f"{ops} operations per measurement after a 10% warm-up, {rounds} rounds, cache on and "
        "off interleaved; medians over the rounds.",
        "",
        "| shape | CPU µs/op off | CPU µs/op on | CPU saved | wall µs/op off | wall µs/op on |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, modes in results.items():
        cpu = {mode: statistics.median(s[0] for s in samples) for mode, samples in modes.items()}
        wall = {mode: statistics.median(s[1] for s in samples) for mode, samples in modes.items()}
        saved = 1 - cpu["on"] / cpu["off"]
        lines.append(
            f"| `{name}` | {cpu['off']:.0f} | {cpu['on']:.0f} | {saved:.1%} | "
            f"{wall['off']:.0f} | {wall['on']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    db.create(ROWS)
    try:
        setup_django()
        import django

        from aorm import _query_cache

        results = asyncio.run(measure(args.ops, args.rounds))
        print(f"Django {django.get_version()}, cache after the run: {_query_cache.info()}\n")
        print(report(results, args.ops, args.rounds))
    finally:
        db.drop()


if __name__ == "__main__":
    main()
