"""aorm's MySQL backend with ``USE_TZ`` and a non-UTC ``TIME_ZONE``, with and without the
server's time zone tables, side by side with Django's own mysql backend.

Django's date and time lookups (``__date``, ``__hour``, ``datetimes()``...)
convert in SQL with ``CONVERT_TZ``, which needs the server's time zone tables
(``mariadb-tzinfo-to-sql``; ``make mysql-tz`` loads them into the suite's
server). Without them ``CONVERT_TZ`` returns NULL and Django's backend gives
NULLs, empty filters and, for ``datetimes()``, a ValueError asking whether
the definitions are installed: aorm's must do exactly the same, and be right
once they are loaded.

Both states are real: each runs on a MariaDB server of this module's own
(``mariadbd`` on a fresh data directory, on a socket, no TCP), its tables
emptied or loaded with the zones used here, so the suite's shared server is
never touched. ``TIME_ZONE`` is the suite's ``Europe/Paris``.
"""

from __future__ import annotations

import contextlib
import datetime
import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections, models
from django.db.models.functions import ExtractHour

import aorm
from tests.conftest import SqlLog

BINARIES = {
    name: shutil.which(name) for name in ("mariadb-install-db", "mariadb", "mariadb-tzinfo-to-sql")
}
BINARIES["mariadbd"] = shutil.which("mariadbd") or shutil.which("mariadbd", path="/usr/sbin")
MISSING = [name for name, path in BINARIES.items() if path is None]
# The zones these tests convert to: Django's connection zone, TIME_ZONE, an explicit tzinfo.
ZONES = ("UTC", "Europe/Paris", "America/New_York")
TZ_TABLES = (
    "time_zone",
    "time_zone_name",
    "time_zone_transition",
    "time_zone_transition_type",
    "time_zone_leap_second",
)
STOCK, NATIVE = "tz_stock", "tz_aorm"  # Django's backend and aorm's, on the server of the module

pytestmark = [
    pytest.mark.skipif(
        settings.DATABASE != "mysql", reason="MySQL tests: AORM_TEST_DATABASE=mysql"
    ),
    pytest.mark.skipif(
        importlib.util.find_spec("MySQLdb") is None or importlib.util.find_spec("asyncmy") is None,
        reason="mysqlclient or asyncmy not installed (pip install -e '.[mysql]')",
    ),
    pytest.mark.skipif(
        bool(MISSING),
        reason=f"no {', '.join(MISSING)} here: the MariaDB server binaries start this "
        "module's own servers (apt-get install mariadb-server)",
    ),
]


class TzVisit(models.Model):
    at = models.DateTimeField()

    class Meta:
        app_label = "aorm"
        db_table = "aorm_tz_visit"


# 23:30 UTC on 1 March is 00:30 on 2 March in Europe/Paris, 18:30 on 1 March in New York.
AT = datetime.datetime(2024, 3, 1, 23, 30, tzinfo=datetime.UTC)


def _client(socket: str, sql: str) -> str:
    done = subprocess.run(
        [BINARIES["mariadb"], "--no-defaults", "-uroot", f"--socket={socket}", "-N", "mysql"],
        input=sql,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def datadir() -> Iterator[Path]:
    """A fresh MariaDB data directory (system tables only, time zone tables empty)."""
    root = Path(tempfile.mkdtemp(prefix="aorm-tz-"))
    command = [
        BINARIES["mariadb-install-db"], "--no-defaults", f"--datadir={root / 'data'}",
        "--auth-root-authentication-method=normal", "--skip-test-db",
        *(["--user=root"] if os.geteuid() == 0 else []),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=110)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=["without tz tables", "with tz tables"])
def server(
    request: pytest.FixtureRequest, datadir: Path, django_db_blocker: Any
) -> Iterator[bool]:
    """A MariaDB server on ``datadir``, its time zone tables emptied or loaded; yields which.

    A fresh server process each time: the server caches the zones it has
    looked up, so a state set while it runs would not be seen.
    """
    with_tables = request.param == "with tz tables"
    socket = str(datadir / "mysqld.sock")
    command = [
        BINARIES["mariadbd"], "--no-defaults", f"--datadir={datadir / 'data'}",
        f"--socket={socket}", "--skip-networking", f"--pid-file={datadir / 'mysqld.pid'}",
        f"--log-error={datadir / 'error.log'}", "--innodb-buffer-pool-size=16M",
        *(["--user=root"] if os.geteuid() == 0 else []),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_for(socket, process, datadir / "error.log")
        load = "".join(f"TRUNCATE TABLE {table};\n" for table in TZ_TABLES)
        if with_tables:
            for zone in ZONES:
                tzinfo = subprocess.run(
                    [BINARIES["mariadb-tzinfo-to-sql"], f"/usr/share/zoneinfo/{zone}", zone],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                load += tzinfo.stdout
        load += "DROP DATABASE IF EXISTS aorm_tz; CREATE DATABASE aorm_tz CHARACTER SET utf8mb4;\n"
        _client(socket, load)
        with _aliases(socket), django_db_blocker.unblock():
            with connections[STOCK].schema_editor() as editor:
                editor.create_model(TzVisit)
            TzVisit.objects.using(STOCK).create(at=AT)
            yield with_tables
    finally:
        process.terminate()
        process.wait(timeout=60)


def _wait_for(socket: str, process: subprocess.Popen[bytes], log: Path) -> None:
    """Until the server answers on its socket (it starts in well under a second)."""
    deadline = time.monotonic() + 60
    while True:
        probe = subprocess.run(
            [BINARIES["mariadb"], "--no-defaults", "-uroot", f"--socket={socket}", "-e", "DO 1"],
            capture_output=True,
        )
        if probe.returncode == 0:
            return
        if process.poll() is not None or time.monotonic() > deadline:
            error = log.read_text()[-2000:] if log.exists() else ""
            raise AssertionError(f"mariadbd did not start: {error}")
        time.sleep(0.05)


@contextlib.contextmanager
def _aliases(socket: str) -> Iterator[None]:
    """Django's backend and aorm's on the module's server, as two more aliases."""
    server = {"NAME": "aorm_tz", "USER": "root", "HOST": socket, "PORT": ""}
    added = {
        STOCK: {"ENGINE": "django.db.backends.mysql", **server},
        NATIVE: {"ENGINE": "aorm.backends.mysql", **server},
    }
    with pytest.MonkeyPatch.context() as patch:
        databases = connections.configure_settings({**connections.settings, **added})
        patch.setattr(connections, "settings", databases)
        try:
            yield
        finally:
            # The wrappers go with their server (they cache its facts, as Django's do),
            # here and in asgiref's thread, where the reference calls ran.
            _forget(added)
            SyncToAsync.single_thread_executor.submit(_forget, added).result()


def _forget(aliases: dict[str, Any]) -> None:
    for wrapper in connections.all(initialized_only=True):
        if wrapper.alias in aliases:
            wrapper.close()
            del connections[wrapper.alias]


def _outcome(alias: str, fn: Callable[[Any], Any]) -> Any:
    try:
        return ("returned", fn(TzVisit.objects.using(alias)))
    except Exception as exc:
        return ("raised", type(exc), exc.args)


async def both(fn: Callable[[Any], Any], sql_log: SqlLog) -> tuple[Any, Any]:
    """``fn(queryset)``'s outcome on Django's backend (in a worker thread), then on aorm's."""
    stock = await sync_to_async(_outcome)(STOCK, fn)
    sql_log.clear()
    native = await aorm.run(_outcome, NATIVE, fn)
    # aorm's ran on the event loop's thread, as every native operation does.
    assert sql_log.threads() == {threading.get_ident()}, sql_log.statements
    return stock, native


def _has_zoneinfo_database(alias: str) -> bool:
    return bool(connections[alias].features.has_zoneinfo_database)


async def test_the_server_reports_its_time_zone_tables_to_both_backends(server: bool) -> None:
    stock = await sync_to_async(_has_zoneinfo_database)(STOCK)
    native = await aorm.run(_has_zoneinfo_database, NATIVE)
    assert stock == native == server


# Each lookup, with what Django's backend returns with the tables and without them.
LOOKUPS: dict[str, tuple[Callable[[Any], Any], Any, Any]] = {
    "__date": (
        lambda visits: visits.filter(at__date=datetime.date(2024, 3, 2)).count(),
        ("returned", 1),
        ("returned", 0),
    ),
    "__day, __hour": (
        lambda visits: list(visits.values_list("at__day", "at__hour")),
        ("returned", [(2, 0)]),
        ("returned", [(None, None)]),
    ),
    "__hour filter": (
        lambda visits: visits.filter(at__hour=0).count(),
        ("returned", 1),
        ("returned", 0),
    ),
    "ExtractHour(tzinfo)": (
        lambda visits: list(
            visits.annotate(
                hour=ExtractHour("at", tzinfo=ZoneInfo("America/New_York"))
            ).values_list("hour", flat=True)
        ),
        ("returned", [18]),
        ("returned", [None]),
    ),
    "datetimes()": (
        lambda visits: list(visits.datetimes("at", "day")),
        ("returned", [datetime.datetime(2024, 3, 2, tzinfo=ZoneInfo("Europe/Paris"))]),
        (
            "raised",
            ValueError,
            (
                "Database returned an invalid datetime value. Are time zone definitions "
                "for your database installed?",
            ),
        ),
    ),
    "the value itself": (
        lambda visits: visits.get().at,
        ("returned", AT),
        ("returned", AT),  # read as UTC: no conversion on the server
    ),
}


@pytest.mark.parametrize("lookup", LOOKUPS)
async def test_time_zone_lookups_match_djangos_backend(
    server: bool, lookup: str, sql_log: SqlLog
) -> None:
    fn, with_tables, without_tables = LOOKUPS[lookup]
    stock, native = await both(fn, sql_log)
    assert stock == native == (with_tables if server else without_tables)
