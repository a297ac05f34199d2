"""`make soak`: 100,000 requests against one uvicorn server of the soak's app (20 minutes here).

A long run, not a unit test (it is not part of `make test`). It creates the database
``aorm_soak`` (``AORM_SOAK_DB``) on the PostgreSQL the tests use, migrates it, serves
:mod:`bench.soak_app` (the seeds' views, atomic blocks with ``asyncio.gather``, slow
queries, and a diagnostics view) with ``uvicorn`` in a subprocess, with a pool of
:data:`POOL_MAX_SIZE` connections, and sends the requests over loopback with
:mod:`support.load_client`, :data:`CONCURRENCY` at a time, a share of them abandoned by
the client mid-request (hang-ups, which cancel the view).

The requests go in rounds; after each, the server's diagnostics (RSS, live greenlets,
asyncio tasks, threads, pool) and its sessions in ``pg_stat_activity`` are sampled.
The first round is the warm-up: the "start" figures are taken after it, once imports,
caches and the pool have filled. It checks, and reports in ``bench/results/soak.md``:

- every request answered 200 with the expected answer, or was abandoned by the client;
- RSS at the end within :data:`RSS_MARGIN` of the start;
- as many live greenlets and asyncio tasks at the end as at the start;
- the server's sessions never more than the pool's ``max_size``; at the end every one
  idle (none idle in transaction), as many as the pool counts; ``max_idle`` later,
  back to the pool's ``min_size``;
- nothing on the server's stderr.

``python -m bench.soak --requests 5000`` is a short run; ``--out`` another report.

Duration: the server process spends about 9 ms of CPU per request (a new connection,
Django's request handling, several queries), so
100,000 requests take 15-20 minutes on one core; 5 minutes would need some 330
requests/s, more than one uvicorn process gives on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from support.load_client import Outcome, Request, fetch, run_load
from support.services import free_port, wait_for_port

from aorm.bridge import _MAX_IDLE_WORKERS as MAX_IDLE_WORKERS

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
PG = {
    "host": os.environ.get("AORM_PGHOST", "127.0.0.1"),
    "port": os.environ.get("AORM_PGPORT", "5432"),
    "user": os.environ.get("AORM_PGUSER", "postgres"),
}
DATABASE = os.environ.get("AORM_SOAK_DB", "aorm_soak")
REQUESTS = 100_000
ROUNDS = 20  # the first one is the warm-up
CONCURRENCY = 16  # clients at once: twice the pool, so that requests queue for connections
HANG_UPS = 0.05  # share of requests the client abandons mid-request
HANG_UP_AFTER = (0.002, 0.040)  # seconds after sending it
POOL_MAX_SIZE = 8
MAX_IDLE = 5.0  # the pool's max_idle, seconds (bench/soak_settings.py)
RSS_MARGIN = 0.10  # RSS at the end at most 10% above the start
STUDENTS = 20  # rows in the table from the start (the views delete what they add)
# Which views, how often; hang-ups go to those that hold a connection for a while.
MIX = {"students": 20, "example": 20, "atomic": 20, "atomic-fail": 5, "gather": 20, "slow": 15}
HANG_UP_VIEWS = ("atomic", "atomic-fail", "slow", "gather")


def _path(view: str, name: str) -> str:
    return {
        "students": "/students/",
        "example": f"/example/?name={name}",
        "atomic": f"/atomic/?name={name}",
        "atomic-fail": f"/atomic/?name={name}&fail=1",
        "gather": "/gather/",
        "slow": "/slow/",
    }[view]


def plan(rng: random.Random, round_: int, count: int) -> list[Request]:
    views = rng.choices(list(MIX), weights=list(MIX.values()), k=count)
    return [
        Request(
            _path(view, f"soak-{round_}-{i}"),
            rng.uniform(*HANG_UP_AFTER)
            if view in HANG_UP_VIEWS
            and rng.random() < HANG_UPS * 100 / sum(MIX[v] for v in HANG_UP_VIEWS)
            else None,
        )
        for i, view in enumerate(views)
    ]


def problem(outcome: Outcome) -> str | None:
    """What is wrong with one request's outcome, if anything."""
    if outcome.error is not None:
        return f"{outcome.request.path}: {outcome.error!r}"
    if outcome.response is None:
        return None  # the client hung up
    if outcome.response.status != 200:
        return f"{outcome.request.path}: {outcome.response.status} {outcome.response.body[:200]!r}"
    answer = outcome.response.json()
    if outcome.request.path.startswith("/atomic/") and (
        answer["kept"] or not answer["exists"] or not answer["same"]
    ):
        return f"{outcome.request.path}: {answer}"
    return None


# The database and the server.


def create_database() -> None:
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DATABASE}"')


def drop_database() -> None:
    with psycopg.connect(**PG, dbname="postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DATABASE}" WITH (FORCE)')


def server_environ(application_name: str) -> dict[str, str]:
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": "bench.soak_settings",
        "AORM_SOAK_APPLICATION_NAME": application_name,
    }
    environ.pop("PYTHONWARNINGS", None)
    return environ


def migrate(environ: dict[str, str]) -> None:
    subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=environ,
        check=True,
    )
    with psycopg.connect(**PG, dbname=DATABASE, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO students_student (name, age) "
            "SELECT 'student ' || i, 15 + i %% 10 FROM generate_series(1, %s) AS i",
            [STUDENTS],
        )


# Measurements.


@dataclass
class Sample:
    requests: int  # sent so far
    seconds: float
    rss_kb: int
    greenlets: int
    tasks: int
    threads: int
    pool: dict[str, Any]
    sessions: Counter[str]  # the server's sessions by state
    cpu_seconds: float  # the server process's, user + system


@dataclass
class Soak:
    samples: list[Sample] = field(default_factory=list)
    outcomes: Counter[str] = field(default_factory=Counter)
    problems: list[str] = field(default_factory=list)
    peak_sessions: int = 0
    cancelled: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    after_max_idle: Sample | None = None
    max_idle_seconds: float = 0.0
    stderr: str = ""
    seconds: float = 0.0


async def server_sessions(
    conn: psycopg.AsyncConnection[Any], application_name: str
) -> Counter[str]:
    cursor = await conn.execute(
        "SELECT state FROM pg_stat_activity WHERE application_name = %s", [application_name]
    )
    return Counter(str(state) for (state,) in await cursor.fetchall())


async def diagnostics(port: int) -> dict[str, Any]:
    response = await fetch(HOST, port, "/diagnostics/", timeout=30)
    assert response is not None and response.status == 200, response
    answer: dict[str, Any] = response.json()
    return answer


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def sample(
    server: tuple[int, int],
    conn: psycopg.AsyncConnection[Any],
    name: str,
    requests: int,
    started: float,
) -> Sample:
    """The server's figures once it is quiet: no connection in use, every session idle."""
    deadline = time.monotonic() + 30
    while True:
        found = await diagnostics(server[0])
        sessions = await server_sessions(conn, name)
        quiet = found["pool"]["in_use"] == 0 and set(sessions) <= {"idle"}
        if quiet or time.monotonic() > deadline:
            break  # the report says what is wrong, if anything
        await asyncio.sleep(0.05)
    return Sample(
        requests, time.monotonic() - started, found["rss_kb"], found["greenlets"],
        found["tasks"], found["threads"], found["pool"], sessions, cpu_seconds(server[1]),
    )  # fmt: skip


async def watch(
    conn: psycopg.AsyncConnection[Any], name: str, stop: asyncio.Event, soak: Soak
) -> None:
    """The server's sessions during the load, twice a second."""
    while not stop.is_set():
        soak.peak_sessions = max(
            soak.peak_sessions, sum((await server_sessions(conn, name)).values())
        )
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def soak_run(
    server: tuple[int, int], name: str, total: int, seed: int, on_round: Callable[[Soak], object]
) -> Soak:
    """Send ``total`` requests in rounds to ``server`` (port, pid); sample after each."""
    port = server[0]
    rng = random.Random(seed)
    soak = Soak()
    per_round = total // ROUNDS
    started = time.monotonic()
    async with await psycopg.AsyncConnection.connect(
        **PG, dbname=DATABASE, autocommit=True, application_name="aorm-soak-monitor"
    ) as conn:
        stop = asyncio.Event()
        watcher = asyncio.create_task(watch(conn, name, stop, soak))
        sent = 0
        try:
            for round_ in range(ROUNDS):
                outcomes = await run_load(
                    HOST, port, plan(rng, round_, per_round), concurrency=CONCURRENCY, timeout=60
                )
                sent += len(outcomes)
                for outcome in outcomes:
                    soak.outcomes[
                        "hung up" if outcome.hung_up else str(outcome.status or "error")
                    ] += 1
                    if (wrong := problem(outcome)) is not None:
                        soak.problems.append(wrong)
                    elif outcome.response is not None:
                        soak.latencies.append(outcome.ended - outcome.started)
                soak.samples.append(await sample(server, conn, name, sent, started))
                s = soak.samples[-1]
                print(
                    f"soak: {sent:>7} requests, {s.seconds:6.1f}s, RSS {s.rss_kb / 1024:.1f} MB, "
                    f"greenlets {s.greenlets}, tasks {s.tasks}, threads {s.threads}, "
                    f"pool {s.pool['size']} ({s.pool['idle']} idle), sessions {dict(s.sessions)}, "
                    f"CPU {s.cpu_seconds:.0f}s, problems {len(soak.problems)}",
                    flush=True,
                )
                on_round(soak)
        finally:
            stop.set()
            await watcher
        soak.seconds = time.monotonic() - started
        # max_idle later, the pool closes its idle connections down to min_size.
        idle_since = time.monotonic()
        deadline = idle_since + MAX_IDLE + 30
        while True:
            last = await sample(server, conn, name, sent, started)
            if last.pool["size"] <= 1 and sum(last.sessions.values()) <= 1:
                break
            if time.monotonic() > deadline:
                break  # the report says so
            await asyncio.sleep(0.25)
        soak.after_max_idle, soak.max_idle_seconds = last, time.monotonic() - idle_since
        soak.cancelled = (await diagnostics(port))["cancelled"]
    return soak


def serve_and_soak(total: int, seed: int, on_round: Callable[[Soak], object]) -> Soak:
    port = free_port()
    name = f"aorm-soak-{port}"
    environ = server_environ(name)
    migrate(environ)
    command = [
        sys.executable, "-W", "default", "-m", "uvicorn", "bench.webapp.asgi:application",
        f"--host={HOST}", f"--port={port}", "--log-level=warning", "--no-access-log",
    ]  # fmt: skip
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(
            command, cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=err, text=True
        )
        try:
            wait_for_port(port, proc)
            soak = asyncio.run(soak_run((port, proc.pid), name, total, seed, on_round))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
            err.seek(0)
            stderr = err.read()
    soak.stderr = stderr
    return soak


# The report.


def checks(soak: Soak, total: int) -> list[tuple[str, bool]]:
    start, end, idle = soak.samples[0], soak.samples[-1], soak.after_max_idle
    sessions_end = sum(end.sessions.values())
    idle_ok = idle is not None and idle.pool["size"] == 1 and sum(idle.sessions.values()) == 1
    return [
        (f"all {total:,} requests sent", end.requests == total),
        ("every request answered 200 as expected, or was abandoned by the client", not soak.problems),
        (f"RSS at the end within {RSS_MARGIN:.0%} of the start", end.rss_kb <= start.rss_kb * (1 + RSS_MARGIN)),
        (f"live greenlets at the end at most aorm's idle workers ({MAX_IDLE_WORKERS}) + one per thread "
         "(the bridge keeps idle worker greenlets for reuse, up to that many)",
         end.greenlets <= MAX_IDLE_WORKERS + end.threads),
        ("asyncio tasks at the end = at the start", end.tasks == start.tasks),
        (f"server sessions never above the pool's max_size ({POOL_MAX_SIZE})", soak.peak_sessions <= POOL_MAX_SIZE),
        ("at the end: every session idle, as many as the pool counts, none in use",
         set(end.sessions) <= {"idle"} and sessions_end == end.pool["size"] == end.pool["idle"]
         and end.pool["in_use"] == end.pool["waiting"] == 0),
        (f"max_idle ({MAX_IDLE:g} s) later: back to min_size (1 session)", idle_ok),
        ("nothing on the server's stderr", soak.stderr == ""),
    ]  # fmt: skip


def report(soak: Soak, total: int, seed: int, command: str) -> str:
    import django

    start, end, idle = soak.samples[0], soak.samples[-1], soak.after_max_idle
    latencies = sorted(soak.latencies) or [0.0]
    results = checks(soak, total)
    after_idle = (
        f"{idle.seconds - end.seconds:.1f} s after the last round (`max_idle` {MAX_IDLE:g} s): "
        f"pool size {idle.pool['size']}, {sum(idle.sessions.values())} server session(s), "
        f"states {dict(idle.sessions)}."
        if idle is not None
        else f"(in progress: {end.requests:,} of {total:,} requests so far)"
    )
    rows = "\n".join(
        f"| {s.requests:,} | {s.seconds:.0f} | {s.rss_kb / 1024:.1f} | {s.greenlets} | {s.tasks} "
        f"| {s.threads} | {s.pool['size']} / {s.pool['idle']} / {s.pool['in_use']} "
        f"| {', '.join(f'{k} {n}' for k, n in sorted(s.sessions.items()))} |"
        for s in soak.samples
    )
    growth = (end.rss_kb - start.rss_kb) / start.rss_kb
    return f"""# Soak: {total:,} requests against one uvicorn server

```sh
{command}
```

Python {sys.version.split()[0]}, Django {django.get_version()}, PostgreSQL on 127.0.0.1,
{os.cpu_count()} CPUs shared with other work; seed {seed}. One uvicorn process serving
`bench/soak_app.py` (the seeds' `student_list` and `example_view`, `async with
transaction.atomic()` with `asyncio.gather` inside, committed or rolled back,
`asyncio.gather` outside a transaction, a 50 ms `pg_sleep`), a pool of {POOL_MAX_SIZE}
connections (`min_size` 1, `max_idle` {MAX_IDLE:g} s). {CONCURRENCY} concurrent
clients, a new connection per request, {HANG_UPS:.0%} of the requests abandoned by the
client {HANG_UP_AFTER[0] * 1000:.0f}-{HANG_UP_AFTER[1] * 1000:.0f} ms after sending them.
Figures sampled after each round of {total // ROUNDS:,} requests, once the server is
quiet; the first round is the warm-up, the start figures are taken after it.

## Result

| | start | end |
|---|---|---|
| RSS | {start.rss_kb / 1024:.1f} MB | {end.rss_kb / 1024:.1f} MB ({growth:+.1%}; margin {RSS_MARGIN:.0%}) |
| live greenlets | {start.greenlets} | {end.greenlets} |
| asyncio tasks | {start.tasks} | {end.tasks} |
| threads | {start.threads} | {end.threads} |
| server sessions (pool size) | {sum(start.sessions.values())} ({start.pool["size"]}) | {sum(end.sessions.values())} ({end.pool["size"]}), states {dict(end.sessions)} |

- {end.requests:,} requests in {end.seconds:.0f} s ({end.requests / end.seconds:.0f} requests/s; the server
  process used {(end.cpu_seconds - start.cpu_seconds) * 1000 / max(1, end.requests - start.requests):.1f} ms of CPU per request after the warm-up):
  {", ".join(f"{k} {n:,}" for k, n in sorted(soak.outcomes.items()))}.
  Latency of the answered ones: p50 {latencies[len(latencies) // 2] * 1000:.0f} ms,
  p99 {latencies[len(latencies) * 99 // 100] * 1000:.0f} ms, max {latencies[-1] * 1000:.0f} ms.
- Views the hang-ups cancelled (server side): {", ".join(f"{k} {n:,}" for k, n in sorted(soak.cancelled.items())) or "none"}.
- Peak server sessions during the load: {soak.peak_sessions} (pool `max_size` {POOL_MAX_SIZE}).
- {after_idle}
- Greenlets: the ones alive in the server process (`gc.get_objects()` after
  `gc.collect()`), the main thread's own included. Tasks: `asyncio.all_tasks()` on the
  server's loop, the diagnostics request's own included.

## Checks

{chr(10).join(f"- {'PASS' if ok else 'FAIL'}: {what}" for what, ok in results)}
{chr(10).join(f"  - {p}" for p in soak.problems[:20])}

## Samples

| requests | s | RSS MB | greenlets | tasks | threads | pool size / idle / in use | sessions |
|---|---|---|---|---|---|---|---|
{rows}
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=REQUESTS)
    parser.add_argument("--seed", type=int, default=random.randrange(1 << 32))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "soak.md")
    args = parser.parse_args()
    command = (
        "make soak"
        if args.requests == REQUESTS
        else f"python -m bench.soak --requests {args.requests}"
    )

    def write(soak: Soak) -> str:  # after each round too: a run cut short leaves its figures
        text = report(soak, args.requests, args.seed, command)
        args.out.write_text(text)
        return text

    create_database()
    try:
        soak = serve_and_soak(args.requests, args.seed, write)
    finally:
        drop_database()
    print(write(soak))
    if soak.stderr:
        print(f"the server's stderr:\n{soak.stderr}", file=sys.stderr)
    return 0 if all(ok for _, ok in checks(soak, args.requests)) else 1


if __name__ == "__main__":
    sys.exit(main())
