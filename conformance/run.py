"""Run Django's own test suite on aorm's backends and compare with Django's own.

``python -m conformance.run [--database postgresql|sqlite|mysql]...
[--refresh-baseline] [--parallel N] [LABEL...]``, from the checkout's root, with
the interpreter of the virtualenv to test (``make conformance`` runs it for
``.venv`` and ``.venv-next``). Each database (default: all) is compared on its
own: ``django.db.backends.postgresql`` with ``aorm.backends.postgresql``,
``django.db.backends.sqlite3`` with ``aorm.backends.sqlite3`` (in-memory test
databases, Django's defaults for its own test suite), and
``django.db.backends.mysql`` with ``aorm.backends.mysql`` (MariaDB or MySQL).

1. The test suite of the installed Django version comes from its source
   distribution (``pip download --no-binary :all:``), cached in
   ``.conformance/``; only its ``tests/`` directory is extracted.
2. The labels run on Django's backend: the baseline. It is cached per Django
   version and database, keyed by everything that can change it (labels,
   Python and driver versions, the files of this package);
   ``--refresh-baseline`` runs it again.
3. The labels run on aorm's backend, with the ``aorm`` app installed.
4. Every test that passes (or fails as expected) on Django's backend must do
   the same on aorm's. Any other outcome -- failure, error, skip, not run --
   is listed with its traceback, and the exit status is 1. Errors outside any
   test (``setUpClass``...) that only aorm has are listed too. A run that
   crashes or times out makes the exit status 2; the other database still runs.

An unreachable PostgreSQL or MySQL server (or a MySQL driver that is not
installed) is skipped with a message, as in ``make test``; under CI
(``CI=true``) it is a failure. Logs, outcomes (JSON)
and the list of differences are left in ``.conformance/`` for inspection,
named after the flavour, the database and the Django version.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import django
from support.services import unavailable as service_unavailable

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".conformance"
PACKAGE = Path(__file__).resolve().parent

LABELS = [
    "basic",
    "queries",
    "transactions",
    "transaction_hooks",
    "select_related",
    "prefetch_related",
    "many_to_one",
    "many_to_many",
    "one_to_one",
    "get_or_create",
    "update",
    "delete",
    "bulk_create",
    "aggregation",
    "expressions",
    "lookup",
    "select_for_update",
    "raw_query",
    "custom_managers",
    "signals",
    "backends",
    # Django's tests of its async ORM API, which aorm routes.
    "async",
    "generic_relations",
    "update_only_fields",
    # Django's own async tests and the apps whose async paths go through the ORM.
    "pagination",
    "sessions_tests",
    "auth_tests",
    "cache",
    "handlers",
]

# Tests that check a limitation aorm removes: their stock outcome is not the contract.
INTENDED = {
    "handlers.tests.TransactionsPerRequestTests.test_auto_transaction_async_view": (
        "Django raises RuntimeError for ATOMIC_REQUESTS with async views; aorm runs them "
        "in a transaction (tests/test_transactions.py)"
    ),
}


@dataclass(frozen=True)
class Flavour:
    """One side of a comparison: a settings module, extra apps, the backend it must use."""

    name: str  # "stock" or "aorm"
    settings: str
    apps: tuple[str, ...]
    backend: str  # the module of the aliases' DatabaseWrapper

    @property
    def engine(self) -> str:
        return self.backend.removesuffix(".base")


def _flavours(database: str, stock: str, aorm: str) -> tuple[Flavour, Flavour]:
    return (
        Flavour("stock", f"conformance.settings_{database}_stock", (), f"{stock}.base"),
        Flavour("aorm", f"conformance.settings_{database}_aorm", ("aorm",), f"{aorm}.base"),
    )


# Database -> (Django's backend: the baseline, aorm's backend), in the order they run.
DATABASES = {
    "postgresql": _flavours(
        "postgresql", "django.db.backends.postgresql", "aorm.backends.postgresql"
    ),
    "sqlite": _flavours("sqlite", "django.db.backends.sqlite3", "aorm.backends.sqlite3"),
    "mysql": _flavours("mysql", "django.db.backends.mysql", "aorm.backends.mysql"),
}

GOOD = {"passed", "expected_failure"}
BAD = {"failed", "error", "unexpected_success"}


class BrokenRun(Exception):
    """A test run that crashed, timed out or did not use the backends it should."""


def say(message: str) -> None:
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    print(f"[conformance: {python}, Django {django.get_version()}] {message}", flush=True)


def test_suite(version: str) -> Path:
    """Django's ``tests/`` directory for ``version``, downloaded and extracted once."""
    target = CACHE / f"django-{version}"
    if (target / "tests" / "runtests.py").exists():
        return target / "tests"
    sdist = CACHE / f"django-{version}.tar.gz"
    if not sdist.exists():
        say(f"downloading Django {version}'s source distribution")
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"),
                *("--no-binary", ":all:", f"django=={version}", "--dest", str(CACHE)),
            ],
            check=True,
        )
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp, tarfile.open(sdist) as archive:
        prefix = f"django-{version}/tests/"
        members = [m for m in archive.getmembers() if m.name.startswith(prefix)]
        archive.extractall(tmp, members=members, filter="data")
        shutil.rmtree(target, ignore_errors=True)
        os.replace(Path(tmp, f"django-{version}"), target)
    return target / "tests"


@contextlib.contextmanager
def locked(version: str) -> Iterator[None]:
    """One run per Django version and checkout at a time: they share test databases and files."""
    with open(CACHE / f"lock-{version}", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def driver_version(database: str) -> str:
    if database == "postgresql":
        import psycopg

        return f"psycopg {psycopg.__version__}"
    if database == "mysql":
        from importlib.metadata import version

        server = mysql_output("SELECT VERSION()").strip()
        return f"mysqlclient {version('mysqlclient')}, asyncmy {version('asyncmy')}, {server}"
    import sqlite3

    return f"SQLite {sqlite3.sqlite_version}"


def baseline_key(database: str, labels: list[str], parallel: int) -> str:
    parts: list[Any] = [
        database,
        django.get_version(),
        sys.version_info[:2],
        driver_version(database),
        labels,
        parallel,
    ]
    parts += [(path.name, path.read_text()) for path in sorted(PACKAGE.glob("*.py"))]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:12]


def server_address(database: str) -> tuple[str, int] | None:
    """Where a database's server listens (None: SQLite, no server)."""
    from conformance._settings import server

    if database == "sqlite":
        return None
    params = server(database)
    return params["HOST"], int(params["PORT"])


def mysql_client_args() -> list[str]:
    from conformance._settings import server

    params = server("mysql")
    return [f"-u{params['USER']}", f"-h{params['HOST']}", f"-P{params['PORT']}"]


def mysql_output(statement: str) -> str:
    """What the ``mysql`` client prints for ``statement`` (no column names)."""
    return subprocess.run(
        ["mysql", "-N", "-e", statement, *mysql_client_args()],
        capture_output=True,
        text=True,
    ).stdout


def unavailable(database: str) -> str | None:
    """Why a database cannot be compared here, or None."""
    if database == "sqlite":
        return None
    return service_unavailable(database, server_address(database))


def run_flavour(
    database: str,
    flavour: Flavour,
    tests_dir: Path,
    labels: list[str],
    parallel: int,
    timeout: int,
    output: Path,
) -> dict[str, Any]:
    """Run ``runtests.py`` for one flavour; return the runner's report."""
    log = output.with_suffix(".log")
    output.unlink(missing_ok=True)
    command = [sys.executable, "-m", "conformance.launch", str(tests_dir)]
    for app in flavour.apps:
        command += ["--with-app", app]
    command += [f"--settings={flavour.settings}", "--noinput", f"--parallel={parallel}", *labels]
    env = {**os.environ, "AORM_CONFORMANCE_OUTPUT": str(output)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    started = time.monotonic()
    with open(log, "w") as log_file:
        # A session of its own: on timeout, the test processes go with it.
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status: int | str = process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            status = f"killed after {timeout}s"
            if database != "sqlite":
                drop_test_databases(database, flavour.name)
    elapsed = time.monotonic() - started
    if not output.exists():
        tail = log.read_text().splitlines()[-40:]
        where = log.relative_to(ROOT)
        say(f"{flavour.engine}: the test run crashed ({status = }); end of {where}:")
        print("\n".join(f"    {line}" for line in tail))
        raise BrokenRun(flavour.engine)
    report: dict[str, Any] = json.loads(output.read_text())
    setup = report["setup"]
    problems = [
        f"alias {alias!r} uses {module}, expected {flavour.backend}"
        for alias, module in setup["backends"].items()
        if module != flavour.backend
    ]
    routed = setup["queryset_sync_to_async"] != "asgiref.sync"
    installed = "aorm" in setup["installed_apps"]
    if flavour.apps and (not installed or not routed):
        problems.append("the aorm app is not installed, or its routing is not in place")
    if not flavour.apps and (installed or routed):
        problems.append("aorm is installed in the baseline run")
    if problems:
        say(f"{flavour.engine}: misconfigured run: " + "; ".join(problems))
        raise BrokenRun(flavour.engine)
    report["elapsed"] = elapsed
    output.write_text(json.dumps(report, indent=1, sort_keys=True))
    return report


def drop_test_databases(database: str, flavour: str) -> None:
    """Drop what a killed run left on the server (Django drops them itself otherwise)."""
    from conformance._settings import server, test_database_prefix

    prefix = test_database_prefix(flavour)
    if database == "mysql":
        listed = mysql_output("SHOW DATABASES").split()
        for name in (name for name in listed if name.startswith(prefix)):
            drop = f"DROP DATABASE IF EXISTS `{name}`"
            subprocess.run(["mysql", "-e", drop, *mysql_client_args()], check=False)
        return
    import psycopg

    params = server("postgresql")
    with psycopg.connect(
        dbname=params["NAME"],
        user=params["USER"],
        host=params["HOST"],
        port=params["PORT"],
        autocommit=True,
    ) as connection:
        names = connection.execute(
            "SELECT datname FROM pg_database WHERE starts_with(datname, %s)", [prefix]
        ).fetchall()
        for (name,) in names:
            connection.execute(
                psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(name)
                )
            )


def summary(report: dict[str, Any]) -> str:
    counts = Counter(entry["outcome"] for entry in report["outcomes"].values())
    order = ["passed", "failed", "error", "skipped", "expected_failure", "unexpected_success"]
    text = ", ".join(f"{counts[name]} {name.replace('_', ' ')}" for name in order if counts[name])
    return f"{text} in {report['elapsed']:.0f}s"


def differences(stock: dict[str, Any], aorm: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(test id, stock outcome, aorm outcome, aorm detail) for each regression on aorm."""
    found = []
    for test_id, expected in sorted(stock.items()):
        if test_id in INTENDED:
            continue
        actual = aorm.get(test_id, {"outcome": "not run", "detail": ""})
        if expected["outcome"] in GOOD and actual["outcome"] != expected["outcome"]:
            found.append((test_id, expected["outcome"], actual["outcome"], actual["detail"]))
    for test_id, actual in sorted(aorm.items()):
        if test_id not in stock and actual["outcome"] in BAD:
            found.append((test_id, "not run", actual["outcome"], actual["detail"]))
    return found


def excerpt(detail: str, lines: int) -> str:
    """The end of a traceback (where the exception is), indented."""
    text = detail.rstrip().splitlines()
    if lines and len(text) > lines:
        text = ["...", *text[-lines:]]
    return "\n".join(f"      {line}" for line in text)


def compare(database: str, tests_dir: Path, options: argparse.Namespace) -> int:
    """Run one database's two flavours and list the differences: the exit status (0, 1)."""
    version = django.get_version()
    stock_flavour, aorm_flavour = DATABASES[database]
    stock_name, aorm_name = stock_flavour.engine, aorm_flavour.engine
    started = time.monotonic()
    run = (tests_dir, options.labels, options.parallel, options.timeout)

    key = baseline_key(database, options.labels, options.parallel)
    baseline = CACHE / f"stock-{database}-{version}-{key}.json"
    if baseline.exists() and not options.refresh_baseline:
        stock = json.loads(baseline.read_text())
        say(f"{stock_name}: {summary(stock)} (cached {baseline.name})")
    else:
        say(f"{stock_name}: running {len(options.labels)} labels")
        stock = run_flavour(database, stock_flavour, *run, baseline)
        say(f"{stock_name}: {summary(stock)}")

    say(f"{aorm_name}: running {len(options.labels)} labels")
    aorm = run_flavour(database, aorm_flavour, *run, CACHE / f"aorm-{database}-{version}.json")
    say(f"{aorm_name}: {summary(aorm)}")

    broken = sum(entry["outcome"] in BAD for entry in stock["outcomes"].values())
    if broken:
        say(f"{database}: note: {broken} tests fail on {stock_name} too; they are not compared")
    found = differences(stock["outcomes"], aorm["outcomes"])
    report_path = CACHE / f"differences-{database}-{version}.txt"
    lines = [
        f"{test_id}: {expected} on {stock_name}, {actual} on {aorm_name}\n{detail}"
        for test_id, expected, actual, detail in found
    ]
    report_path.write_text("\n\n".join(lines) + "\n" if lines else "")
    elapsed = time.monotonic() - started
    if not found:
        say(
            f"{database}: OK: no test passes on {stock_name}"
            f" but not on {aorm_name} ({elapsed:.0f}s)"
        )
        return 0
    say(
        f"{database}: FAILED: {len(found)} tests pass on {stock_name}"
        f" but not on {aorm_name} ({elapsed:.0f}s):"
    )
    for test_id, expected, actual, detail in found:
        print(f"  {test_id}: {expected} -> {actual}")
        if detail:
            print(excerpt(detail, options.traceback_lines))
    print(f"  full tracebacks: {report_path.relative_to(ROOT)}, logs: .conformance/*.log")
    return 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("labels", nargs="*", default=LABELS, help="Django test labels")
    parser.add_argument(
        "--database",
        action="append",
        choices=list(DATABASES),
        help="database to compare, repeatable (default: all)",
    )
    parser.add_argument("--parallel", type=int, default=2, help="test processes (default 2)")
    parser.add_argument(
        "--timeout", type=int, default=900, help="seconds per test run (default 900)"
    )
    parser.add_argument(
        "--refresh-baseline", action="store_true", help="run Django's backend even if cached"
    )
    parser.add_argument(
        "--traceback-lines", type=int, default=12, help="lines of traceback shown (0: all)"
    )
    options = parser.parse_args()
    databases = [name for name in DATABASES if name in (options.database or DATABASES)]

    CACHE.mkdir(exist_ok=True)
    version = django.get_version()
    status = 0
    with locked(version):
        tests_dir = test_suite(version)
        for database in databases:
            reason = unavailable(database)
            if reason is not None:
                say(f"{database}: {reason}, skipped")
                if os.environ.get("CI") == "true":
                    status = max(status, 2)
                continue
            try:
                status = max(status, compare(database, tests_dir, options))
            except BrokenRun:
                say(f"{database}: FAILED: the comparison could not be made")
                status = 2
    return status


if __name__ == "__main__":
    sys.exit(main())
