"""aorm against every peer, on PostgreSQL, SQLite and MariaDB: ``make bench`` runs this.

    python -m bench.run [--quick] [--out DIR] [--only a,b] [--no-web] [--no-sqlite]
                        [--no-mysql] [--keep-db]

1. Creates the database ``aorm_bench`` (dropped at the end), seeds 10,000
   students; the same in a SQLite file for the SQLite column, and in a
   MariaDB database of the same name for the MariaDB table (skipped, and
   said so, when no MariaDB server answers).
2. Workloads A-E: in each round, every contender runs in a fresh subprocess
   (``bench/worker.py``), one after the other, the order rotated by one each
   round; the table is reset between contenders (rows created by D removed).
   Stock Django and aorm on SQLite run A, B and D in the same rounds; stock
   Django, aorm, Tortoise and SQLAlchemy on MariaDB run A-E in them too.
3. Workloads F and F0: the seeds' views under uvicorn, aorm and stock Django,
   with a pool of 10 for both (F) and with the settings a user writes first
   (F0: no pool option, startproject's middleware), loaded at a
   fixed concurrency by ``bench/load.py``, in rounds as well.
4. Writes results.json, results.md and results.png to ``--out``
   (bench/results, or bench/results/quick with ``--quick``).

A contender whose subprocess fails (not installed, crashed, timed out) is
reported with its error in the table, never dropped.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from support.services import free_port, wait_for_port

from bench import common, db, load, report

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
INSTALL_FAILURES = BENCH / ".venv" / "install-failures.txt"
# uvicorn's C HTTP parser when installed (bench/.venv has it), else its pure-Python h11.
HTTP_IMPLEMENTATION = "httptools" if importlib.util.find_spec("httptools") else "h11"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def rotated(items: list[str], by: int) -> list[str]:
    by %= len(items)
    return items[by:] + items[:by]


def environment() -> dict[str, str]:
    # aorm from this checkout's src/, wherever bench/.venv's editable install points.
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    return env


# Workloads A-E.


def run_worker(name: str, sizes: common.Sizes, seed: int) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench.worker", name, json.dumps(sizes.to_json()), str(seed)]
    try:
        proc = subprocess.run(
            command,
            cwd=ROOT,
            env=environment(),
            capture_output=True,
            text=True,
            timeout=sizes.worker_timeout,
        )
    except subprocess.TimeoutExpired:
        return {
            "contender": name,
            "workloads": {},
            "error": f"timed out after {sizes.worker_timeout:g}s",
        }
    for line in proc.stdout.splitlines():
        if line.startswith("BENCH-RESULT "):
            result: dict[str, Any] = json.loads(line[len("BENCH-RESULT ") :])
            if proc.stderr.strip():
                result["stderr"] = proc.stderr[-3000:]
            return result
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return {"contender": name, "workloads": {}, "error": f"exit {proc.returncode}: {tail[:300]}"}


def run_micro(contenders: list[str], sizes: common.Sizes) -> list[dict[str, Any]]:
    rounds = []
    for number in range(sizes.rounds):
        order = rotated(contenders, number)
        log(f"round {number + 1}/{sizes.rounds} (A-E): {', '.join(order)}")
        results = {}
        for name in order:
            if common.is_sqlite(name):
                db.sqlite_reset(sizes.rows)
            elif common.is_mysql(name):
                db.mysql_reset(sizes.rows)
            else:
                db.reset(sizes.rows)
            started = time.perf_counter()
            results[name] = outcome = run_worker(name, sizes, seed=1000 + number)
            spent = time.perf_counter() - started
            summary = ", ".join(
                f"{key} {value['ops_per_s']:.0f}/s" if "ops_per_s" in value else f"{key} FAILED"
                for key, value in outcome["workloads"].items()
            )
            log(f"  {name}: {outcome.get('error') or summary} ({spent:.1f}s)")
        rounds.append({"round": number + 1, "order": order, "results": results})
    return rounds


# Workload F.


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def uvicorn_server(mode: str, pool: str) -> Iterator[tuple[int, int, dict[str, str]]]:
    """Serve the web app with ``mode``'s backend; yield (port, pid, info); info["stderr"] after."""
    port = free_port()
    env = {
        **environment(),
        "BENCH_DJANGO": mode,
        "BENCH_POOL": pool,
        "DJANGO_SETTINGS_MODULE": "bench.djsettings",
    }
    command = [
        sys.executable, "-m", "uvicorn", "bench.webapp.asgi:application",
        "--host", "127.0.0.1", "--port", str(port),
        "--loop", "asyncio", "--http", HTTP_IMPLEMENTATION,
        "--log-level", "warning", "--no-access-log", "--backlog", "2048",
    ]  # fmt: skip
    info: dict[str, str] = {}
    proc = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        wait_for_port(port, proc, seconds=30)
        yield port, proc.pid, info
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        try:
            info["stderr"] = proc.communicate(timeout=20)[1]
        except subprocess.TimeoutExpired:
            proc.kill()
            info["stderr"] = proc.communicate()[1]


def run_view(mode: str, pool: str, view: str, sizes: common.Sizes) -> dict[str, Any]:
    db.reset_web()
    path = common.WEB_VIEWS[view]
    try:
        with uvicorn_server(mode, pool) as (port, pid, info):
            warm = asyncio.run(
                load.run("127.0.0.1", port, path, sizes.f_warmup, sizes.f_concurrency)
            )
            timed = asyncio.run(
                load.run("127.0.0.1", port, path, sizes.f_requests, sizes.f_concurrency)
            )
            rss = peak_rss_kib(pid)
        stderr = info.get("stderr", "")
    except Exception as exc:
        return {"error": f"{type(exc).__name__}: {exc}"[:300]}
    outcome: dict[str, Any] = {
        "requests": timed.requests,
        "errors": timed.errors,
        "warmup_errors": warm.errors,
        "seconds": timed.seconds,
        "requests_per_s": timed.requests_per_s,
        "p50_ms": timed.percentile(50) * 1000,
        "p99_ms": timed.percentile(99) * 1000,
        "peak_rss_mib": rss / 1024,
    }
    if timed.errors or warm.errors:
        # Failed requests (HTTP 500: the server's own error, logged on its
        # stderr) are counted and reported, not hidden: requests/s counts
        # successful responses only.
        outcome["failure"] = _server_error(stderr) or timed.first_error or warm.first_error
    if stderr and "Traceback" in stderr:
        outcome["stderr"] = stderr[-2000:]
    return outcome


def _server_error(stderr: str) -> str:
    """The last exception line the server logged (``ExceptionClass: message``)."""
    for line in reversed(stderr.splitlines()):
        head = line.split(":", 1)[0]
        if (
            ": " in line
            and head.replace(".", "").isidentifier()
            and head.endswith(("Error", "Exception"))
        ):
            return line.strip()[:300]
    return ""


def run_web(sizes: common.Sizes) -> list[dict[str, Any]]:
    """Rounds of F and F0; each round's order of (workload, server) pairs rotated."""
    pairs = [
        f"{workload} {name}" for workload in common.WEB_WORKLOADS for name in common.WEB_CONTENDERS
    ]
    rounds = []
    for number in range(sizes.f_rounds):
        order = rotated(pairs, number)
        log(f"round {number + 1}/{sizes.f_rounds} (F, F0): {', '.join(order)}")
        results: dict[str, dict[str, dict[str, Any]]] = {w: {} for w in common.WEB_WORKLOADS}
        for pair in order:
            workload, name = pair.split(" ")
            mode = "stock" if name == "django-stock" else "aorm"
            results[workload][name] = {}
            for view in common.web_views(workload):
                pool = common.WEB_POOL[workload]
                results[workload][name][view] = outcome = run_view(mode, pool, view, sizes)
                log(
                    f"  {workload} {name} {view}: "
                    + (
                        outcome.get("error")
                        or f"{outcome['requests_per_s']:.0f} req/s, p50 {outcome['p50_ms']:.1f} ms, "
                        f"p99 {outcome['p99_ms']:.1f} ms, peak RSS {outcome['peak_rss_mib']:.0f} MiB"
                        + (
                            f", {outcome['errors']} failed ({outcome['failure']})"
                            if outcome.get("failure")
                            else ""
                        )
                    )
                )
        rounds.append({"round": number + 1, "order": order, "results": results})
    return rounds


# Summaries.


def spread(values: list[float]) -> dict[str, float]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
    }


def summarise_micro(rounds: list[dict[str, Any]], contenders: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for name in contenders:
        summary[name] = {
            "errors": sorted(
                {r["results"][name]["error"] for r in rounds if r["results"][name].get("error")}
            )
        }
        reference = common.reference_of(name)
        for key in common.workloads_of(name):
            values, ratios, cpu, errors = [], [], [], set()
            for r in rounds:
                mine = r["results"][name]["workloads"].get(key, {})
                if "ops_per_s" not in mine:
                    if "error" in mine:
                        errors.add(mine["error"])
                    continue
                values.append(mine["ops_per_s"])
                cpu.append(mine["cpu_us_per_op"])
                theirs = r["results"].get(reference, {}).get("workloads", {}).get(key, {})
                if "ops_per_s" in theirs:
                    ratios.append(mine["ops_per_s"] / theirs["ops_per_s"])
            entry: dict[str, Any] = {"errors": sorted(errors)}
            if values:
                entry["ops_per_s"] = spread(values)
                entry["cpu_us_per_op"] = statistics.median(cpu)
            if ratios:
                entry["ratio"] = statistics.median(ratios)
            summary[name][key] = entry
    return summary


def summarise_web(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per web workload (F, F0), server and view: medians, and the ratio to stock per round."""
    summary: dict[str, Any] = {}
    for workload in common.WEB_WORKLOADS:
        summary[workload] = {}
        for name in common.WEB_CONTENDERS:
            summary[workload][name] = {}
            for view in common.web_views(workload):
                runs = [r["results"][workload][name][view] for r in rounds]
                good = [run for run in runs if "requests_per_s" in run and not run.get("error")]
                entry: dict[str, Any] = {
                    "errors": sorted({run["error"] for run in runs if run.get("error")}),
                    "failed_requests": sum(run.get("errors", 0) for run in good),
                    "timed_requests": sum(run["requests"] + run["errors"] for run in good),
                    "failures": sorted({run["failure"] for run in good if run.get("failure")}),
                }
                if good:
                    entry["requests_per_s"] = spread([run["requests_per_s"] for run in good])
                    entry["p50_ms"] = statistics.median(run["p50_ms"] for run in good)
                    entry["p99_ms"] = statistics.median(run["p99_ms"] for run in good)
                    entry["peak_rss_mib"] = max(run["peak_rss_mib"] for run in good)
                ratios = []
                for r in rounds:
                    mine = r["results"][workload][name][view]
                    theirs = r["results"][workload][common.REFERENCE][view]
                    if (
                        "requests_per_s" in mine
                        and "requests_per_s" in theirs
                        and not mine.get("error")
                        and not theirs.get("error")
                    ):
                        ratios.append(mine["requests_per_s"] / theirs["requests_per_s"])
                if ratios:
                    entry["ratio"] = statistics.median(ratios)
                summary[workload][name][view] = entry
    return summary


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError), open("/proc/meminfo") as info:
        memory = f"{int(info.readline().split()[1]) / 1024**2:.0f} GiB"
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_average_at_start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
    }


def package_versions() -> dict[str, str]:
    found = {}
    for name in ["Django", "django-aorm", "greenlet", "psycopg", "psycopg-binary", "psycopg-pool",
                 "asyncpg", "django-async-backend", "tortoise-orm", "SQLAlchemy", "asgiref",
                 "uvicorn", "httptools", "mysqlclient", "asyncmy"]:  # fmt: skip
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    return found


def mysql_server(contenders: list[str]) -> str:
    """MariaDB's version and address, or why its contenders are left out of this run."""
    where = f"{common.MYSQL_HOST}:{common.MYSQL_PORT}"
    if not any(common.is_mysql(name) for name in contenders):
        return "not run"
    try:
        found = f"{db.mysql_server_version()} at {where}, database {common.DBNAME}"
    except Exception as exc:
        log(f"MariaDB not reachable at {where}, its table is skipped: {exc}")
        return f"not reachable at {where} ({type(exc).__name__}: {exc})"[:300]
    log(f"MariaDB {found}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: small sizes, one round")
    parser.add_argument("--out", type=Path, help="results directory")
    parser.add_argument("--only", help="comma-separated contenders for A-E (default: all)")
    parser.add_argument("--no-web", action="store_true", help="skip workloads F and F0")
    parser.add_argument("--web-only", action="store_true", help="only workloads F and F0")
    parser.add_argument("--no-sqlite", action="store_true", help="skip the SQLite column")
    parser.add_argument("--no-mysql", action="store_true", help="skip the MariaDB table")
    parser.add_argument("--keep-db", action="store_true", help="do not drop the bench database")
    args = parser.parse_args()

    sizes = common.QUICK if args.quick else common.FULL
    out = args.out or (BENCH / "results" / ("quick" if args.quick else ""))
    every = (
        common.CONTENDERS
        + ([] if args.no_sqlite else common.SQLITE_CONTENDERS)
        + ([] if args.no_mysql else common.MYSQL_CONTENDERS)
    )
    contenders = args.only.split(",") if args.only else every
    known = common.CONTENDERS + common.SQLITE_CONTENDERS + common.MYSQL_CONTENDERS
    unknown = set(contenders) - set(known)
    if unknown:
        parser.error(f"unknown contenders: {', '.join(sorted(unknown))}")

    started = time.perf_counter()
    try:
        log(f"PostgreSQL {db.server_version()} at {common.HOST}:{common.PORT}")
    except Exception as exc:
        log(f"PostgreSQL not reachable at {common.HOST}:{common.PORT}: {exc}")
        return 2
    mysql = mysql_server(contenders)
    if mysql.startswith("not reachable"):
        contenders = [name for name in contenders if not common.is_mysql(name)]
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "mode": "quick" if args.quick else "full",
        "command": " ".join(["python -m bench.run", *sys.argv[1:]]),
        "machine": machine(),
        "postgresql": db.server_version(),
        "database": f"{common.DBNAME} at {common.HOST}:{common.PORT}",
        "pool_size": common.POOL_SIZE,
        "sqlite": f"{sqlite3.sqlite_version}, file {common.SQLITE_FILE} (WAL)",
        "mysql": mysql,
        "uvicorn_http": HTTP_IMPLEMENTATION,
        "versions": package_versions(),
        "install_failures": INSTALL_FAILURES.read_text().split()
        if INSTALL_FAILURES.exists()
        else [],
    }
    log(f"creating {common.DBNAME} with {sizes.rows} students")
    db.create(sizes.rows)
    if any(common.is_sqlite(name) for name in contenders):
        db.sqlite_create(sizes.rows)
    on_mysql = any(common.is_mysql(name) for name in contenders)
    if on_mysql:
        db.mysql_create(sizes.rows)
    try:
        micro = [] if args.web_only else run_micro(contenders, sizes)
        web = [] if args.no_web else run_web(sizes)
    finally:
        if not args.keep_db:
            db.drop()
            db.sqlite_drop()
            if on_mysql:
                db.mysql_drop()
    meta["load_average_at_end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    meta["seconds"] = round(time.perf_counter() - started, 1)
    results = {
        "meta": meta,
        "sizes": sizes.to_json(),
        "contenders": contenders if micro else [],
        "descriptions": {
            name: next(
                (
                    r["results"][name].get("description")
                    for r in micro
                    if r["results"][name].get("description")
                ),
                "",
            )
            for name in contenders
        },
        "rounds": micro,
        "summary": summarise_micro(micro, contenders) if micro else {},
        "web_rounds": web,
        "web_summary": summarise_web(web) if web else {},
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    (out / "results.md").write_text(report.markdown(results))
    try:
        report.chart(results, out / "results.png")
    except Exception as exc:  # matplotlib missing: the table still stands
        log(f"no chart: {type(exc).__name__}: {exc}")
    log(f"done in {meta['seconds']:.0f}s: {out / 'results.md'}")
    print(report.markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
