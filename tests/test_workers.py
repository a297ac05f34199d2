"""Several worker processes, each with its own pool, on one PostgreSQL.

The tests start the load test's project (:mod:`tests.loadapp`: the seeds'
``Student`` model behind views that count, write in ``async with
transaction.atomic()`` and await between queries) under ``uvicorn --workers
4`` and under gunicorn with uvicorn's worker class (``uvicorn_worker``), with
a pool of :data:`POOL_MAX_SIZE` connections per worker, sessions named by
their own ``application_name``. :mod:`support.load_client` drives them over
loopback while :func:`_watch` samples ``pg_stat_activity``, and maps each
session to the worker process that holds its socket (the session's
``client_port`` is the local port of one of the worker's TCP sockets, read
from ``/proc``).

- A load with no errors: every request answers 200, every acknowledged write
  is in the table once, no worker ever has more sessions than its pool, the
  server as a whole no more than ``workers x pool size``, and at the end every
  session is idle.
- A worker killed with SIGKILL mid-load, chosen while one of its sessions is
  ``idle in transaction``: PostgreSQL sees the socket closed by the kernel and
  ends those sessions, rolling back their transactions; the test measures how
  long that takes (polled, with a deadline). Only requests already in flight
  when the worker died fail; every request sent afterwards is served by the
  other workers (and the one the server starts in its place); no session is
  left idle in transaction, no acknowledged write is lost, and the server starts a
  worker in place of the dead one.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
import pytest
from django.db import connection
from students.models import Student
from support.load_client import Outcome, Request, TruncatedResponse, run_load
from support.services import free_port, serve

from tests.conftest import ALL_DATABASES, postgresql_only
from tests.server import ROOT
from tests.test_asgi_load import HOST, _drop_own_connections, _monitor_params, monitor

pytestmark = [
    ALL_DATABASES,
    postgresql_only("the test counts PostgreSQL sessions in pg_stat_activity"),
    pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux's /proc"),
]

WORKERS = 4
POOL_MAX_SIZE = 4  # per worker: 16 sessions at most, well under max_connections
REQUESTS = 400
CONCURRENCY = 32
SAMPLE_EVERY = 0.05  # pg_stat_activity, during the load
LINGER = 0.1  # how long the server process of a closed session may stay in pg_stat_activity
NOTICE_DEADLINE = 10.0  # seconds for PostgreSQL to end the killed worker's sessions
KILL_AFTER = 50  # completed requests before the test looks for a worker to kill

SERVERS = {
    "uvicorn": ["-m", "uvicorn", f"--workers={WORKERS}", "--host={host}", "--port={port}",
                "--log-level=warning"],
    "gunicorn": ["-m", "gunicorn", "--worker-class=uvicorn_worker.UvicornWorker",
                 f"--workers={WORKERS}", "--bind={host}:{port}", "--log-level=warning"],
}  # fmt: skip
KINDS = [
    "uvicorn",
    pytest.param(
        "gunicorn",
        marks=pytest.mark.skipif(
            importlib.util.find_spec("gunicorn") is None
            or importlib.util.find_spec("uvicorn_worker") is None,
            reason="gunicorn or uvicorn-worker is not installed (the test extra has them)",
        ),
    ),
]


@dataclass
class Server:
    kind: str
    port: int
    application_name: str
    proc: subprocess.Popen[str]
    stderr: str = ""

    def workers(self) -> set[int]:
        """The worker processes: the server's children that are not multiprocessing helpers."""
        children = set()
        for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
            with suppress(OSError):
                children.update(map(int, (task / "children").read_text().split()))
        return {
            pid
            for pid in children
            if b"resource_tracker" not in _read(Path(f"/proc/{pid}/cmdline"), b"resource_tracker")
        }


def _read(path: Path, default: bytes) -> bytes:
    """A /proc file, or ``default`` if its process is gone."""
    try:
        return path.read_bytes()
    except OSError:
        return default


def unexpected_stderr(server: Server, *expected: str) -> list[str]:
    """The server's stderr, but for lines containing one of ``expected`` and the
    supervisors' own warnings (not aorm's doing): uvicorn's ResourceWarning for its
    listening socket, which it leaves to the interpreter's exit to close, and
    Python 3.12's DeprecationWarning when gunicorn (27+) forks a replacement worker
    from an arbiter that runs its control-socket thread."""
    supervisors = re.compile(
        rf"sys:1: ResourceWarning: unclosed <socket.socket fd=\d+, family=2, type=1, proto=6, "
        rf"laddr=\('{re.escape(HOST)}', {server.port}\)>"
        r"|ResourceWarning: Enable tracemalloc to get the object allocation traceback"
        r"|\S+/gunicorn/arbiter\.py:\d+: DeprecationWarning: This process \(pid=\d+\) is "
        r"multi-threaded, use of fork\(\) may lead to deadlocks in the child\."
        r"|  pid = os\.fork\(\)"
    )
    return [
        line
        for line in server.stderr.splitlines()
        if not supervisors.fullmatch(line) and not any(text in line for text in expected)
    ]


@contextmanager
def workers_server(kind: str) -> Iterator[Server]:
    """Serve tests.loadapp with ``kind`` and WORKERS workers; stop it and keep its stderr."""
    port = free_port()
    options = [option.format(host=HOST, port=port) for option in SERVERS[kind]]
    command = [sys.executable, "-W", "default", *options, "tests.loadapp.asgi:application"]
    application_name = f"aorm-workers-{kind}-{port}"
    environ = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "DJANGO_SETTINGS_MODULE": "tests.loadapp.settings",
        "AORM_TEST_USE_NAME": connection.settings_dict["NAME"],
        "AORM_LOAD_POOL_MAX_SIZE": str(POOL_MAX_SIZE),
        "AORM_LOAD_APPLICATION_NAME": application_name,
    }
    environ.pop("PYTHONWARNINGS", None)
    with serve(command, port=port, env=environ, cwd=ROOT) as process:
        server = Server(kind, port, application_name, process.proc)
        yield server
    server.stderr = process.stderr


# Sessions and the workers that hold them.

Session = tuple[int, int, str | None]  # server pid, client port, state


def sessions_query(server: Server) -> tuple[str, list[str]]:
    return (
        "SELECT pid, client_port, state FROM pg_stat_activity "
        "WHERE datname = current_database() AND application_name = %s",
        [server.application_name],
    )


async def sessions(conn: psycopg.AsyncConnection[Any], server: Server) -> list[Session]:
    cursor = await conn.execute(*sessions_query(server))
    return await cursor.fetchall()


def _socket_ports() -> dict[int, int]:
    """Socket inode -> local port, for this machine's TCP sockets to PostgreSQL's port."""
    remote = f":{int(connection.settings_dict['PORT']):04X} "
    ports = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with suppress(OSError), open(table) as lines:
            for line in lines:
                if remote in line:  # the table holds every TCP socket, TIME_WAIT ones too
                    fields = line.split()
                    ports[int(fields[9])] = int(fields[1].rpartition(":")[2], 16)
    return ports


def workers_of(server: Server, found: list[Session]) -> dict[int, list[Session]]:
    """The sessions in ``found`` by the worker process whose socket they serve."""
    ports = _socket_ports()
    port_to_worker = {}
    for worker in server.workers():
        with suppress(OSError):  # a worker that just died
            for fd in Path(f"/proc/{worker}/fd").iterdir():
                with suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:["):
                        port = ports.get(int(link[8:-1]))
                        if port is not None:
                            port_to_worker[port] = worker
    by_worker: dict[int, list[Session]] = {}
    for session in found:
        worker = port_to_worker.get(session[1])
        if worker is not None:
            by_worker.setdefault(worker, []).append(session)
    return by_worker


@dataclass
class Peaks:
    total: int = 0  # the server's sessions
    per_worker: int = 0  # one worker's sessions
    workers: set[int] = field(default_factory=set)  # the workers seen holding sessions


async def _watch(
    server: Server, conn: psycopg.AsyncConnection[Any], stop: asyncio.Event, peaks: Peaks
) -> None:
    """Sample the server's sessions during the load. A sample above the bound is taken
    again LINGER later and only the sessions still there count: a closed session's server
    process leaves pg_stat_activity a few milliseconds after its pool slot is free."""
    while not stop.is_set():
        found = await sessions(conn, server)
        if len(found) > WORKERS * POOL_MAX_SIZE:
            await asyncio.sleep(LINGER)
            found = list(set(found) & set(await sessions(conn, server)))
        by_worker = workers_of(server, found)
        peaks.total = max(peaks.total, len(found))
        peaks.per_worker = max([peaks.per_worker, *map(len, by_worker.values())])
        peaks.workers |= set(by_worker)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY)


async def settle(server: Server, conn: psycopg.AsyncConnection[Any]) -> list[Session]:
    """Wait (bounded) until every session of the server is idle; its sessions then."""
    deadline = time.monotonic() + 10
    while True:
        found = await sessions(conn, server)
        if all(state == "idle" for _, _, state in found) or time.monotonic() > deadline:
            return found  # the assertions that follow say what is wrong, if anything
        await asyncio.sleep(0.05)


def _plan(prefix: str) -> list[Request]:
    """Counts with a slow query, atomic writes, views that await between two queries."""
    paths = ["/query/", "/write/?token={prefix}{i}", "/between/?pause=0.02"]
    return [Request(paths[i % len(paths)].format(prefix=prefix, i=i)) for i in range(REQUESTS)]


def _acknowledged(outcomes: list[Outcome]) -> dict[str, int]:
    """token -> id of the writes answered 200."""
    return {
        answer["token"]: answer["id"]
        for o in outcomes
        if o.status == 200 and o.request.path.startswith("/write/")
        for answer in [json.loads(o.response.body)]  # type: ignore[union-attr]
    }


def _assert_written_once(acknowledged: dict[str, int]) -> None:
    rows: dict[str, list[int]] = {}
    for name, pk in Student.objects.using("stock").values_list("name", "id"):
        rows.setdefault(name, []).append(pk)
    assert {token: rows.get(token) for token in acknowledged} == {
        token: [pk] for token, pk in acknowledged.items()
    }


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_workers_serve_a_load_within_workers_times_pool_size(kind: str) -> None:
    async def scenario(server: Server) -> tuple[list[Outcome], Peaks, list[Session]]:
        async with monitor() as conn:
            stop, peaks = asyncio.Event(), Peaks()
            watcher = asyncio.create_task(_watch(server, conn, stop, peaks))
            try:
                outcomes = await run_load(
                    HOST, server.port, _plan("ok"), concurrency=CONCURRENCY, timeout=30
                )
            finally:
                stop.set()
                await watcher
            return outcomes, peaks, await settle(server, conn)

    _drop_own_connections()
    with workers_server(kind) as server:
        outcomes, peaks, after = asyncio.run(scenario(server))
    print(f"{kind}: peak {peaks.total} sessions, {peaks.per_worker} in one worker, "
          f"{len(peaks.workers)} workers held sessions; after the load: {len(after)}")  # fmt: skip

    assert [(o.request.path, o.error) for o in outcomes if o.status != 200] == [], server.stderr
    _assert_written_once(_acknowledged(outcomes))
    assert peaks.per_worker <= POOL_MAX_SIZE, peaks
    assert peaks.total <= WORKERS * POOL_MAX_SIZE, peaks
    # More than one pool's worth at once: the workers shared the load, each with its pool.
    assert peaks.total > POOL_MAX_SIZE and len(peaks.workers) > 1, peaks
    assert [s for s in after if s[2] != "idle"] == [], after
    assert unexpected_stderr(server) == [], server.stderr


@dataclass
class Kill:
    worker: int = 0
    at: float = 0.0  # time.monotonic() of the SIGKILL (the event loop's clock)
    dead_at: float = 0.0  # when the worker was first seen dead (it runs on until the kernel
    # delivers the signal: on a busy machine it may still accept a connection meanwhile)
    sessions: list[Session] = field(default_factory=list)  # the worker's, just before
    ended: dict[str | None, list[float]] = field(default_factory=lambda: defaultdict(list))
    """seconds after the kill when PostgreSQL had ended each session, by state at the kill"""
    first_sample: float = 0.0  # seconds after the kill when the first sample came back

    def summary(self) -> str:
        ended = ", ".join(
            f"{state} {', '.join(f'{t * 1000:.0f}' for t in sorted(times))} ms"
            for state, times in sorted(self.ended.items(), key=str)
        )
        return f"{ended}; the first sample after the kill came {self.first_sample * 1000:.0f} ms"


def _kill_a_worker_in_a_transaction(server: Server, kill: Kill) -> None:
    """SIGKILL a worker while one of its sessions is idle in transaction; wait until
    PostgreSQL has ended all of the worker's sessions, and note when it ended each.

    Runs in a thread of its own, with its own connection, so that the load's event loop
    does not delay the kill after the sample, nor the samples after the kill.
    """
    with psycopg.connect(**_monitor_params()) as conn:
        deadline = time.monotonic() + 20
        while not kill.sessions:
            assert time.monotonic() < deadline, "no worker was ever seen idle in transaction"
            for worker, held in workers_of(server, conn.execute(*sessions_query(server))).items():
                if any(state == "idle in transaction" for _, _, state in held):
                    os.kill(worker, signal.SIGKILL)
                    kill.worker, kill.at, kill.sessions = worker, time.monotonic(), held
                    break
            else:
                time.sleep(0.002)  # the next sample
        while not _dead(kill.worker):
            assert time.monotonic() < kill.at + NOTICE_DEADLINE, f"worker alive: {kill}"
            time.sleep(0.0005)
        kill.dead_at = time.monotonic()
        left = {pid: state for pid, _, state in kill.sessions}
        while left:
            assert time.monotonic() < kill.at + NOTICE_DEADLINE, f"sessions left: {kill}"
            time.sleep(0.001)  # the next sample
            still = {pid for pid, _, _ in conn.execute(*sessions_query(server))}
            kill.first_sample = kill.first_sample or time.monotonic() - kill.at
            for pid in set(left) - still:
                kill.ended[left.pop(pid)].append(time.monotonic() - kill.at)


def _dead(pid: int) -> bool:
    """The process is gone, or a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (FileNotFoundError, ProcessLookupError):  # reaped before open(), or during read()
        return True


async def replaced(server: Server, dead: int) -> None:
    """Wait (bounded) until the server has started a worker in place of ``dead``."""
    deadline = time.monotonic() + 30
    while len(server.workers() - {dead}) < WORKERS:
        assert time.monotonic() < deadline, f"no worker replaced {dead}: {server.workers()}"
        await asyncio.sleep(0.05)


def _lost_connection(error: BaseException | None) -> bool:
    """What the client sees of a worker that died mid-request: a reset, or an answer cut
    short (nothing, part of the head, or part of a body already streaming)."""
    return isinstance(error, ConnectionError | TruncatedResponse)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", KINDS)
def test_a_worker_killed_mid_load_leaves_nothing_idle_in_transaction(kind: str) -> None:
    async def scenario(server: Server) -> tuple[list[Outcome], Peaks, Kill, list[Session]]:
        async with monitor() as conn:
            stop, peaks, kill, due = asyncio.Event(), Peaks(), Kill(), asyncio.Event()

            def on_outcome(outcome: Outcome, completed: int) -> None:
                if completed >= KILL_AFTER:
                    due.set()

            watcher = asyncio.create_task(_watch(server, conn, stop, peaks))
            load = asyncio.create_task(
                run_load(
                    HOST, server.port, _plan("kill"), concurrency=CONCURRENCY, timeout=30,
                    on_outcome=on_outcome,
                )
            )  # fmt: skip
            try:
                await due.wait()
                await asyncio.to_thread(_kill_a_worker_in_a_transaction, server, kill)
                assert not load.done(), "the load ended before the kill"
                outcomes = await load
                await replaced(server, kill.worker)
            finally:
                load.cancel()
                stop.set()
                await watcher
            return outcomes, peaks, kill, await settle(server, conn)

    _drop_own_connections()
    with workers_server(kind) as server:
        outcomes, peaks, kill, after = asyncio.run(scenario(server))
    failed = [o for o in outcomes if o.status != 200]
    print(f"{kind}: worker {kill.worker} killed; PostgreSQL had ended its sessions "
          f"({kill.summary()}); {len(failed)} requests in flight failed; "
          f"peak {peaks.total} sessions")  # fmt: skip

    assert "idle in transaction" in kill.ended, kill
    # Only requests in flight when the worker died failed, as a lost connection (none, if
    # the worker's transaction ended between the sample and the kill on a busy machine).
    assert all(o.started < kill.dead_at and _lost_connection(o.error) for o in failed), "\n".join(
        f"{o.request.path} started {(o.started - kill.at) * 1000:+.1f} ms after the kill "
        f"(dead {(kill.dead_at - kill.at) * 1000:+.1f} ms): {o.status} {o.error!r}"
        for o in failed
    )
    after_kill = [o for o in outcomes if o.started > kill.dead_at]
    assert len(after_kill) >= CONCURRENCY, len(after_kill)  # the load went on
    assert [(o.request.path, o.error) for o in after_kill if o.status != 200] == []
    _assert_written_once(_acknowledged(outcomes))
    assert peaks.per_worker <= POOL_MAX_SIZE, peaks
    assert peaks.total <= WORKERS * POOL_MAX_SIZE, peaks
    assert [s for s in after if s[2] != "idle"] == [], after
    # The server's own report of the dead worker, nothing else.
    assert unexpected_stderr(server, str(kill.worker)) == [], server.stderr
