"""Run the test suite once per database this machine can reach; a line of result per database.

Used by ``make test``: ``python -m tests.runner LABEL [pytest args...]``.
Under CI (``CI=true``) an unreachable PostgreSQL or MariaDB is a failure, not a
skip, and so is a MySQL driver that did not install.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys

import django

# Database -> server address to check first (None: no server, always run).
SERVERS: dict[str, tuple[str, int] | None] = {
    "postgresql": ("127.0.0.1", 5432),
    "sqlite": None,
    "mysql": ("127.0.0.1", 3306),
}
# Databases whose absence fails a CI run.
REQUIRED_IN_CI = {"postgresql", "mysql"}
# Database -> (modules, what installs them): drivers that may be missing.
DRIVERS = {
    "mysql": (("MySQLdb", "asyncmy"), "the `mysql` extra; mysqlclient needs libmariadb-dev"),
}


def reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def main() -> int:
    label, *pytest_args = sys.argv[1:] or ["tests"]
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    prefix = f"[{label}: {python}, Django {django.get_version()}]"
    failed = False
    totals = {"passed": 0, "failed": 0}
    for database, address in SERVERS.items():
        if address is not None and not reachable(*address):
            host, port = address
            print(f"{prefix} {database}: not reachable at {host}:{port}, skipped", flush=True)
            failed |= os.environ.get("CI") == "true" and database in REQUIRED_IN_CI
            continue
        modules, installer = DRIVERS.get(database, ((), ""))
        missing = [name for name in modules if importlib.util.find_spec(name) is None]
        if missing:
            names = ", ".join(missing)
            print(f"{prefix} {database}: {names} not installed ({installer}), skipped")
            failed |= os.environ.get("CI") == "true" and database in REQUIRED_IN_CI
            continue
        env = {**os.environ, "AORM_TEST_DATABASE": database}
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        sys.stdout.write(proc.stdout)
        summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
        counts = {k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|error)", summary)}
        totals["passed"] += counts.get("passed", 0)
        totals["failed"] += counts.get("failed", 0) + counts.get("error", 0)
        print(f"{prefix} {database}: {summary.strip('= ')}", flush=True)
        failed |= proc.returncode != 0
    print(f"{prefix} all databases:", flush=True)
    print(f"total: {totals['passed']} passed, {totals['failed']} failed", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
