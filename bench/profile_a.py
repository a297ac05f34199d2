"""Where aorm's time goes in workload A (get by primary key, sequential), layer by layer; B, E.

    python -m bench.profile_a [--ops 3000] [--out bench/results/profile_a.md]

Two views of the same loop (``await Student.objects.aget(pk=pk)``, one task,
pool of POOL_SIZE), on its own database (``aorm_bench_profile``):

1. Differential timings: the same get through fewer and fewer layers, each in
   µs per get (wall clock, one task, so wall = client CPU + round trip):
   raw async psycopg on one connection with Django's exact SQL and driver
   settings; ``aorm.run(noop)`` (the bridge and the per-operation scope, no
   I/O); ``aorm.run`` of Django's cursor executing that SQL (bridge + scope +
   pool + adapter + Django's cursor wrapper, no ORM); the full ``aget``; and
   for reference Django's sync ``get()`` and stock ``aget()`` (thread hop).
2. A statistical profile of the full ``aget`` loop (pyinstrument, wall clock):
   each sample is charged to the layer of the innermost Python frame, so C
   code (libpq, greenlet switches, epoll) counts for the Python code calling it.
3. Under concurrency: B and E as ``make bench`` runs them (100 tasks x 20
   gets), CPU per get next to A's, and a profile of each.
4. The driver's options: raw psycopg with server-side binding, with and
   without prepared statements; aorm with Django's ``server_side_binding``
   and psycopg's ``prepare_threshold`` (a third process, ``--part aorm-ssb``).
"""

from __future__ import annotations

import os

os.environ.setdefault("BENCH_DB", "aorm_bench_profile")

import argparse
import asyncio
import collections
import json
import random
import subprocess
import sys
import sysconfig
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench import common, db

ROOT = Path(__file__).resolve().parent.parent
ROWS = 10_000
DJANGO_SQL = (
    f'SELECT "{common.TABLE}"."id", "{common.TABLE}"."name", "{common.TABLE}"."age" '
    f'FROM "{common.TABLE}" WHERE "{common.TABLE}"."id" = %s LIMIT 21'
)

RAW = "raw async psycopg, one connection (Django's SQL, client-side binding)"
NOOP = "aorm.run(noop): bridge + scope, no I/O"
CURSOR20 = "Django cursor.execute via aorm, 20 per aorm.run (connection held)"
CURSOR1 = "Django cursor.execute via aorm, one per aorm.run (connection borrowed each time)"
GET20 = "Django get() via aorm, 20 per aorm.run (connection held)"
AGET = "aorm aget(): one operation, connection borrowed each time (workload A)"
SYNC = "Django sync get() (stock backend, sync psycopg, connection held)"
STOCK = "Django stock aget() (sync_to_async thread hop, connection held)"
RAW_SERVER = "raw async psycopg, one connection, server-side binding, no prepared statements"
RAW_PREPARED = "raw async psycopg, one connection, server-side binding, prepared (threshold 5)"
SSB_GET20 = "Django get() via aorm, 20 per aorm.run, server_side_binding + prepare_threshold 5"
SSB_AGET = "aorm aget(), server_side_binding + prepare_threshold 5 (OPTIONS)"
# The concurrent workloads, as make bench runs them: 100 tasks x 20 gets.
TASKS, PER_TASK = 100, 20
CONCURRENT = {
    "A": "A: one task, sequential gets",
    "B": f"B: {TASKS} tasks x {PER_TASK} gets",
    "E": f"E: {TASKS} tasks x {PER_TASK} gets, 2 ms server wait each",
}

LAYERS = [
    ("waiting for PostgreSQL (epoll)", lambda p: p.endswith("/selectors.py")),
    ("asyncio event loop", lambda p: "/asyncio/" in p),
    ("psycopg (driver, incl. libpq)", lambda p: "/psycopg/" in p or "/psycopg_binary/" in p),
    (
        "aorm adapter + pool (backends/, _pool.py, _waiters.py)",
        lambda p: "/aorm/backends/" in p or p.endswith(("/aorm/_pool.py", "/aorm/_waiters.py")),
    ),
    (
        "aorm bridge + scope + routing (bridge.py, _operation.py, _sync_to_async.py)",
        lambda p: "/aorm/" in p,
    ),
    (
        "Django backend (django/db/backends, db/utils)",
        lambda p: "/django/db/backends/" in p or p.endswith("/django/db/utils.py"),
    ),
    (
        "Django ORM (django/db/models: QuerySet, compiler, Model)",
        lambda p: "/django/db/models/" in p,
    ),
    ("Django other (utils, dispatch, connection handler)", lambda p: "/django/" in p),
    ("asgiref (Local)", lambda p: "/asgiref/" in p),
]


WAIT = LAYERS[0][0]
# C functions that block on the server's answer.
WAITING_BUILTINS = {
    "epoll.poll",
    "poll.poll",
    "select.select",
    "select",
    "wait_c",
    "wait_epoll",
    "wait_select",
}


def layer_of(path: str) -> str:
    for name, match in LAYERS:
        if match(path):
            return name
    return "other (benchmark loop, stdlib)"


def leaf_of(stack: list[str]) -> tuple[str, str]:
    """The (layer, function) a sample is charged to: C functions count for their Python caller."""
    for entry in reversed(stack):
        parts = entry.split("\x00")
        function, path = parts[0], parts[1] if len(parts) > 1 else ""
        if path in ("", "<built-in>"):
            if function.rsplit(".", 1)[-1] in WAITING_BUILTINS or function in WAITING_BUILTINS:
                return WAIT, function
            continue
        return layer_of(path), f"{_portable(path)}:{function}"
    return "other (benchmark loop, stdlib)", "?"


def _portable(path: str) -> str:
    """A source path without this machine's prefixes: package-, repository- or stdlib-relative."""
    path = path.rsplit("/site-packages/", 1)[-1]
    for prefix in (f"{ROOT}/", f"{sysconfig.get_paths()['stdlib']}/"):
        path = path.removeprefix(prefix)
    return path


def shares_of(session: Any, ops: int) -> dict[str, Any]:
    layers: dict[str, float] = collections.Counter()
    functions: dict[str, float] = collections.Counter()
    for stack, seconds in session.frame_records:
        layer, function = leaf_of(stack)
        layers[layer] += seconds
        functions[f"{function} ({layer.split(' (')[0]})"] += seconds
    total = sum(layers.values())
    return {
        "total_s": total,
        "ops": ops,
        "layers": {name: seconds / total for name, seconds in layers.items()},
        "top_functions": [(name, seconds / total) for name, seconds in functions.most_common(25)],
    }


def pks(n: int, seed: int = 7) -> list[int]:
    rng = random.Random(seed)
    return [rng.randint(1, ROWS) for _ in range(n)]


async def timed_async(op: Callable[[int], Awaitable[Any]], keys: list[int]) -> dict[str, float]:
    for pk in keys[: len(keys) // 10]:
        await op(pk)
    cpu, wall = time.process_time(), time.perf_counter()
    for pk in keys:
        await op(pk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_us": wall / len(keys) * 1e6, "cpu_us": cpu / len(keys) * 1e6}


def timed_sync(op: Callable[[int], Any], keys: list[int]) -> dict[str, float]:
    for pk in keys[: len(keys) // 10]:
        op(pk)
    cpu, wall = time.process_time(), time.perf_counter()
    for pk in keys:
        op(pk)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"wall_us": wall / len(keys) * 1e6, "cpu_us": cpu / len(keys) * 1e6}


REPEATS = 5


async def repeated(
    runners: dict[str, Callable[[], Awaitable[dict[str, float]]]],
) -> dict[str, dict[str, float]]:
    """Each runner REPEATS times, interleaved; the least disturbed (minimum) wall and CPU of each.

    The machine is shared: a run can only be slowed down by others, never sped up.
    """
    samples: dict[str, list[dict[str, float]]] = {name: [] for name in runners}
    for _ in range(REPEATS):
        for name, runner in runners.items():
            samples[name].append(await runner())
    return {
        name: {
            "wall_us": min(s["wall_us"] for s in runs),
            "cpu_us": min(s["cpu_us"] for s in runs),
            "wall_us_median": sorted(s["wall_us"] for s in runs)[len(runs) // 2],
        }
        for name, runs in samples.items()
    }


def setup_django(mode: str) -> None:
    os.environ["BENCH_DJANGO"] = mode
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.djsettings"
    import django

    django.setup()


async def part_aorm(n: int) -> dict[str, Any]:
    setup_django("aorm")
    import psycopg
    from django.db import connection

    import aorm
    from bench.djapp.models import Student

    keys = pks(n)
    out: dict[str, Any] = {}

    # 1. Raw async psycopg, one connection, Django's SQL and driver settings
    # (client-side binding cursor, no prepared statements).
    conn = await psycopg.AsyncConnection.connect(
        common.dsn(), autocommit=True, prepare_threshold=None
    )
    cursor_class = psycopg.AsyncClientCursor

    async def raw(pk: int) -> Any:
        async with cursor_class(conn) as cur:
            await cur.execute(DJANGO_SQL, (pk,))
            return await cur.fetchall()

    runners: dict[str, Callable[[], Awaitable[dict[str, float]]]] = {}
    runners[RAW] = lambda: timed_async(raw, keys)

    # 1b. The same with psycopg's server-side binding, then prepared statements.
    server = await psycopg.AsyncConnection.connect(
        common.dsn(), autocommit=True, prepare_threshold=None
    )
    prepared = await psycopg.AsyncConnection.connect(
        common.dsn(), autocommit=True, prepare_threshold=5
    )

    def raw_on(conn: psycopg.AsyncConnection[Any]) -> Callable[[int], Awaitable[Any]]:
        async def run(pk: int) -> Any:
            async with conn.cursor() as cur:
                await cur.execute(DJANGO_SQL, (pk,))
                return await cur.fetchall()

        return run

    runners[RAW_SERVER] = lambda: timed_async(raw_on(server), keys)
    runners[RAW_PREPARED] = lambda: timed_async(raw_on(prepared), keys)

    # 2. The bridge and per-operation scope alone.
    def noop() -> None:
        pass

    runners[NOOP] = lambda: timed_async(lambda pk: aorm.run(noop), keys)

    # 3. Django's cursor on the adapter, no ORM: 20 per operation (one
    # borrowed connection), then one per operation.
    def cursor_get(pk: int) -> Any:
        with connection.cursor() as cur:
            cur.execute(DJANGO_SQL, [pk])
            return cur.fetchall()

    def batch(fn: Callable[[int], Any], chunk: list[int]) -> None:
        for pk in chunk:
            fn(pk)

    async def in_batches(fn: Callable[[int], Any]) -> dict[str, float]:
        chunks = [keys[i : i + 20] for i in range(0, len(keys), 20)]
        await aorm.run(batch, fn, chunks[0])
        cpu, wall = time.process_time(), time.perf_counter()
        for chunk in chunks:
            await aorm.run(batch, fn, chunk)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_us": wall / len(keys) * 1e6, "cpu_us": cpu / len(keys) * 1e6}

    runners[CURSOR20] = lambda: in_batches(cursor_get)
    runners[CURSOR1] = lambda: timed_async(lambda pk: aorm.run(cursor_get, pk), keys)

    # 4. The ORM: 20 gets per operation, then the real thing, one aget() per operation.
    runners[GET20] = lambda: in_batches(lambda pk: Student.objects.get(pk=pk))

    async def aget(pk: int) -> Any:
        return await Student.objects.aget(pk=pk)

    runners[AGET] = lambda: timed_async(aget, keys)
    for name, timing in (await repeated(runners)).items():
        out[name] = timing
    for each in (conn, server, prepared):
        await each.close()

    # 5. Profile of 4.
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0001, async_mode="disabled")
    profiler.start()
    for pk in keys:
        await Student.objects.aget(pk=pk)
    out["profile"] = shares_of(profiler.stop(), len(keys))

    # 6. Under concurrency (B, E): CPU per get, and where it goes.
    out["concurrent"] = await concurrent_profiles(aget, keys)
    return out


async def concurrent_profiles(
    aget: Callable[[int], Awaitable[Any]], keys: list[int]
) -> dict[str, Any]:
    """A, B and E of make bench with aorm: CPU per get (min of REPEATS), then a profile of each."""
    from django.db.models import BooleanField
    from django.db.models.expressions import RawSQL
    from pyinstrument import Profiler

    from bench.djapp.models import Student

    wait = RawSQL(common.WAIT_FUNCTION, (), output_field=BooleanField())

    async def aget_wait(pk: int) -> Any:
        return await Student.objects.annotate(wait=wait).aget(pk=pk)

    many = pks(TASKS * PER_TASK, seed=11)

    async def gathered(op: Callable[[int], Awaitable[Any]], share: float = 1.0) -> None:
        async def one(chunk: list[int]) -> None:
            for pk in chunk:
                await op(pk)

        size = max(1, int(PER_TASK * share))
        await asyncio.gather(
            *(one(many[i * PER_TASK : i * PER_TASK + size]) for i in range(TASKS))
        )

    async def timed_gathered(op: Callable[[int], Awaitable[Any]]) -> dict[str, float]:
        await gathered(op, 0.15)
        cpu, wall = time.process_time(), time.perf_counter()
        await gathered(op)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_us": wall / len(many) * 1e6, "cpu_us": cpu / len(many) * 1e6}

    runs = {
        "A": lambda: timed_async(aget, keys),
        "B": lambda: timed_gathered(aget),
        "E": lambda: timed_gathered(aget_wait),
    }
    result: dict[str, Any] = {"timings": await repeated(runs), "profiles": {}}
    for key, run in runs.items():
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        await run()
        ops = len(keys) if key == "A" else len(many)
        result["profiles"][key] = shares_of(profiler.stop(), ops)
    return result


async def part_aorm_ssb(n: int) -> dict[str, Any]:
    """aorm with Django's server_side_binding and psycopg's prepared statements (OPTIONS)."""
    os.environ["BENCH_DRIVER_OPTIONS"] = json.dumps(
        {"server_side_binding": True, "prepare_threshold": 5}
    )
    setup_django("aorm")
    import aorm
    from bench.djapp.models import Student

    keys = pks(n)

    def batch(chunk: list[int]) -> None:
        for pk in chunk:
            Student.objects.get(pk=pk)

    async def in_batches() -> dict[str, float]:
        chunks = [keys[i : i + 20] for i in range(0, len(keys), 20)]
        await aorm.run(batch, chunks[0])
        cpu, wall = time.process_time(), time.perf_counter()
        for chunk in chunks:
            await aorm.run(batch, chunk)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {"wall_us": wall / len(keys) * 1e6, "cpu_us": cpu / len(keys) * 1e6}

    async def aget(pk: int) -> Any:
        return await Student.objects.aget(pk=pk)

    return await repeated({SSB_GET20: in_batches, SSB_AGET: lambda: timed_async(aget, keys)})


async def part_stock(n: int) -> dict[str, Any]:
    setup_django("stock")
    from asgiref.sync import ThreadSensitiveContext, sync_to_async

    from bench.djapp.models import Student

    keys = pks(n)
    out: dict[str, Any] = {}

    def sync_part() -> tuple[dict[str, float], dict[str, Any]]:
        from django.db import connection
        from pyinstrument import Profiler

        runs = [timed_sync(lambda pk: Student.objects.get(pk=pk), keys) for _ in range(REPEATS)]
        result = {
            "wall_us": min(r["wall_us"] for r in runs),
            "cpu_us": min(r["cpu_us"] for r in runs),
            "wall_us_median": sorted(r["wall_us"] for r in runs)[REPEATS // 2],
        }
        profiler = Profiler(interval=0.0001, async_mode="disabled")
        profiler.start()
        for pk in keys:
            Student.objects.get(pk=pk)
        profile = shares_of(profiler.stop(), len(keys))
        connection.close()
        return result, profile

    # Django's sync ORM, in a thread with no event loop (as under WSGI).
    sync_timing, out["profile"] = await sync_to_async(sync_part, thread_sensitive=False)()
    out[SYNC] = sync_timing

    async def stock() -> dict[str, float]:
        async with ThreadSensitiveContext():
            return await timed_async(lambda pk: Student.objects.aget(pk=pk), keys)

    out[STOCK] = (await repeated({STOCK: stock}))[STOCK]
    return out


def run_part(part: str, n: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    proc = subprocess.run(
        [sys.executable, "-m", "bench.profile_a", "--part", part, "--ops", str(n)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    for line in proc.stdout.splitlines():
        if line.startswith("PROFILE "):
            return json.loads(line[8:])  # type: ignore[no-any-return]
    raise RuntimeError(f"part {part} failed: {proc.stderr[-3000:]}")


def _minus(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {key: a[key] - b[key] for key in ("wall_us", "cpu_us")}


def markdown(parts: dict[str, Any], n: int) -> str:
    timings = {
        k: v
        for part in parts.values()
        for k, v in part.items()
        if k not in ("profile", "concurrent")
    }
    profile = parts["aorm"]["profile"]
    aget = timings[AGET]
    lines = [
        "# Where aorm's time goes: workload A (get by pk, one task, sequential)",
        "",
        f"{n:,} gets per measurement after a 10% warm-up, one task, pool of {common.POOL_SIZE}; "
        "`python -m bench.profile_a`.",
        "",
        "## Differential timings (µs per get)",
        "",
        f"Each path is measured {REPEATS} times, interleaved; the table shows the minimum "
        "(least disturbed by the machine's other load) wall and CPU time, and the median wall time.",
        "",
        "| path | wall µs (min) | wall µs (median) | client CPU µs (min) |",
        "|---|---:|---:|---:|",
    ]
    for name, t in timings.items():
        lines.append(
            f"| {name} | {t['wall_us']:.0f} | {t['wall_us_median']:.0f} | {t['cpu_us']:.0f} |"
        )
    raw, noop, cursor20, get20 = timings[RAW], timings[NOOP], timings[CURSOR20], timings[GET20]
    layers = [
        ("psycopg + server round trip (raw async psycopg)", raw),
        ("aorm adapter + Django cursor wrapper, connection held", _minus(cursor20, raw)),
        ("Django ORM: QuerySet, SQL compiler, Model hydration", _minus(get20, cursor20)),
        (
            "per operation: bridge + scope + connection borrow (pool acquire/release, Django connect/close)",
            _minus(aget, get20),
        ),
        ("  of which bridge + scope alone (aorm.run of a no-op)", noop),
    ]
    lines += [
        "",
        "Layers of an aorm aget(), by difference of the rows above:",
        "",
        "| layer | wall µs | CPU µs |",
        "|---|---:|---:|",
    ]
    for name, t in layers:
        lines.append(f"| {name} | {t['wall_us']:.0f} | {t['cpu_us']:.0f} |")
    lines += [
        f"| **total aorm aget()** | **{aget['wall_us']:.0f}** | **{aget['cpu_us']:.0f}** |",
        "",
        "## Profiles: aorm aget() and, for reference, Django's sync get() (pyinstrument, wall clock)",
        "",
        "Each sample is charged to the innermost Python frame's layer (C functions such as libpq, "
        "greenlet switches and epoll count for their Python caller, waits on the server as waiting); "
        "µs are the share times the unprofiled wall time per get.",
        "",
        "| layer | aorm aget() share | aorm µs per get | sync get() share | sync µs per get |",
        "|---|---:|---:|---:|---:|",
    ]
    sync_profile = parts["stock"]["profile"]
    sync = timings[SYNC]
    names = sorted(
        set(profile["layers"]) | set(sync_profile["layers"]),
        key=lambda n: -profile["layers"].get(n, 0),
    )
    for name in names:
        a, b = profile["layers"].get(name, 0.0), sync_profile["layers"].get(name, 0.0)
        lines.append(
            f"| {name} | {a:.1%} | {a * aget['wall_us']:.0f} | {b:.1%} | {b * sync['wall_us']:.0f} |"
        )
    lines.append(f"| total | 100% | {aget['wall_us']:.0f} | 100% | {sync['wall_us']:.0f} |")
    for title, prof in [("aorm aget()", profile), ("Django sync get()", sync_profile)]:
        lines += [
            "",
            f"Top functions of {title} (self time):",
            "",
            "| function (layer) | share |",
            "|---|---:|",
        ]
        for name, share in prof["top_functions"][:15]:
            lines.append(f"| `{name}` | {share:.1%} |")
    lines += concurrency_markdown(parts["aorm"]["concurrent"])
    lines.append("")
    return "\n".join(lines)


def concurrency_markdown(concurrent: dict[str, Any]) -> list[str]:
    """B and E next to A: CPU per get, and the profile of each by layer."""
    timings, profiles = concurrent["timings"], concurrent["profiles"]
    lines = [
        "",
        "## Under concurrency: A, B and E with aorm",
        "",
        f"B and E as `make bench` runs them ({TASKS} tasks x {PER_TASK} gets, "
        f"pool of {common.POOL_SIZE}, E's gets wait 2 ms on the server), A for comparison; "
        f"minimum of {REPEATS} interleaved runs. Wall µs per get is the run's duration "
        "divided by its gets (throughput, not latency).",
        "",
        "| workload | wall µs per get (min) | client CPU µs per get (min) |",
        "|---|---:|---:|",
    ]
    for key, title in CONCURRENT.items():
        t = timings[key]
        lines.append(f"| {title} | {t['wall_us']:.0f} | {t['cpu_us']:.0f} |")
    names = sorted(
        {name for prof in profiles.values() for name in prof["layers"]},
        key=lambda n: -profiles["B"]["layers"].get(n, 0),
    )
    lines += [
        "",
        "Share of each layer in a profile of each workload (pyinstrument, wall clock; "
        "waiting is the loop idle, waiting for PostgreSQL), and µs per get "
        "(share x wall µs per get):",
        "",
        "| layer | " + " | ".join(f"{k} share | {k} µs" for k in CONCURRENT) + " |",
        "|---|" + "---:|---:|" * len(CONCURRENT),
    ]
    for name in names:
        cells = []
        for key in CONCURRENT:
            share = profiles[key]["layers"].get(name, 0.0)
            cells += [f"{share:.1%}", f"{share * timings[key]['wall_us']:.0f}"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key in ("B", "E"):
        lines += [
            "",
            f"Top functions of {CONCURRENT[key]} (self time):",
            "",
            "| function (layer) | share |",
            "|---|---:|",
        ]
        for name, share in profiles[key]["top_functions"][:15]:
            lines.append(f"| `{name}` | {share:.1%} |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ops", type=int, default=1500)
    parser.add_argument("--part", choices=["aorm", "stock", "aorm-ssb"])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "profile_a.md")
    args = parser.parse_args()
    if args.part:
        runner = {"aorm": part_aorm, "stock": part_stock, "aorm-ssb": part_aorm_ssb}[args.part]
        print("PROFILE " + json.dumps(asyncio.run(runner(args.ops))), flush=True)
        os._exit(0)
    db.create(ROWS)
    try:
        parts = {part: run_part(part, args.ops) for part in ("aorm", "stock", "aorm-ssb")}
    finally:
        db.drop()
    text = markdown(parts, args.ops)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    (args.out.with_suffix(".json")).write_text(json.dumps(parts, indent=1) + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
