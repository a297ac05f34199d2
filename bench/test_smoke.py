"""``make bench QUICK=1`` as a test: every contender is reported, every output is written.

Runs ``python -m bench.run --quick`` in a subprocess, on its own database
(``aorm_bench_smoke``), into a temporary directory. In ``bench/.venv`` every
contender must produce numbers; in an environment without the peers
installed (the project's .venv) they must be reported as failed, never
dropped. aorm and stock Django must produce numbers everywhere. The MariaDB
table is there when a MariaDB server answers, and said to be skipped when not.

    bench/.venv/bin/python -m pytest bench          # after `make bench` (or QUICK=1)
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench import common  # noqa: E402

# Contenders that need more than aorm's own dependencies: the modules they import.
PEERS = {
    "raw-asyncpg": ("asyncpg",),
    "django-async-backend": ("django_async_backend",),
    "tortoise": ("tortoise",),
    "sqlalchemy": ("sqlalchemy",),
    "django-stock-mysql": ("MySQLdb",),
    "aorm-mysql": ("MySQLdb", "asyncmy"),
    "tortoise-mysql": ("tortoise", "asyncmy"),
    "sqlalchemy-mysql": ("sqlalchemy", "asyncmy"),
}


def _installed(name: str) -> bool:
    return all(importlib.util.find_spec(module) for module in PEERS.get(name, ()))


def _postgres_reachable() -> bool:
    try:
        import psycopg

        psycopg.connect(common.dsn("postgres"), connect_timeout=3).close()
    except Exception:
        return False
    return True


def _mysql_reachable() -> bool:
    try:
        from bench import db

        db.mysql_server_version()
    except Exception:
        return False
    return True


pytestmark = pytest.mark.skipif(
    not _postgres_reachable(), reason=f"PostgreSQL not reachable at {common.HOST}:{common.PORT}"
)


def test_quick_bench_reports_every_contender(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "BENCH_DB": "aorm_bench_smoke",
        "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)
    proc = subprocess.run(
        [sys.executable, "-m", "bench.run", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=360,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    markdown = (tmp_path / "results.md").read_text()

    on_mysql = _mysql_reachable()
    mysql = common.MYSQL_CONTENDERS if on_mysql else []
    assert results["contenders"] == common.CONTENDERS + common.SQLITE_CONTENDERS + mysql
    for name in results["contenders"]:
        summary = results["summary"][name]
        must_work = _installed(name)
        for key in common.workloads_of(name):
            entry = summary[key]
            if must_work:
                assert "ops_per_s" in entry, (name, key, entry, summary["errors"])
                assert entry["ops_per_s"]["median"] > 0
            else:  # reported as failed, with its reason
                assert "ops_per_s" in entry or entry["errors"] or summary["errors"], (name, key)
    for label in [
        "Django stock async",
        "**aorm**",
        "django-async-backend",
        "Tortoise",
        "SQLAlchemy",
        "SQLite, workloads A, B, D",
        "**aorm, SQLite**",
        "Workload F0",
    ]:
        assert label in markdown
    if on_mysql:
        assert "MariaDB, workloads A-E" in markdown
        assert "**aorm, MariaDB (asyncmy)**" in markdown
    else:
        assert "MariaDB: not reachable" in markdown
    assert "FAILED" not in markdown or not all(_installed(name) for name in PEERS), markdown

    for workload in common.WEB_WORKLOADS:
        for name in common.WEB_CONTENDERS:
            for view in common.web_views(workload):
                entry = results["web_summary"][workload][name][view]
                assert entry["requests_per_s"]["median"] > 0, (workload, name, view, entry)
                assert entry["p99_ms"] >= entry["p50_ms"] > 0
                assert entry["peak_rss_mib"] > 10
    if importlib.util.find_spec("matplotlib") is not None:
        assert (tmp_path / "results.png").stat().st_size > 10_000
