"""One contender, one round of workloads A-E (A, B, D on SQLite), in a process of its own.

    python -m bench.worker CONTENDER SIZES_JSON SEED

Prints one line ``BENCH-RESULT {json}`` on stdout: per workload, the ops/s of
the timed run (or the error that stopped it), and the process CPU time per
operation. Every workload first runs an untimed warm-up (pools filled, code
paths and caches warm), then the timed run on fresh random keys; the random
keys depend only on the seed, so every contender of a round reads the same rows.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import random
import sys
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

from bench import common
from bench.contenders import load

MARKER = "BENCH-RESULT "


def _pk_of(obj: Any) -> int:
    if isinstance(obj, tuple) or type(obj).__name__ == "Record":
        return int(obj[0])
    return int(obj.id)


class Runner:
    def __init__(self, contender: Any, sizes: common.Sizes, seed: int) -> None:
        self.c = contender
        self.sizes = sizes
        self.rng = random.Random(seed)

    def pks(self, n: int) -> list[int]:
        return [self.rng.randint(1, self.sizes.rows) for _ in range(n)]

    async def timed(self, run: Callable[[float], Awaitable[int]]) -> dict[str, float]:
        """``run(share)`` does ``share`` of the workload and returns its op count."""
        await run(self.sizes.warmup_fraction)
        gc.collect()
        cpu, wall = time.process_time(), time.perf_counter()
        ops = await run(1.0)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        return {
            "ops": ops,
            "seconds": wall,
            "ops_per_s": ops / wall,
            "cpu_us_per_op": cpu / ops * 1e6,
        }

    async def sequential(
        self, op: Callable[..., Awaitable[Any]], args: list[tuple[Any, ...]]
    ) -> int:
        """``args`` in order, ``request_ops`` operations per simulated request."""
        step = self.sizes.request_ops
        for start in range(0, len(args), step):
            async with self.c.request() as ctx:
                for arg in args[start : start + step]:
                    await op(ctx, *arg)
        return len(args)

    async def concurrent(
        self, op: Callable[..., Awaitable[Any]], tasks: int, per_task: int
    ) -> int:
        """``tasks`` concurrent requests, each ``per_task`` operations in sequence."""

        async def one(pks: list[int]) -> None:
            async with self.c.request() as ctx:
                for pk in pks:
                    await op(ctx, pk)

        await asyncio.gather(*(one(self.pks(per_task)) for _ in range(tasks)))
        return tasks * per_task

    # The workloads.

    async def check(self, workloads: tuple[str, ...]) -> None:
        """One of each operation, checked: a wrong answer must not be timed."""
        async with self.c.request() as ctx:
            assert _pk_of(await self.c.get(ctx, 7)) == 7
            if "E" in workloads:
                assert _pk_of(await self.c.get_wait(ctx, 8)) == 8
            if "C" in workloads:
                rows = await self.c.list100(ctx, 11)
                assert [_pk_of(row) for row in rows] == list(range(11, 111)), "list100"
            assert await self.c.create(ctx, "check", 1) > self.sizes.rows

    async def a(self, share: float) -> int:
        n = max(1, int(self.sizes.a_ops * share))
        return await self.sequential(self.c.get, [(pk,) for pk in self.pks(n)])

    async def b(self, share: float) -> int:
        per_task = max(1, int(self.sizes.request_ops * share))
        return await self.concurrent(self.c.get, self.sizes.b_tasks, per_task)

    async def c_(self, share: float) -> int:
        n = max(1, int(self.sizes.c_ops * share))
        top = max(1, self.sizes.rows - 100)
        starts = [(self.rng.randint(1, top),) for _ in range(n)]
        return await self.sequential(self.c.list100, starts)

    async def d(self, share: float) -> int:
        n = max(1, int(self.sizes.d_ops * share))
        args = [
            (f"student-new-{self.rng.randrange(10**6)}", self.rng.randint(18, 30))
            for _ in range(n)
        ]
        return await self.sequential(self.c.create, args)

    async def e(self, share: float) -> int:
        per_task = max(1, int(self.sizes.request_ops * share))
        return await self.concurrent(self.c.get_wait, self.sizes.b_tasks, per_task)


async def main(name: str, sizes: common.Sizes, seed: int) -> dict[str, Any]:
    result: dict[str, Any] = {"contender": name, "workloads": {}}
    try:
        contender = load(name)
    except Exception as exc:
        result["error"] = f"cannot load: {type(exc).__name__}: {exc}"
        return result
    result["description"] = contender.description
    result["versions"] = contender.versions()
    try:
        await contender.setup()
    except Exception as exc:
        result["error"] = f"setup failed: {type(exc).__name__}: {exc}"
        traceback.print_exc()
        return result
    runner = Runner(contender, sizes, seed)
    workloads = common.workloads_of(name)
    try:
        await runner.check(workloads)
        for key, run in [
            ("A", runner.a),
            ("B", runner.b),
            ("C", runner.c_),
            ("D", runner.d),
            ("E", runner.e),
        ]:
            if key not in workloads:
                continue
            try:
                result["workloads"][key] = await runner.timed(run)
            except Exception as exc:
                traceback.print_exc()
                result["workloads"][key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    except Exception as exc:
        traceback.print_exc()
        result["error"] = f"check failed: {type(exc).__name__}: {exc}"[:300]
    finally:
        try:
            await contender.teardown()
        except Exception:
            traceback.print_exc()
    return result


if __name__ == "__main__":
    name, sizes_json, seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sizes = common.Sizes(**json.loads(sizes_json))
    output = asyncio.run(main(name, sizes, seed))
    print(MARKER + json.dumps(output), flush=True)
    sys.stderr.flush()
    # Some pools keep non-daemon threads or connections; the result is out, stop here.
    os._exit(0)
