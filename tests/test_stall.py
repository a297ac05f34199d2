"""A network that goes silent between aorm and PostgreSQL.

Between aorm and the test server sits :class:`tests.tcp_proxy.StallingProxy`,
which stops forwarding without closing anything (no FIN, no RST), then
resumes. An alias of aorm's backend goes through it, with the settings
docs/reliability.md recommends: a pool ``timeout``, libpq's
``connect_timeout`` and a server ``statement_timeout``. What the tests
measure and require:

- waiting for a pooled connection is bounded by the pool's ``timeout``
  (:class:`aorm.PoolTimeout`), even when every connection is stuck;
- opening a connection is bounded by ``connect_timeout``, whether the
  network goes silent or a server accepts the connection and never answers
  the startup;
- an operation already waiting for the server's answer is bounded only by the
  application: cancelled by an ``asyncio.timeout``, it ends within that
  timeout plus aorm's wait for the server-side cancel request, which
  ``connect_timeout`` bounds as it bounds any new connection, and its
  connection is closed, its pool slot freed.
  Without one it waits until the network comes back: neither
  ``statement_timeout`` (the server's answer cannot get through) nor TCP
  keepalives and ``tcp_user_timeout`` (the proxy's kernel acknowledges
  everything) can end it here. Against a real partition the kernel settings
  do (see docs/reliability.md), and :func:`test_the_kernel_settings_reach_aorms_sockets`
  shows they are set on aorm's connections;
- when the network resumes, the stuck operation completes, the pool is whole
  (nothing in use, nobody waiting) and new operations succeed;
- ``statement_timeout`` bounds what it can: a query that runs too long on a
  reachable server;
- a refused connection is Django's ``OperationalError``, also when the pool
  opens it as an operation starts.

Each test prints its measured times (``pytest -s``).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import SyncToAsync
from django.db import OperationalError, connections
from students.models import Student

import aorm
from tests.conftest import ALL_DATABASES, postgresql_only
from tests.tcp_proxy import StallingProxy

pytestmark = [ALL_DATABASES, postgresql_only("libpq's timeouts and a PostgreSQL server")]

POOL_SIZE = 2
POOL_TIMEOUT = 2.0  # OPTIONS["pool"]["timeout"]
CONNECT_TIMEOUT = 2  # OPTIONS["connect_timeout"] (libpq's minimum: 2 s)
STATEMENT_TIMEOUT_MS = 1000  # server-side, through OPTIONS["options"]
APP_TIMEOUT = 1.0  # the application's asyncio.timeout around one operation
SLACK = 1.5  # scheduling on a loaded 2-core machine


KERNEL_SETTINGS = {
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}
# The aliases through a proxy, by the OPTIONS they add to a pool of POOL_SIZE with
# POOL_TIMEOUT and CONNECT_TIMEOUT.
ALIAS = "through_proxy"
ALIASES = {
    ALIAS: {"options": f"-c statement_timeout={STATEMENT_TIMEOUT_MS}"},
    "keepalives": KERNEL_SETTINGS,
    "refused": {},  # through a proxy of its own, that its test closes
}


@dataclass
class Proxies:
    main: StallingProxy
    refused: StallingProxy


@pytest.fixture(scope="module")
def proxies(django_db_setup: None) -> Iterator[Proxies]:
    """Proxies to the test server, and the aliases through them (before the tests' own
    database set-up, which lets a test use the aliases that exist)."""
    server = connections.settings["stock"]
    target = (server["HOST"] or "127.0.0.1", int(server["PORT"] or 5432))
    original = connections.settings
    with StallingProxy(*target) as main, StallingProxy(*target) as refused:
        connections.settings = {  # type: ignore[misc]  # a new dict: aorm reads it afresh
            **original,
            **{
                alias: {
                    **original["default"],
                    "HOST": "127.0.0.1",
                    "PORT": str((refused if alias == "refused" else main).port),
                    "OPTIONS": {
                        "pool": {"min_size": 1, "max_size": POOL_SIZE, "timeout": POOL_TIMEOUT},
                        "connect_timeout": CONNECT_TIMEOUT,
                        **added,
                    },
                    "TEST": {"MIRROR": "default"},
                }
                for alias, added in ALIASES.items()
            },
        }
        try:
            yield Proxies(main, refused)
        finally:
            for alias in ALIASES:
                del connections[alias]
            connections.settings = original  # type: ignore[misc]


@pytest.fixture
def proxy(proxies: Proxies) -> Iterator[StallingProxy]:
    """The proxy of ``through_proxy`` and ``keepalives``, forwarding again after the test."""
    yield proxies.main
    proxies.main.resume()


def _close(alias: str) -> None:
    """Close ``alias``'s sync connections, here and in asgiref's worker thread, and its pools."""
    connections[alias].close()
    SyncToAsync.single_thread_executor.submit(lambda: connections[alias].close()).result()
    connections[alias].close_pool()


@pytest.fixture(autouse=True)
def close_pools(proxies: Proxies) -> Iterator[None]:
    yield
    for alias in ALIASES:
        _close(alias)


def count() -> Awaitable[int]:
    return Student.objects.using(ALIAS).acount()


def _sleep(seconds: float) -> None:
    with connections[ALIAS].cursor() as cursor:
        cursor.execute("SELECT pg_sleep(%s)", [seconds])


async def timed(operation: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    """(seconds taken, result or the exception raised)."""
    started = time.monotonic()
    try:
        outcome = await operation()
    except Exception as exc:
        outcome = exc
    return time.monotonic() - started, outcome


async def until(condition: Callable[[], bool], seconds: float = 10) -> None:
    """Wait (bounded) for an observable state of the pool."""
    async with asyncio.timeout(seconds):
        while not condition():
            await asyncio.sleep(0.01)


async def test_a_stalled_network_fails_operations_within_the_bounds(
    proxy: StallingProxy,
) -> None:
    # Two connections open and idle in the pool.
    await asyncio.gather(*(aorm.run(_sleep, 0.1) for _ in range(POOL_SIZE)))
    assert aorm.pool_stats(ALIAS).idle == POOL_SIZE

    proxy.stall()
    stuck = asyncio.create_task(count())  # no timeout of its own

    async def bounded() -> int:
        async with asyncio.timeout(APP_TIMEOUT):
            return await count()

    interrupted = asyncio.create_task(timed(bounded))
    await until(lambda: aorm.pool_stats(ALIAS).in_use == POOL_SIZE)  # both sent their query

    # The pool is exhausted: the next operation waits its timeout in line, then fails.
    waited, error = await timed(count)
    assert isinstance(error, aorm.PoolTimeout), error
    assert POOL_TIMEOUT <= waited < POOL_TIMEOUT + SLACK, waited

    # The interrupted operation ends after its timeout plus, at most, the cancel request,
    # which cannot get through either: connect_timeout bounds it (5 s without one).
    cancelled_after, error = await interrupted
    assert isinstance(error, TimeoutError), error
    assert APP_TIMEOUT <= cancelled_after < APP_TIMEOUT + CONNECT_TIMEOUT + SLACK, cancelled_after
    stats = aorm.pool_stats(ALIAS)
    assert (stats.in_use, stats.size) == (1, 1), stats  # its connection was closed

    # Its free slot means a new connection: bounded by connect_timeout.
    connecting, error = await timed(count)
    assert type(error) is OperationalError and "timeout" in str(error), error
    assert CONNECT_TIMEOUT <= connecting < CONNECT_TIMEOUT + SLACK, connecting

    # Past the statement_timeout, the operation without a timeout still waits.
    assert cancelled_after + connecting > STATEMENT_TIMEOUT_MS / 1000
    assert not stuck.done()

    proxy.resume()
    async with asyncio.timeout(10):
        assert isinstance(await stuck, int)
        assert await asyncio.gather(*(count() for _ in range(POOL_SIZE * 2)))
    stats = aorm.pool_stats(ALIAS)
    assert (stats.in_use, stats.waiting) == (0, 0) and 1 <= stats.size <= POOL_SIZE, stats
    print(
        f"\nstalled network: pool wait {waited:.2f}s (timeout {POOL_TIMEOUT:g}), "
        f"interrupted query {cancelled_after:.2f}s (asyncio.timeout {APP_TIMEOUT:g} + cancel "
        f"request, connect_timeout {CONNECT_TIMEOUT}), "
        f"new connection {connecting:.2f}s (connect_timeout {CONNECT_TIMEOUT})"
    )


async def test_a_server_that_never_answers_the_startup(proxy: StallingProxy) -> None:
    """Accepted, and silent from the start: connect_timeout bounds the operation."""
    proxy.stall()
    took, error = await timed(count)
    assert type(error) is OperationalError and "timeout" in str(error), error
    assert CONNECT_TIMEOUT <= took < CONNECT_TIMEOUT + SLACK, took
    assert proxy.accepted >= 1  # the connection was accepted: only the startup was silent
    stats = aorm.pool_stats(ALIAS)
    assert (stats.size, stats.in_use, stats.waiting) == (0, 0, 0), stats

    proxy.resume()
    assert isinstance(await count(), int)
    print(f"\nsilent startup: failed after {took:.2f}s (connect_timeout {CONNECT_TIMEOUT})")


async def test_the_kernel_settings_reach_aorms_sockets(proxy: StallingProxy) -> None:
    """TCP keepalives and tcp_user_timeout, set in OPTIONS, are on aorm's own sockets."""

    def socket_options() -> dict[str, int]:
        with connections["keepalives"].cursor():
            fd = connections["keepalives"].connection.pgconn.socket
        sock = socket.socket(fileno=fd)  # a view of libpq's socket: detached below
        try:
            tcp = socket.IPPROTO_TCP
            return {
                "keepalives": sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                "keepalives_idle": sock.getsockopt(tcp, socket.TCP_KEEPIDLE),
                "keepalives_interval": sock.getsockopt(tcp, socket.TCP_KEEPINTVL),
                "keepalives_count": sock.getsockopt(tcp, socket.TCP_KEEPCNT),
                "tcp_user_timeout": sock.getsockopt(tcp, socket.TCP_USER_TIMEOUT),
            }
        finally:
            sock.detach()

    assert await aorm.run(socket_options) == KERNEL_SETTINGS


async def test_statement_timeout_bounds_a_slow_query(proxy: StallingProxy) -> None:
    """What the server's statement_timeout does bound: a query that runs too long."""
    took, error = await timed(lambda: aorm.run(_sleep, 10))
    assert type(error) is OperationalError and "statement timeout" in str(error), error
    assert STATEMENT_TIMEOUT_MS / 1000 <= took < STATEMENT_TIMEOUT_MS / 1000 + SLACK, took
    assert isinstance(await count(), int)  # the connection serves on


async def test_a_refused_connection_is_djangos_operational_error(proxies: Proxies) -> None:
    students = Student.objects.using("refused")
    assert isinstance(await students.acount(), int)  # the pool exists, one idle connection
    proxies.refused.close()  # connections reset, nothing listens on the port any more
    with pytest.raises(OperationalError):  # the dead idle connection: Django's error
        await students.acount()
    with pytest.raises(OperationalError):  # a new connection, refused
        await students.acount()
