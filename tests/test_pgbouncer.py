"""aorm behind a real PgBouncer in transaction pooling mode.

A module fixture starts Debian's ``pgbouncer`` on a free loopback port, with
its own ini and userlist in a temporary directory (``auth_type = trust``,
``pool_mode = transaction``, every database forwarded to the test server), and
stops it at the end. For the tests that use ``via_pgbouncer``, aorm's aliases
point at it with the settings docs/deployment.md recommends ("Behind PgBouncer"):

- ``DISABLE_SERVER_SIDE_CURSORS = True``: a cursor declared ``WITH HOLD``
  outside a transaction lives in one server session, and transaction pooling
  hands the next ``FETCH`` to whichever server connection is free
  (:func:`test_server_side_cursors_outside_a_transaction_need_the_setting`
  shows the failure without it);
- ``OPTIONS["prepare_threshold"] = None`` (Django's default, stated
  explicitly): no named prepared statements, which PgBouncer older than 1.21
  cannot follow from one server connection to another. The installed
  PgBouncer's version decides whether ``max_prepared_statements`` (1.21+) is
  configured and tested too.

PgBouncer's pool is smaller than aorm's (``SERVER_POOL`` against 8), so client
connections really share server connections, and each reused test checks in
PgBouncer's own statistics that its statements went through it.

The reused tests are the suite's own, called unchanged: the API equivalence
cases, the seeds (in process and under uvicorn), the transaction tests
(``asyncio.gather`` and ``TaskGroup`` inside ``async with
transaction.atomic()``, ``select_for_update``, cancellation).
"""

from __future__ import annotations

import asyncio
import gc
import inspect
import os
import pwd
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.db import ProgrammingError, connections, transaction
from students.models import Student

import aorm
from tests import test_api, test_errors, test_pool, test_seeds, test_transactions
from tests.conftest import ALL_DATABASES, SqlLog, postgresql_only, server_sessions
from tests.server import ROOT, free_port, wait_for_port

pytestmark = [ALL_DATABASES, postgresql_only("PgBouncer is PostgreSQL's connection pooler")]

# Server connections PgBouncer keeps per database and user: fewer than aorm's
# pool (8), so that client connections take turns on server connections.
SERVER_POOL = 4
# Written by `make pgbouncer` when it could not install the package.
UNAVAILABLE = ROOT / "build" / "pgbouncer-unavailable"
# The aorm aliases of tests/settings.py redirected through PgBouncer (``stock``,
# Django's own backend, stays on the server: it counts server sessions).
ALIASES = ("default", "unpooled", "defaults", "checked")
# docs/deployment.md's settings for an alias behind PgBouncer in transaction mode.
RECOMMENDED: dict[str, Any] = {
    "DISABLE_SERVER_SIDE_CURSORS": True,
    "OPTIONS": {"prepare_threshold": None},
}


def pgbouncer_binary() -> str | None:
    """Debian installs it in /usr/sbin, which is not on every PATH."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


def pgbouncer_version(binary: str) -> tuple[int, int]:
    output = subprocess.run(
        [binary, "--version"], capture_output=True, text=True, check=True
    ).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)", output)
    assert match, output
    return int(match[1]), int(match[2])


def supports_prepared_statements(version: tuple[int, int]) -> bool:
    """PgBouncer 1.21 added ``max_prepared_statements`` (protocol-level prepared statements)."""
    return version >= (1, 21)


@dataclass
class PgBouncer:
    port: int
    version: tuple[int, int]
    log: Path

    def admin(self, command: str) -> list[dict[str, Any]]:
        """A command on PgBouncer's admin console (simple query protocol: no parameters)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, dbname="pgbouncer", user="postgres", autocommit=True
        ) as conn:
            cursor = conn.execute(command)
            names = [column.name for column in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def queries(self, database: str) -> int:
        """Statements PgBouncer has forwarded for ``database`` (its ``SHOW STATS``)."""
        for row in self.admin("SHOW STATS"):
            if row["database"] == database:
                return int(row["total_query_count"])
        return 0


@pytest.fixture(scope="module")
def pgbouncer() -> Iterator[PgBouncer]:
    """A PgBouncer in transaction mode on a free loopback port, in front of the test server."""
    binary = pgbouncer_binary()
    if binary is None:
        why = UNAVAILABLE.read_text().strip() if UNAVAILABLE.exists() else ""
        if os.environ.get("CI") == "true" and not why:
            pytest.fail("pgbouncer is not installed (CI: `make test` installs it with apt-get)")
        pytest.skip(
            "pgbouncer is not installed (Debian: apt-get install pgbouncer; `make test` does it "
            f"where apt-get runs as root){': ' + why if why else ''}"
        )
    version = pgbouncer_version(binary)
    server = connections.settings["stock"]
    directory = Path(tempfile.mkdtemp(prefix="aorm-pgbouncer-"))
    port = free_port()
    prepared = "max_prepared_statements = 100\n" if supports_prepared_statements(version) else ""
    (directory / "userlist.txt").write_text('"postgres" ""\n')
    (directory / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = host={server['HOST'] or '127.0.0.1'} port={server['PORT'] or 5432}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {directory / 'userlist.txt'}\n"
        "admin_users = postgres\n"
        "pool_mode = transaction\n"
        f"default_pool_size = {SERVER_POOL}\n"
        "max_client_conn = 500\n"
        "stats_period = 1\n"
        f"{prepared}"
    )
    command = [binary, str(directory / "pgbouncer.ini")]
    if os.geteuid() == 0:  # PgBouncer refuses to run as root
        user = "postgres" if _user_exists("postgres") else "nobody"
        directory.chmod(0o755)
        command[1:1] = ["-u", user]
    log = directory / "pgbouncer.log"
    with log.open("w") as output:
        proc = subprocess.Popen(
            command, stdout=output, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
        )
    try:
        try:
            wait_for_port(port, proc, seconds=30)
        except RuntimeError:
            raise RuntimeError(f"pgbouncer did not start:\n{log.read_text()}") from None
        yield PgBouncer(port, version, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(directory, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def _close_connections(aliases: tuple[str, ...]) -> None:
    """Close the sync connections and pools of ``aliases``, here and in asgiref's worker."""

    def close() -> None:
        for alias in aliases:
            connections[alias].close()

    close()
    SyncToAsync.single_thread_executor.submit(close).result()
    for alias in aliases:
        connections[alias].close_pool()


@pytest.fixture
def via_pgbouncer(
    pgbouncer: PgBouncer, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> Iterator[PgBouncer]:
    """aorm's aliases through PgBouncer with the recommended settings; restored afterwards.

    Parametrised indirectly, the fixture takes changes to the recommended
    settings (``{"DISABLE_SERVER_SIDE_CURSORS": False}``, ``{"OPTIONS": {...}}``).
    A uvicorn server started meanwhile (tests/server.py) reaches the database
    through PgBouncer too (``AORM_PGPORT``).
    """
    overrides: dict[str, Any] = getattr(request, "param", {})
    saved = {alias: dict(connections.settings[alias]) for alias in ALIASES}
    _close_connections(ALIASES)
    for alias in ALIASES:
        connections.settings[alias].update(  # the dict every wrapper of the alias shares
            HOST="127.0.0.1",
            PORT=str(pgbouncer.port),
            DISABLE_SERVER_SIDE_CURSORS=overrides.get(
                "DISABLE_SERVER_SIDE_CURSORS", RECOMMENDED["DISABLE_SERVER_SIDE_CURSORS"]
            ),
            OPTIONS={
                **saved[alias]["OPTIONS"],
                **RECOMMENDED["OPTIONS"],
                **overrides.get("OPTIONS", {}),
            },
        )
    monkeypatch.setenv("AORM_PGPORT", str(pgbouncer.port))
    try:
        yield pgbouncer
    finally:
        _close_connections(ALIASES)
        for alias in ALIASES:
            connections.settings[alias].clear()
            connections.settings[alias].update(saved[alias])


def changed(**overrides: Any) -> Any:
    """``via_pgbouncer`` with these settings changed from the recommended ones."""
    label = ",".join(f"{key}={value}" for key, value in overrides.items())
    return pytest.mark.parametrize("via_pgbouncer", [overrides], indirect=True, ids=[label])


def name_of(reused: tuple[Callable[..., Any], dict[str, Any]]) -> str:
    test, kwargs = reused
    name = f"{test.__module__.rsplit('.', 1)[-1]}.{test.__name__}"
    return name + "".join(f"[{value}]" for value in kwargs.values())


def is_async(test: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(test)


def reusable(
    module: Any, *names: str, without: tuple[str, ...] = ()
) -> list[tuple[Callable[..., Any], dict[str, Any]]]:
    """The module's tests (all of them, without ``names``), to call with no parameter."""
    return [
        (test, {})
        for name, test in inspect.getmembers(module, inspect.isfunction)
        if name.startswith("test_") and (not names or name in names) and name not in without
    ]


# The suite's own tests, run through PgBouncer unchanged. Left out: those that
# run no statement, those that count or end server sessions (PgBouncer keeps
# its own server connections), and the 10,000-operation leak test, for time.
REUSED: list[tuple[Callable[..., Any], dict[str, Any]]] = [
    *reusable(test_seeds, without=("test_sync_orm_in_async_code_is_refused_with_the_async_form",)),
    *reusable(test_api, "test_async_for_over_querysets"),
    # (holds a session-level advisory lock: PgBouncer's transaction mode moves sessions)
    *reusable(test_transactions, without=("test_gather_outside_a_transaction_runs_in_parallel",)),
    *reusable(
        test_pool,
        "test_an_operation_borrows_a_connection_for_its_own_duration",
        "test_a_task_awaiting_something_else_holds_no_connection",
        "test_a_transaction_holds_its_connection_until_it_ends",
        "test_concurrent_operations_use_separate_connections",
        "test_unpooled_alias_reports_no_pool",
    ),
    *[
        (test, {"alias": alias})
        for test in (
            test_errors.test_integrity_error_then_the_next_call_works,
            test_errors.test_data_error,
        )
        for alias in test_errors.ALIASES
    ],
    *reusable(
        test_errors,
        "test_run_gives_lazy_relations_and_sync_helpers_native_access",
        "test_run_validates_a_model_form",
        "test_async_to_sync_in_a_signal_receiver_inside_the_bridge",
        "test_cancelled_query_leaves_no_connection_behind",
    ),
]


def _arguments(test: Callable[..., Any], kwargs: dict[str, Any], sql_log: SqlLog) -> Any:
    available = {"sql_log": sql_log, **kwargs}
    return {name: available[name] for name in inspect.signature(test).parameters}


@pytest.mark.parametrize("reused", [t for t in REUSED if is_async(t[0])], ids=name_of)
async def test_suite_through_pgbouncer(
    reused: tuple[Callable[..., Awaitable[None]], dict[str, Any]],
    pgbouncer: PgBouncer,
    via_pgbouncer: PgBouncer,
    sql_log: SqlLog,
) -> None:
    test, kwargs = reused
    database = connections.settings["default"]["NAME"]
    before = await sync_to_async(pgbouncer.queries)(database)
    await test(**_arguments(test, kwargs, sql_log))
    await sync_to_async(forwarded_since)(pgbouncer, database, before)


@pytest.mark.parametrize("reused", [t for t in REUSED if not is_async(t[0])], ids=name_of)
def test_sync_suite_through_pgbouncer(
    reused: tuple[Callable[..., None], dict[str, Any]],
    pgbouncer: PgBouncer,
    via_pgbouncer: PgBouncer,
    sql_log: SqlLog,
) -> None:
    test, kwargs = reused
    database = connections.settings["default"]["NAME"]
    before = pgbouncer.queries(database)
    test(**_arguments(test, kwargs, sql_log))
    forwarded_since(pgbouncer, database, before)


@pytest.mark.parametrize("case", test_api.CASES, ids=lambda case: case.__name__)
async def test_api_cases_through_pgbouncer(
    case: Callable[[test_api.Call], Awaitable[Any]],
    pgbouncer: PgBouncer,
    via_pgbouncer: PgBouncer,
    sql_log: SqlLog,
) -> None:
    database = connections.settings["default"]["NAME"]
    before = await sync_to_async(pgbouncer.queries)(database)
    await test_api.test_native_matches_sync(case, sql_log)
    await sync_to_async(forwarded_since)(pgbouncer, database, before)


def forwarded_since(pgbouncer: PgBouncer, database: str, before: int) -> None:
    """PgBouncer's statistics (refreshed every second) show statements after ``before``."""
    deadline = time.monotonic() + 10
    while (count := pgbouncer.queries(database)) <= before:
        assert time.monotonic() < deadline, f"no statement went through PgBouncer ({count})"
        time.sleep(0.2)


async def test_the_async_path_reaches_pgbouncer(
    pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """aorm's pooled connections are PgBouncer's clients (the sync reference is checked too)."""

    def port() -> int:
        connections["default"].ensure_connection()
        return int(connections["default"].connection.info.port)

    assert await aorm.run(port) == pgbouncer.port
    clients = await sync_to_async(pgbouncer.admin)("SHOW CLIENTS")
    database = connections.settings["default"]["NAME"]
    assert any(client["database"] == database for client in clients)


# --- Prepared statements -------------------------------------------------------------------


async def take_a_server(pgbouncer: PgBouncer) -> psycopg.AsyncConnection[Any]:
    """Another client opens a transaction: it gets the server connection released last.

    PgBouncer reuses idle server connections last in, first out, so the next
    statement of the client that released it runs on a different server
    connection: what a busy application makes happen at random.
    """
    conn = await psycopg.AsyncConnection.connect(
        host="127.0.0.1",
        port=pgbouncer.port,
        dbname=connections.settings["default"]["NAME"],
        user="postgres",
        autocommit=True,
    )
    await conn.execute("BEGIN")
    await conn.execute("SELECT 1")
    return conn


async def give_back(conn: psycopg.AsyncConnection[Any] | None) -> None:
    if conn is not None:
        await conn.execute("ROLLBACK")
        await conn.close()


async def repeated_queries(pgbouncer: PgBouncer) -> list[int]:
    """The same statement many times, between other clients' transactions, and concurrently."""
    await Student.objects.abulk_create(Student(name=f"s{i}", age=i) for i in range(10))
    ages = []
    for i in range(6):
        ages.append((await Student.objects.aget(name=f"s{i}")).age)
        holder = await take_a_server(pgbouncer)
        try:
            ages.append((await Student.objects.aget(name=f"s{i}")).age)
        finally:
            await give_back(holder)
    ages += await asyncio.gather(*((await_age(f"s{i}")) for i in range(10) for _ in range(3)))
    async with transaction.atomic():
        ages += await asyncio.gather(*(await_age(f"s{i}") for i in range(10)))
    return ages


async def await_age(name: str) -> int:
    return (await Student.objects.aget(name=name)).age


@pytest.mark.parametrize(
    "via_pgbouncer",
    [{"OPTIONS": {"server_side_binding": False}}, {"OPTIONS": {"server_side_binding": True}}],
    indirect=True,
    ids=["client-side binding", "server-side binding"],
)
async def test_prepared_statements_in_the_recommended_configuration(
    pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """``prepare_threshold: None``: no named statement, whichever binding Django uses."""
    ages = await repeated_queries(pgbouncer)
    assert ages == [i for i in range(6) for _ in (0, 1)] + [
        i for i in range(10) for _ in range(3)
    ] + list(range(10))


@changed(OPTIONS={"server_side_binding": True, "prepare_threshold": 0})
async def test_automatic_prepared_statements_need_pgbouncer_1_21(
    pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """psycopg's prepared statements (``prepare_threshold`` set, server-side binding).

    PgBouncer 1.21+ (``max_prepared_statements``, set by the fixture) follows
    them across server connections. Older ones don't: the statement prepared
    on one server connection is missing on the next, which is why docs/deployment.md
    says ``prepare_threshold: None`` there.
    """
    if supports_prepared_statements(pgbouncer.version):
        assert len(await repeated_queries(pgbouncer)) == 42
        return
    await Student.objects.acreate(name="a", age=1)
    assert (await Student.objects.aget(name="a")).age == 1  # prepared on this server connection
    holder = await take_a_server(pgbouncer)
    try:
        with pytest.raises(Exception, match=r'prepared statement "_pg3_\d+" does not exist'):
            await Student.objects.aget(name="a")
    finally:
        await give_back(holder)


# --- Server-side cursors -------------------------------------------------------------------


async def read_while_a_server_is_taken(pgbouncer: PgBouncer, rows: Any) -> list[str]:
    """Iterate ``rows`` (``async for``); after the first chunk, another client takes a server."""
    names: list[str] = []
    holder = None
    try:
        async for row in rows:
            names.append(row.name)
            if holder is None:
                holder = await take_a_server(pgbouncer)
    finally:
        await give_back(holder)
    return names


STUDENTS = [f"s{i:03}" for i in range(250)]


def iterations() -> dict[str, Callable[[], Any]]:
    """``aiterator()`` reads with a server-side cursor, in chunks (unless disabled);
    ``async for`` over a QuerySet reads it whole, as Django does, then iterates."""
    return {
        "aiterator": lambda: Student.objects.order_by("name").aiterator(chunk_size=20),
        "async for": lambda: Student.objects.order_by("name"),
    }


@pytest.mark.parametrize(
    "via_pgbouncer",
    [{"DISABLE_SERVER_SIDE_CURSORS": False}, {"DISABLE_SERVER_SIDE_CURSORS": True}],
    indirect=True,
    ids=["cursors", "no cursors"],
)
@pytest.mark.parametrize("how", list(iterations()))
async def test_server_side_cursors_inside_a_transaction(
    how: str, pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """A transaction keeps its server connection: server-side cursors work, with or without."""
    await Student.objects.abulk_create(Student(name=name, age=1) for name in STUDENTS)
    async with transaction.atomic():
        names, others = await asyncio.gather(
            read_while_a_server_is_taken(pgbouncer, iterations()[how]()),
            asyncio.gather(*(Student.objects.acount() for _ in range(10))),
        )
    assert names == STUDENTS
    assert others == [250] * 10


@pytest.mark.parametrize("how", list(iterations()))
async def test_server_side_cursors_outside_a_transaction_with_the_setting(
    how: str, pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """``DISABLE_SERVER_SIDE_CURSORS = True``: every chunk is read, whatever server is free."""
    await Student.objects.abulk_create(Student(name=name, age=1) for name in STUDENTS)
    names, others = await asyncio.gather(
        read_while_a_server_is_taken(pgbouncer, iterations()[how]()),
        asyncio.gather(*(Student.objects.acount() for _ in range(10))),
    )
    assert names == STUDENTS
    assert others == [250] * 10
    assert await server_sessions("state LIKE 'idle in transaction%%'") == 0


@changed(DISABLE_SERVER_SIDE_CURSORS=False)
@pytest.mark.filterwarnings("ignore:.*was deleted while still open:ResourceWarning")
async def test_server_side_cursors_outside_a_transaction_need_the_setting(
    pgbouncer: PgBouncer, via_pgbouncer: PgBouncer
) -> None:
    """Without it, a ``WITH HOLD`` cursor stays on the server connection that declared it.

    The next ``FETCH`` reaches another server connection; Django's ``CLOSE``
    of the cursor fails the same way (psycopg then warns about the cursor it
    could not close, as it would on Django's own backend).
    """
    await Student.objects.abulk_create(Student(name=name, age=1) for name in STUDENTS)
    with pytest.raises(
        (ProgrammingError, psycopg.ProgrammingError),
        match=r'cursor "_django_curs_\S+" does not exist',
    ) as info:
        await read_while_a_server_is_taken(pgbouncer, iterations()["aiterator"]())
    del info
    gc.collect()  # psycopg's warning about the unclosed cursor, here rather than later
    assert await Student.objects.acount() == 250  # the pool and PgBouncer carry on
