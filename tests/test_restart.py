"""A full restart of PostgreSQL under load.

A module fixture creates a throwaway cluster (:mod:`tests.throwaway_postgres`:
``initdb`` and ``pg_ctl`` on a free loopback port), so the shared server is
never restarted, and migrates the test project's tables into it. Each test
starts the load test's ASGI application (:mod:`tests.loadapp`, under uvicorn,
pool of :data:`POOL_MAX_SIZE`) on that cluster, drives it with
:data:`CLIENTS` clients sending writes (``/write/``: an insert inside
``async with transaction.atomic()``, acknowledged by a 200 once committed)
and queries (``/query/``) without pause, and restarts the server mid-load:
``pg_ctl stop`` (``fast``: sessions terminated, or ``immediate``: every server
process quits at once, as in a crash, and the next start recovers from the
WAL), :data:`DOWNTIME` seconds down, ``pg_ctl start``. Then:

- every request got an HTTP response, none took longer than
  :data:`REQUEST_TIMEOUT`: nothing hangs;
- the failed ones (500) failed with Django's ``OperationalError`` or
  ``InterfaceError`` caused by psycopg's error for a lost or refused
  connection (:mod:`tests.outage_settings` logs exactly those in one line; any
  other traceback on the server's stderr fails the test);
- the application recovers by itself: no request fails once
  :data:`RECOVERY_BOUND` seconds have passed since the server's return; each
  pooled connection the restart killed costs at most one request after the
  server's return, and none with ``CONN_HEALTH_CHECKS``;
- every acknowledged write is in the table, once;
- the pool ends with no connection in use.

A quiet application across a restart (:func:`test_a_restart_while_the_pool_is_idle`):
each pooled connection, dead when it wakes, costs one request an error and is
discarded; with ``CONN_HEALTH_CHECKS`` no request fails.

Each run prints its figures (``pytest -s``): downtime, failures, and the
recovery time, from the server's return to the end of the last failed request.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection, connections
from pytest_django import DjangoDbBlocker
from support.load_client import Outcome, Request, fetch
from support.services import free_port, serve

from tests.conftest import postgresql_only
from tests.server import ROOT
from tests.throwaway_postgres import Cluster, missing, throwaway_cluster

if settings.DATABASE != "postgresql":  # the server's settings below need PostgreSQL
    pytest.skip("a PostgreSQL cluster of its own", allow_module_level=True)

from tests.outage_settings import EXPECTED_OUTAGE

pytestmark = [
    postgresql_only("a PostgreSQL server restart"),
    pytest.mark.skipif(missing() is not None, reason=f"no throwaway PostgreSQL: {missing()}"),
]

HOST = "127.0.0.1"
POOL_MAX_SIZE = 8
CLIENTS = 16  # concurrent clients, twice the pool: some requests wait in the pool's line
WARM_UP = 50  # successful requests before the restart
DOWNTIME = 1.0  # seconds the server stays down
AFTER_RETURN = 4.0  # seconds of load after the server's return
RECOVERY_BOUND = 3.0  # seconds after the server's return, at most, until no request fails
REQUEST_TIMEOUT = 15.0  # longer than the pool's timeout (10 s): a hang would show as an error


@pytest.fixture(scope="module")
def cluster(django_db_blocker: DjangoDbBlocker) -> Iterator[Cluster]:
    """A throwaway cluster holding the test project's tables, in the database the
    server started by :func:`outage_server` uses."""
    name = connection.settings_dict["NAME"]
    with throwaway_cluster() as cluster:
        with cluster.connect(autocommit=True) as conn:
            if name != "postgres":
                conn.execute(f'CREATE DATABASE "{name}"')
        original = connections.settings
        connections.settings = {  # type: ignore[misc]
            **original,
            "throwaway": {**original["stock"], "NAME": name, "PORT": str(cluster.port)},
        }
        try:
            with django_db_blocker.unblock():
                call_command("migrate", database="throwaway", verbosity=0, interactive=False)
                connections["throwaway"].close()
        finally:
            del connections["throwaway"]
            connections.settings = original  # type: ignore[misc]
        yield cluster


@dataclass
class Server:
    port: int
    stderr: str = ""

    def lines(self, marker: str) -> list[str]:
        return [line for line in self.stderr.splitlines() if marker in line]

    def unexpected_stderr(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if EXPECTED_OUTAGE not in line]


@contextmanager
def outage_server(cluster: Cluster, health_checks: bool) -> Iterator[Server]:
    """uvicorn serving :mod:`tests.outage_settings` on the cluster; its stderr kept at the end."""
    server = Server(free_port())
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": "tests.outage_settings",
        "AORM_TEST_DATABASE": "postgresql",
        "AORM_TEST_USE_NAME": connection.settings_dict["NAME"],
        "AORM_PGHOST": "127.0.0.1",
        "AORM_PGPORT": str(cluster.port),
        "AORM_LOAD_POOL_MAX_SIZE": str(POOL_MAX_SIZE),
        "AORM_OUTAGE_HEALTH_CHECKS": "1" if health_checks else "0",
    }
    command = [sys.executable, "-W", "default", "-m", "uvicorn", "tests.asgi:application",
               f"--host={HOST}", f"--port={server.port}", "--log-level=warning"]  # fmt: skip
    with serve(command, port=server.port, env=environ, cwd=ROOT) as process:
        yield server
    server.stderr = process.stdout + process.stderr


@dataclass
class Restart:
    stopping: float = 0.0  # loop times: pg_ctl stop called,
    stopped: float = 0.0  # it returned (the server is down),
    back: float = 0.0  # pg_ctl start returned (the server accepts connections)
    outcomes: list[Outcome] = field(default_factory=list)

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]

    def recovery(self) -> float:
        """Seconds from the server's return to the end of the last failed request (0: none)."""
        return max([0.0, *(o.ended - self.back for o in self.failed())])


async def _load(
    port: int, prefix: str, restart: Restart, warm: asyncio.Event, stop: asyncio.Event
) -> None:
    """One client: writes and queries, one after the other, until ``stop``."""
    loop = asyncio.get_running_loop()
    i = 0
    while not stop.is_set():
        path = f"/write/?token={prefix}-{i}" if i % 2 == 0 else "/query/"
        outcome = Outcome(Request(path), loop.time(), 0.0)
        try:
            outcome.response = await fetch(HOST, port, path, timeout=REQUEST_TIMEOUT)
        except Exception as exc:
            outcome.error = exc
        outcome.ended = loop.time()
        restart.outcomes.append(outcome)
        if sum(o.status == 200 for o in restart.outcomes) >= WARM_UP:
            warm.set()
        i += 1


async def _restart_under_load(cluster: Cluster, port: int, mode: str, label: str) -> Restart:
    loop = asyncio.get_running_loop()
    restart, warm, stop = Restart(), asyncio.Event(), asyncio.Event()
    clients = [
        asyncio.create_task(_load(port, f"{label}-{n}", restart, warm, stop))
        for n in range(CLIENTS)
    ]
    try:
        async with asyncio.timeout(60):
            await warm.wait()
            restart.stopping = loop.time()
            await asyncio.to_thread(cluster.stop, mode)  # the load goes on meanwhile
            restart.stopped = loop.time()
            await asyncio.sleep(DOWNTIME)
            await asyncio.to_thread(cluster.start)
            restart.back = loop.time()
            await asyncio.sleep(AFTER_RETURN)
            stop.set()  # each client ends after its current request
            await asyncio.gather(*clients)
    finally:
        for client in clients:
            client.cancel()
        await asyncio.gather(*clients, return_exceptions=True)
    return restart


async def _quiet_pool(port: int) -> dict[str, int]:
    """The server's pool once no connection is in use (bounded): what the load left."""
    async with asyncio.timeout(10):
        while True:
            response = await fetch(HOST, port, "/stats/", timeout=REQUEST_TIMEOUT)
            assert response is not None and response.status == 200, response
            pool: dict[str, int] = json.loads(response.body)["pool"]
            if pool["in_use"] == 0:
                return pool
            await asyncio.sleep(0.05)


def _acknowledged(outcomes: list[Outcome]) -> list[str]:
    return [
        o.request.path.split("token=")[1]
        for o in outcomes
        if o.request.path.startswith("/write/") and o.status == 200
    ]


@pytest.mark.parametrize(
    "mode, health_checks",
    [("fast", False), ("immediate", False), ("fast", True)],
    ids=["fast", "immediate", "fast-health-checks"],
)
async def test_a_restart_under_load(cluster: Cluster, mode: str, health_checks: bool) -> None:
    with outage_server(cluster, health_checks) as server:
        port = server.port
        label = f"{mode}{'-checked' if health_checks else ''}"
        restart = await _restart_under_load(cluster, port, mode, label)
        pool = await _quiet_pool(port)
    assert not server.unexpected_stderr(), server.stderr
    # Every failure is Django's OperationalError or InterfaceError (tests/outage_settings.py).
    assert len(server.lines(EXPECTED_OUTAGE)) == len(restart.failed())

    outcomes = restart.outcomes
    errors = [(o.request.path, repr(o.error)) for o in outcomes if o.error is not None]
    assert not errors, errors  # every request was answered within REQUEST_TIMEOUT
    failed = restart.failed()
    assert failed, "the restart hit no request: the load did not overlap it"
    assert all(o.status == 500 for o in failed)
    assert all(o.status == 200 for o in outcomes if o.ended < restart.stopping)
    # After the server's return: each dead pooled connection costs one request at most.
    failed_after = [o for o in failed if o.started > restart.back]
    assert len(failed_after) <= (0 if health_checks else POOL_MAX_SIZE), len(failed_after)
    assert restart.recovery() <= RECOVERY_BOUND, restart.recovery()
    succeeded_after = [o for o in outcomes if o.started > restart.back and o.status == 200]
    assert len(succeeded_after) >= CLIENTS

    acknowledged = _acknowledged(outcomes)
    with cluster.connect(connection.settings_dict["NAME"]) as conn:
        rows = [name for (name,) in conn.execute("SELECT name FROM students_student")]
    assert sorted(name for name in rows if name in set(acknowledged)) == sorted(acknowledged)

    assert pool["waiting"] == 0 and pool["size"] <= POOL_MAX_SIZE, pool

    first_success = min(o.ended for o in succeeded_after) - restart.back
    print(
        f"\nrestart ({mode}{', health checks' if health_checks else ''}): "
        f"stop took {restart.stopped - restart.stopping:.2f}s, server down "
        f"{restart.back - restart.stopped:.2f}s (start included); {len(outcomes)} requests, "
        f"{len(failed)} failed, {len(failed_after)} of them started after the server's return; "
        f"first success {first_success:.2f}s and last failure {restart.recovery():.2f}s "
        f"after the return; {len(acknowledged)} acknowledged writes, all present"
    )


@pytest.mark.parametrize("health_checks", [False, True], ids=["no-health-checks", "health-checks"])
async def test_a_restart_while_the_pool_is_idle(cluster: Cluster, health_checks: bool) -> None:
    """A quiet application across a restart: its idle connections are dead when it wakes.

    Each costs one request its error, then is discarded; with ``CONN_HEALTH_CHECKS``
    the pool finds them dead first and no request fails.
    """
    with outage_server(cluster, health_checks) as server:
        warm = [fetch(HOST, server.port, "/query/", timeout=REQUEST_TIMEOUT) for _ in range(4)]
        assert all(r is not None and r.status == 200 for r in await asyncio.gather(*warm))
        idle = (await _quiet_pool(server.port))["idle"]
        assert idle >= 1
        await asyncio.to_thread(cluster.stop, "fast")
        await asyncio.to_thread(cluster.start)
        statuses = []
        for _ in range(idle + 2):  # one after the other
            response = await fetch(HOST, server.port, "/query/", timeout=REQUEST_TIMEOUT)
            assert response is not None
            statuses.append(response.status)
        pool = await _quiet_pool(server.port)
    assert not server.unexpected_stderr(), server.stderr
    failed = statuses.count(500)
    assert statuses == [500] * failed + [200] * (len(statuses) - failed), statuses
    assert failed <= (0 if health_checks else idle), (failed, idle)
    assert pool["size"] <= POOL_MAX_SIZE, pool
    print(
        f"\nrestart while idle{' (health checks)' if health_checks else ''}: {idle} idle "
        f"connections, {failed} requests failed after the server's return"
    )
