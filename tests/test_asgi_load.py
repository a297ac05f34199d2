"""Connections under ASGI are pooled, held only while used, released on every path,
and cancellation-safe.

The load tests start a real ASGI server (uvicorn, daphne and granian) in
a subprocess on the test database, serving :mod:`tests.loadapp` with a pool of
:data:`POOL_MAX_SIZE` connections whose sessions carry their own
``application_name``, and drive it over loopback with :mod:`support.load_client`:

- 2,000 requests at concurrency 100; a quarter hang up mid-request (half a few
  milliseconds after sending, mostly while the view waits in the pool's line;
  half just after the view signals that it holds its connection, in a slow
  query or in a transaction); once, every session of the test database is
  terminated (``pg_terminate_backend``). Then: acknowledged writes are in the
  table exactly once, rolled-back ones are not; only requests that ran into a
  terminated session failed (500), at most one per terminated session; the
  server never had more sessions than its pool's size, and ends with every
  session idle (none idle in transaction), as many sessions as its pool
  counts, no connection in use; it serves normally afterwards.
- Views asleep between two queries, three times as many as the pool's size,
  are all asleep at once: none holds a connection while it awaits.

What the server's stderr may hold: nothing but the one-line reports that
:mod:`tests.loadapp.logs` writes, instead of Django's traceback, for a failed
request whose exception is Django's ``OperationalError`` (exactly that class,
not aorm's PoolTimeout) caused by psycopg's ``OperationalError`` saying
"terminating connection due to administrator command" or "server closed the
connection unexpectedly". Any other line (a traceback, a warning, including
ResourceWarning: the server runs with ``-W default``) fails the test.

The pool tests run in process, on aliases with small pools: exhaustion raises
:class:`aorm.PoolTimeout` after the pool's timeout, naming the alias, the size
and the connections in use, and a released connection then serves a waiter;
waiters are served in turn, even when one is cancelled after being served or
when the releasing tasks ask again at once; a task cancelled while the pool
health-checks the connection it is about to get loses no connection.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import random
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest
from django.db import OperationalError, connection, connections, transaction
from students.models import Student
from support.load_client import Outcome, Request, fetch, run_load
from support.services import free_port, serve

import aorm
from tests.conftest import ALL_DATABASES, postgresql_only
from tests.loadapp.logs import EXPECTED_FAULT
from tests.loadapp.views import SIGNAL
from tests.server import ROOT

pytestmark = ALL_DATABASES

SERVERS = [
    "uvicorn",
    *(
        pytest.param(
            server,
            marks=pytest.mark.skipif(
                importlib.util.find_spec(server) is None, reason=f"{server} is not installed"
            ),
        )
        for server in ("daphne", "granian")
    ),
]

HOST = "127.0.0.1"
POOL_MAX_SIZE = 8
REQUESTS = 2000
CONCURRENCY = 100
HANG_UPS = REQUESTS // 4  # requests the client abandons mid-request: half of them
HANG_UP_DELAY = (0.005, 0.060)  # seconds after sending the request (mostly in the pool's line)
HANG_UP_AFTER_SIGNAL = (0.0, 0.040)  # the other half: seconds after the view holds a connection
FAULT_AFTER = 700  # completed requests when every session of the database is terminated
SAMPLE_EVERY = 0.05  # pg_stat_activity, during the load
LINGER = 0.1  # how long the server process of a closed session may stay in pg_stat_activity
LOAD_TIMEOUT = 90.0
# Once the load has ended: each view, 3 times the pool's size of requests at once.
AFTER_FAULT = [
    Request(path)
    for i in range(POOL_MAX_SIZE)
    for path in ("/query/", f"/write/?token=after{i}", "/between/?pause=0.01")
]


# The server.


@dataclass
class Server:
    kind: str
    port: int
    application_name: str
    stderr: str = ""
    stdout: str = ""

    def lines_of_stderr(self) -> tuple[list[str], list[str]]:
        """(expected-fault reports, every other line)."""
        expected: list[str] = []
        other: list[str] = []
        for line in self.stderr.splitlines():
            (expected if EXPECTED_FAULT in line else other).append(line)
        return expected, other


SERVER_OPTIONS = {
    "uvicorn": ["-m", "uvicorn", "--host={host}", "--port={port}", "--log-level=warning"],
    "daphne": ["-m", "daphne", "--bind={host}", "--port={port}", "--verbosity=0"],
    "granian": [
        # granian's own logger.warn() call: not ours to fix.
        "-W", "ignore:The 'warn' method is deprecated:DeprecationWarning",
        "-m", "granian", "--interface=asgi", "--loop=asyncio", "--host={host}",
        "--port={port}", "--log-level=warning", "--no-ws",
    ],
}  # fmt: skip


def _command(kind: str, port: int) -> list[str]:
    options = [option.format(host=HOST, port=port) for option in SERVER_OPTIONS[kind]]
    # -W default: ResourceWarning and friends reach stderr.
    return [sys.executable, "-W", "default", *options, "tests.loadapp.asgi:application"]


@contextmanager
def asgi_server(kind: str) -> Iterator[Server]:
    """Serve tests.loadapp with ``kind`` on the test database; stop it and keep its output."""
    port = free_port()
    server = Server(kind, port, f"aorm-load-{kind}-{port}")
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": "tests.loadapp.settings",
        "AORM_TEST_USE_NAME": connection.settings_dict["NAME"],
        "AORM_LOAD_POOL_MAX_SIZE": str(POOL_MAX_SIZE),
        "AORM_LOAD_APPLICATION_NAME": server.application_name,
    }
    environ.pop("PYTHONWARNINGS", None)
    with serve(_command(kind, port), port=port, env=environ, cwd=ROOT) as process:
        yield server
    server.stdout, server.stderr = process.stdout, process.stderr


def _drop_own_connections() -> None:
    """Close this process's sessions and Django's sync pools: the fault must not hit them."""
    connections.close_all()
    for wrapper in connections.all():
        if wrapper.alias in getattr(wrapper, "_connection_pools", {}):
            wrapper.close_pool()


def _monitor_params() -> dict[str, Any]:
    names = {"NAME": "dbname", "USER": "user", "HOST": "host", "PORT": "port"}
    params = {param: connection.settings_dict[key] for key, param in names.items()}
    return {**params, "application_name": "aorm-load-monitor", "autocommit": True}


@asynccontextmanager
async def monitor() -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(**_monitor_params()) as conn:
        yield conn


async def sessions(conn: psycopg.AsyncConnection[Any]) -> list[tuple[int, str, str | None]]:
    """(pid, application_name, state) of the test database's other sessions."""
    cursor = await conn.execute(
        "SELECT pid, application_name, state FROM pg_stat_activity "
        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return await cursor.fetchall()


async def get_json(server: Server, path: str) -> Any:
    response = await fetch(HOST, server.port, path, timeout=30)
    assert response is not None and response.status == 200, (path, response)
    return response.json()


async def quiesce(server: Server, conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    """Wait (bounded) until the server holds no connection and every session is idle."""
    deadline = time.monotonic() + 10
    while True:
        stats: dict[str, Any] = await get_json(server, "/stats/")
        busy = [s for s in await sessions(conn) if s[2] != "idle"]
        if (stats["pool"]["in_use"] == 0 and not busy) or time.monotonic() > deadline:
            return stats  # the assertions that follow say what is wrong, if anything
        await asyncio.sleep(0.05)


# The load.


@dataclass
class Fault:
    at: float = 0.0  # loop time when the termination was sent
    killed: list[tuple[int, str, str | None]] = field(default_factory=list)  # pid, app, state


@dataclass
class LoadRun:
    seed: int
    requests: list[Request]
    outcomes: list[Outcome]
    fault: Fault
    peak_server_sessions: int
    stats: dict[str, Any]
    sessions_after: list[tuple[int, str, str | None]]
    after_fault: list[Outcome]
    seconds: float


def _plan(seed: int) -> list[Request]:
    """The requests, views in a random order. A quarter hang up: half of those
    HANG_UP_DELAY after sending, half HANG_UP_AFTER_SIGNAL after the view signalled
    that it holds its connection (in its slow query, or in its transaction)."""
    rng = random.Random(seed)
    hang_ups = rng.sample(range(REQUESTS), HANG_UPS)
    early, signalled = set(hang_ups[: HANG_UPS // 2]), set(hang_ups[HANG_UPS // 2 :])
    requests = []
    for i in range(REQUESTS):
        if i in signalled:
            path = rng.choice(["/query/?signal=1", f"/write/?token=w{i}&signal=1"])
            requests.append(Request(path, rng.uniform(*HANG_UP_AFTER_SIGNAL), SIGNAL))
            continue
        path = rng.choice(["/query/", f"/write/?token=w{i}", "/between/?pause=0.02"])
        requests.append(Request(path, rng.uniform(*HANG_UP_DELAY) if i in early else None))
    return requests


def _answer(outcome: Outcome) -> dict[str, Any] | None:
    """The view's JSON answer; None if it failed (a 500, or ``error`` ending a stream)."""
    response = outcome.response
    assert response is not None
    if response.status != 200:
        return None
    last = response.body.splitlines()[-1]  # a stream: the signal, then the answer
    return None if last == b"error" else dict(json.loads(last))


async def _server_pids(server: Server, conn: psycopg.AsyncConnection[Any]) -> set[int]:
    return {pid for pid, app, _ in await sessions(conn) if app == server.application_name}


async def _watch(
    server: Server,
    conn: psycopg.AsyncConnection[Any],
    due: asyncio.Event,
    fault: Fault,
    stop: asyncio.Event,
    peak: list[int],
) -> None:
    """Sample the server's sessions during the load; terminate every session once when due.

    A sample above the pool's size is taken again LINGER later, and only the
    sessions still there count: when the server closes a connection (a query
    cancelled mid-way, a terminated session) its pool slot is free at once,
    but the server process behind it leaves pg_stat_activity a few
    milliseconds later, possibly after the slot's new connection has arrived.
    """
    while not stop.is_set():
        if due.is_set() and not fault.killed:
            fault.at = asyncio.get_running_loop().time()
            cursor = await conn.execute(
                "SELECT pid, application_name, state, pg_terminate_backend(pid) "
                "FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            )
            fault.killed = [(pid, app, state) for pid, app, state, _ in await cursor.fetchall()]
        pids = await _server_pids(server, conn)
        if len(pids) > POOL_MAX_SIZE:
            await asyncio.sleep(LINGER)
            pids &= await _server_pids(server, conn)
        peak.append(len(pids))
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def _load(server: Server, seed: int) -> LoadRun:
    loop = asyncio.get_running_loop()
    requests = _plan(seed)
    fault, due, stop, peak = Fault(), asyncio.Event(), asyncio.Event(), [0]

    def on_outcome(outcome: Outcome, completed: int) -> None:
        if completed >= FAULT_AFTER:
            due.set()

    async with monitor() as conn:
        await get_json(server, "/stats/")  # the application is up
        watcher = asyncio.create_task(_watch(server, conn, due, fault, stop, peak))
        started = loop.time()
        try:
            async with asyncio.timeout(LOAD_TIMEOUT):
                outcomes = await run_load(
                    HOST, server.port, requests, concurrency=CONCURRENCY, on_outcome=on_outcome
                )
        finally:
            stop.set()
            await watcher
        seconds = loop.time() - started
        await quiesce(server, conn)
        after_fault = await run_load(HOST, server.port, AFTER_FAULT, concurrency=len(AFTER_FAULT))
        stats = await quiesce(server, conn)
        sessions_after = await sessions(conn)
    return LoadRun(
        seed, requests, outcomes, fault, max(peak), stats, sessions_after, after_fault, seconds
    )


def _summary(run: LoadRun) -> str:
    statuses = Counter(
        "hung up" if o.hung_up else "error" if o.error else o.status for o in run.outcomes
    )
    latencies = sorted(o.ended - o.started for o in run.outcomes if o.status == 200)
    return (
        f"seed {run.seed}, {run.seconds:.1f}s, outcomes {dict(statuses)}, latency p50 "
        f"{latencies[len(latencies) // 2]:.2f}s max {latencies[-1]:.2f}s, "
        f"peak {run.peak_server_sessions} server sessions, terminated {len(run.fault.killed)}, "
        f"cancelled in {run.stats['cancelled_in']}"
    )


@postgresql_only("the load test terminates PostgreSQL sessions and uses pg_sleep")
@pytest.mark.timeout(240)
@pytest.mark.parametrize("kind", SERVERS)
def test_load_with_hang_ups_and_terminated_sessions(kind: str) -> None:
    """2,000 requests at concurrency 100, a quarter abandoned mid-request, every session
    of the database terminated once: acknowledged writes are durable and unique, the
    server never holds more than its pool, leaves nothing idle in transaction, and
    serves normally afterwards."""
    seed = int(os.environ.get("AORM_LOAD_SEED", random.randrange(1 << 32)))
    _drop_own_connections()
    with asgi_server(kind) as server:
        run = asyncio.run(_load(server, seed))
    summary = _summary(run)
    expected_lines, other_lines = server.lines_of_stderr()

    # The client: every request ended, nothing failed on the client's side.
    assert len(run.outcomes) == REQUESTS
    assert [(o.request, o.error) for o in run.outcomes if o.error] == [], summary

    # Responses: 200, or 500 for requests that ran into the terminated sessions.
    answered = [o for o in run.outcomes if o.response is not None]
    assert {o.status for o in answered} <= {200, 500}, summary
    failed = [o for o in answered if _answer(o) is None]
    assert run.fault.killed, f"the fault terminated no session; {summary}"
    assert all(o.ended >= run.fault.at for o in failed), f"500 before the fault; {summary}"
    assert len(failed) <= len(run.fault.killed), summary  # a dead session fails one operation
    assert len(expected_lines) >= len(failed), summary
    assert len(expected_lines) <= len(run.fault.killed), (summary, expected_lines)

    # The hang-ups cancelled views while they held connections, in queries and in
    # transactions: every signalled one (its slow query outlasts the hang-up), but for
    # those the terminated sessions failed first; and, as they came, views in the
    # pool's line (the early half: on a loaded machine a view may finish first).
    cancelled = Counter(run.stats["cancelled_in"])
    holding = sum(n for k, n in cancelled.items() if "in a query" in k or "in a transaction" in k)
    assert holding >= HANG_UPS // 2 - len(run.fault.killed), summary
    for where in ("in a query", "in a transaction"):
        assert sum(n for k, n in cancelled.items() if where in k) >= HANG_UPS // 20, summary

    # Writes: every acknowledged one is in the table exactly once; none that rolled back is.
    acknowledged = {}
    for o in [*answered, *run.after_fault]:
        if o.request.path.startswith("/write/") and (answer := _answer(o)) is not None:
            acknowledged[answer["token"]] = answer["id"]
    ids_by_name: dict[str, list[int]] = {}
    for name, pk in Student.objects.using("stock").values_list("name", "id"):
        ids_by_name.setdefault(name, []).append(pk)
    assert {t: ids_by_name.get(t) for t in acknowledged} == {
        t: [pk] for t, pk in acknowledged.items()
    }, summary
    assert {n: ids for n, ids in ids_by_name.items() if len(ids) > 1} == {}, summary
    issued = {_token(o.request) for o in [*run.outcomes, *run.after_fault]} - {None}
    assert set(ids_by_name) <= issued, summary
    assert set(run.stats["rolled_back"]) & set(ids_by_name) == set(), summary

    # Sessions: never more than the pool; at the end none busy or idle in transaction,
    # and the pool counts exactly the sessions the server has (no slot lost, none leaked).
    assert run.peak_server_sessions <= POOL_MAX_SIZE, summary
    pool = run.stats["pool"]
    assert (pool["in_use"], pool["waiting"]) == (0, 0), (pool, summary)
    assert [s for s in run.sessions_after if s[2] != "idle"] == [], run.sessions_after
    server_sessions = [s for s in run.sessions_after if s[1] == server.application_name]
    assert len(server_sessions) == pool["size"] <= POOL_MAX_SIZE, (run.sessions_after, pool)

    # Once the load has ended, the server serves normally.
    assert [o.status for o in run.after_fault] == [200] * len(AFTER_FAULT), summary

    # The server's stderr: the fault's reports, nothing else.
    assert other_lines == [], (summary, server.stderr)
    print(f"{kind}: {summary}")


def _token(request: Request) -> str | None:
    path, _, query = request.path.partition("?token=")
    return query.partition("&")[0] if path == "/write/" else None


@postgresql_only("the load test's views use pg_sleep; it counts PostgreSQL sessions")
@pytest.mark.parametrize("kind", SERVERS)
def test_a_view_awaiting_between_queries_holds_no_connection(kind: str) -> None:
    """Three times the pool's size of views asleep between two queries at once: they
    can only all be asleep together if none of them holds a connection meanwhile."""
    views = 3 * POOL_MAX_SIZE

    async def scenario(server: Server) -> tuple[dict[str, Any], list[Any], list[Outcome]]:
        async with monitor() as conn:
            requests = [Request("/between/?pause=2") for _ in range(views)]
            load = asyncio.create_task(
                run_load(HOST, server.port, requests, concurrency=views, timeout=30)
            )
            deadline = time.monotonic() + 15
            while (stats := await get_json(server, "/stats/"))["sleeping"] < views:
                assert time.monotonic() < deadline, f"never all asleep at once: {stats}"
                assert not load.done(), load
                await asyncio.sleep(0.02)
            during = await sessions(conn)
            return stats, during, await load

    _drop_own_connections()
    with asgi_server(kind) as server:
        stats, during, outcomes = asyncio.run(scenario(server))
    assert stats["pool"]["in_use"] == 0, stats
    assert [s for s in during if s[1] == server.application_name and s[2] != "idle"] == [], during
    assert [o.status for o in outcomes] == [200] * views
    assert server.lines_of_stderr() == ([], []), server.stderr


# The pool, in process.

SMALL_POOL = "small_pool"
CHECKED_POOL = "checked_pool"


class GatedCheck:
    """A pool health check (``OPTIONS["pool"]["check"]``) that a test can hold at its start."""

    def __init__(self) -> None:
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Semaphore(0)

    def arm(self) -> None:
        self.gate, self.entered = asyncio.Event(), asyncio.Semaphore(0)

    async def __call__(self, connection: object) -> None:
        self.entered.release()
        if self.gate is not None:
            await self.gate.wait()


gated_check = GatedCheck()


@pytest.fixture(scope="module")
def pool_aliases(django_db_setup: None) -> Iterator[None]:
    """Aliases on the test database for the pool tests, if the settings don't define them.

    ``small_pool``: a 2-connection pool with a 0.5 s timeout. ``checked_pool``:
    one connection, checked by :data:`gated_check` each time it leaves the
    pool. They are added to ``connections.settings`` after the test databases
    exist and before the tests' database access is set up (module scope), so
    that the tests may use them.
    """
    default = connections.settings["default"]
    pools: dict[str, dict[str, Any]] = {
        SMALL_POOL: {"max_size": 2, "timeout": 0.5},
        CHECKED_POOL: {"min_size": 1, "max_size": 1, "timeout": 0.5, "check": gated_check},
    }
    added = {}
    for name, options in pools.items():
        if name not in connections.settings:
            pool = {**(default["OPTIONS"].get("pool") or {}), **options}
            alias = {**default, "OPTIONS": {**default["OPTIONS"], "pool": pool}}
            added[name] = {**alias, "TEST": {"MIRROR": "default"}}
    with pytest.MonkeyPatch.context() as patch:
        if added:
            databases = connections.configure_settings({**connections.settings, **added})
            patch.setattr(connections, "settings", databases)
        yield


@pytest.fixture
def small_pool(pool_aliases: None) -> tuple[str, int, float]:
    """(alias, max_size, timeout) of the 2-connection pool."""
    pool = connections.settings[SMALL_POOL]["OPTIONS"]["pool"]
    return SMALL_POOL, int(pool["max_size"]), float(pool["timeout"])


@postgresql_only("SQLite: an atomic block takes the process's write lock, one at a time")
async def test_pool_exhaustion_raises_pool_timeout_then_a_released_connection_serves(
    small_pool: tuple[str, int, float],
) -> None:
    alias, size, timeout = small_pool
    students = Student.objects.using(alias)
    loop = asyncio.get_running_loop()
    releases = [asyncio.Event() for _ in range(size)]
    holding = asyncio.Semaphore(0)

    async def hold(release: asyncio.Event) -> int:
        async with transaction.atomic(using=alias):  # holds its connection until the end
            count: int = await students.acount()
            holding.release()
            await release.wait()
        return count

    holders = [asyncio.create_task(hold(release)) for release in releases]
    for _ in holders:
        await asyncio.wait_for(holding.acquire(), 5)

    started = loop.time()
    with pytest.raises(aorm.PoolTimeout) as info:
        await students.acount()
    waited = loop.time() - started
    assert isinstance(info.value, OperationalError)
    assert timeout * 0.9 <= waited < timeout + 2, waited
    message = str(info.value)
    assert f"database {alias!r}" in message, message
    assert f"within {timeout:g}s" in message, message
    assert f"the pool's {size} connections are all in use ({size} in use," in message, message
    stats = aorm.pool_stats(alias)
    assert (stats.max_size, stats.size, stats.in_use, stats.waiting) == (size, size, size, 0)

    # A waiter gets the connection a holder gives back, before its own timeout.
    waiter = asyncio.create_task(students.acount())
    await asyncio.sleep(timeout / 5)
    assert not waiter.done()
    releases[0].set()
    assert await asyncio.wait_for(waiter, timeout) == 0  # before its own PoolTimeout
    for release in releases:
        release.set()
    assert await asyncio.gather(*holders) == [0] * size
    assert (aorm.pool_stats(alias).in_use, aorm.pool_stats(alias).waiting) == (0, 0)


async def test_cancelled_waiters_lose_no_connection(small_pool: tuple[str, int, float]) -> None:
    """A waiter cancelled while waiting, and one cancelled after it was woken but before it
    took the connection, leave the pool whole: the wake-up goes to the next waiter."""
    alias, size, timeout = small_pool
    students = Student.objects.using(alias)
    connected = asyncio.Semaphore(0)

    def hold(release: asyncio.Event) -> None:
        connections[alias].ensure_connection()
        connected.release()
        aorm.await_(release.wait())

    async def hold_then(release: asyncio.Event, then: Callable[[], object]) -> None:
        await aorm.run(hold, release)
        then()  # runs right after the release, before any waiter could take the connection

    async def all_connected(tasks: list[asyncio.Task[None]]) -> None:
        for _ in tasks:
            await asyncio.wait_for(connected.acquire(), timeout / 2)

    waiters: dict[str, asyncio.Task[int]] = {}
    releases = [asyncio.Event() for _ in range(size)]
    holders = [asyncio.create_task(hold_then(releases[0], lambda: waiters["first"].cancel()))]
    holders += [asyncio.create_task(hold_then(r, lambda: None)) for r in releases[1:]]
    await all_connected(holders)

    for name in ("first", "second", "third"):  # in this order in the pool's line
        waiters[name] = asyncio.create_task(students.acount())
        await asyncio.sleep(timeout / 10)
    waiters["third"].cancel()  # cancelled while waiting
    with pytest.raises(asyncio.CancelledError):
        await waiters["third"]
    releases[0].set()  # wakes "first", which is cancelled before it runs
    await holders[0]
    with pytest.raises(asyncio.CancelledError):
        await waiters["first"]
    assert await waiters["second"] == 0  # a lost wake-up would end in PoolTimeout
    for release in releases:
        release.set()
    await asyncio.gather(*holders)

    # The pool is whole: all its connections can be held at once, again.
    releases = [asyncio.Event() for _ in range(size)]
    holders = [asyncio.create_task(hold_then(r, lambda: None)) for r in releases]
    await all_connected(holders)
    assert aorm.pool_stats(alias).in_use == size
    for release in releases:
        release.set()
    await asyncio.gather(*holders)
    assert (aorm.pool_stats(alias).in_use, aorm.pool_stats(alias).waiting) == (0, 0)


async def test_a_waiter_is_served_while_other_tasks_query_back_to_back(
    small_pool: tuple[str, int, float],
) -> None:
    """Connections keep being released: a waiting task gets one well before the pool's
    timeout, even though the tasks that release them ask again at once."""
    alias, size, timeout = small_pool
    students = Student.objects.using(alias)
    stop = asyncio.Event()
    rounds = [0] * size

    async def busy(i: int) -> None:
        while not stop.is_set():
            await students.acount()  # released at the end of the query, asked for again at once
            rounds[i] += 1

    busy_tasks = [asyncio.create_task(busy(i)) for i in range(size)]
    await asyncio.sleep(timeout / 10)  # they hold and release connections, over and over
    loop = asyncio.get_running_loop()
    started, rounds_before = loop.time(), sum(rounds)
    try:
        await students.acount()
    except aorm.PoolTimeout as exc:
        pytest.fail(
            f"{exc}\nMeanwhile the busy tasks released a connection "
            f"{sum(rounds) - rounds_before} times: the waiter was starved."
        )
    finally:
        stop.set()
        await asyncio.gather(*busy_tasks)
    assert loop.time() - started < timeout / 2, rounds


async def test_a_task_cancelled_during_the_health_check_loses_no_connection(
    pool_aliases: None,
) -> None:
    """The pool checks an idle connection before handing it out; a task cancelled
    meanwhile must leave the connection to the pool (or close it), not strand it."""
    students = Student.objects.using(CHECKED_POOL)
    await students.acount()  # opens the pool's one connection, idle again afterwards
    gated_check.arm()
    task = asyncio.create_task(students.acount())
    await asyncio.wait_for(gated_check.entered.acquire(), 5)  # the check holds it
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert gated_check.gate is not None
    gated_check.gate.set()
    stats = aorm.pool_stats(CHECKED_POOL)
    assert (stats.in_use, stats.waiting) == (0, 0), stats
    assert await students.acount() == 0  # stranded, the pool's one slot would time out
