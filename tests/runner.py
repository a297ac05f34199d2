"""Run the test suite once per database this machine can reach; a line of result per database.

Used by ``make test``: ``python -m tests.runner LABEL [pytest args...]``.
Under CI (``CI=true``) an unreachable PostgreSQL or MariaDB is a failure, not a
skip, and so is a MySQL driver that did not install.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import django
from support.services import SERVERS, unavailable

# Databases whose absence fails a CI run.
REQUIRED_IN_CI = {"postgresql", "mysql"}


def main() -> int:
    label, *pytest_args = sys.argv[1:] or ["tests"]
    python = f"Python {sys.version_info.major}.{sys.version_info.minor}"
    prefix = f"[{label}: {python}, Django {django.get_version()}]"
    failed = False
    totals = {"passed": 0, "failed": 0}
    for database in SERVERS:
        reason = unavailable(database)
        if reason is not None:
            print(f"{prefix} {database}: {reason}, skipped", flush=True)
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
