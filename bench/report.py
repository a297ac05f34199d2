"""results.md and results.png from the results ``bench/run.py`` collected."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench import common

LABELS = {
    "raw-psycopg": "raw psycopg (tuples)",
    "raw-asyncpg": "raw asyncpg (tuples)",
    "django-stock": "Django stock async",
    "aorm": "**aorm**",
    "django-async-backend": "django-async-backend",
    "tortoise": "Tortoise ORM (asyncpg)",
    "sqlalchemy": "SQLAlchemy 2 asyncio (asyncpg)",
    "django-stock-sqlite": "Django stock async, SQLite",
    "aorm-sqlite": "**aorm, SQLite**",
    "django-stock-mysql": "Django stock async, MariaDB (mysqlclient)",
    "aorm-mysql": "**aorm, MariaDB (asyncmy)**",
    "tortoise-mysql": "Tortoise ORM, MariaDB (asyncmy)",
    "sqlalchemy-mysql": "SQLAlchemy 2 asyncio, MariaDB (asyncmy)",
}


def _postgresql(contenders: list[str]) -> list[str]:
    return [n for n in contenders if not common.is_sqlite(n) and not common.is_mysql(n)]


def _sqlite(contenders: list[str]) -> list[str]:
    return [name for name in contenders if common.is_sqlite(name)]


def _mysql(contenders: list[str]) -> list[str]:
    return [name for name in contenders if common.is_mysql(name)]


def _n(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:,.1f}"


def _short(error: str, limit: int = 60) -> str:
    error = error.replace("|", "/").replace("\n", " ")
    return error if len(error) <= limit else error[: limit - 1] + "…"


def _workload_titles(sizes: dict[str, Any]) -> dict[str, str]:
    return {
        key: title.format(tasks=sizes["b_tasks"], ops=sizes["request_ops"])
        for key, title in common.WORKLOADS.items()
    }


def _micro_tables(
    results: dict[str, Any],
    contenders: list[str],
    titles: dict[str, str],
    notes: list[str],
    heading: str = "Workloads A-E",
    reference: str = "stock Django async",
) -> list[str]:
    summary, rounds = results["summary"], results["sizes"]["rounds"]
    lines = [
        "",
        f"## {heading}: operations per second (median of {rounds} round(s), [min-max])",
        "",
        "| contender | " + " | ".join(f"{k}: {t}" for k, t in titles.items()) + " |",
        "|---|" + "---:|" * len(titles),
    ]
    for name in contenders:
        cells = []
        for key in titles:
            entry = summary[name].get(key, {})
            if "ops_per_s" in entry:
                s = entry["ops_per_s"]
                cell = f"{_n(s['median'])} [{_n(s['min'])}-{_n(s['max'])}]"
                if s["n"] < rounds:
                    cell += f" ({rounds - s['n']} failed)"
            else:
                error = (entry.get("errors") or summary[name]["errors"] or ["no result"])[0]
                cell = f"FAILED: {_short(error)}"
            cells.append(cell)
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
        for error in summary[name]["errors"]:
            notes.append(f"- {name}: {error}")
        for key in titles:
            for error in summary[name].get(key, {}).get("errors", []):
                notes.append(f"- {name}, workload {key}: {error}")

    lines += _per_workload_table(
        f"{heading}: ratio to {reference} (median of per-round ratios; > 1 is faster)",
        contenders, titles, summary, "ratio", "{:.2f}x",
    )  # fmt: skip
    lines += _per_workload_table(
        f"{heading}: client CPU per operation (µs, median; all threads of the contender's process)",
        contenders, titles, summary, "cpu_us_per_op", "{:,.0f}",
    )  # fmt: skip
    return lines


def _web_table(
    workload: str, web: dict[str, Any], sizes: dict[str, Any], notes: list[str]
) -> list[str]:
    lines = [
        "",
        f"## Workload {workload}: the seeds' views under uvicorn, {common.WEB_WORKLOADS[workload]}; "
        f"{sizes['f_concurrency']} concurrent keep-alive clients (median of {sizes['f_rounds']} "
        f"round(s) of {sizes['f_requests']:,} requests)",
        "",
        "| server | view | requests/s [min-max] | x stock | p50 ms | p99 ms | peak RSS MiB "
        "| failed requests |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in common.WEB_CONTENDERS:
        for view in common.web_views(workload):
            entry = web[name][view]
            if "requests_per_s" in entry:
                s = entry["requests_per_s"]
                ratio = f"{entry['ratio']:.2f}x" if "ratio" in entry else "n/a"
                failed = entry.get("failed_requests", 0)
                lines.append(
                    f"| {LABELS.get(name, name)} | {view} | {_n(s['median'])} [{_n(s['min'])}-{_n(s['max'])}] "
                    f"| {ratio} | {entry['p50_ms']:.1f} | {entry['p99_ms']:.1f} | {entry['peak_rss_mib']:.0f} "
                    f"| {failed:,} of {entry.get('timed_requests', 0):,} |"
                )
            else:
                lines.append(f"| {LABELS.get(name, name)} | {view} | FAILED | | | | | |")
            for error in entry.get("errors", []):
                notes.append(f"- {workload} {name} {view}: {error}")
            for failure in entry.get("failures", []):
                notes.append(
                    f"- {workload} {name} {view}, failed requests: {_short(failure, 200)}"
                )
    return lines


def _per_workload_table(
    title: str,
    contenders: list[str],
    titles: dict[str, str],
    summary: dict[str, Any],
    field: str,
    number: str,
) -> list[str]:
    """A markdown table of one figure per contender and workload ("n/a" where missing)."""
    lines = ["", f"## {title}", "", "| contender | " + " | ".join(titles) + " |"]
    lines.append("|---|" + "---:|" * len(titles))
    for name in contenders:
        values = (summary[name].get(key, {}).get(field) for key in titles)
        cells = [number.format(v) if v is not None else "n/a" for v in values]
        lines.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return lines


def _produced_by(meta: dict[str, Any]) -> str:
    command = meta.get("command", "")
    if any(arg.startswith(("--only", "--no-", "--web-only")) for arg in command.split()):
        return f"`{command}`, a part of `make bench`"
    return "`make bench`" + (" QUICK=1" if meta["mode"] == "quick" else "")


def markdown(results: dict[str, Any]) -> str:
    meta, sizes = results["meta"], results["sizes"]
    m = meta["machine"]
    v = meta["versions"]
    titles = _workload_titles(sizes)
    rounds = sizes["rounds"]
    lines = [
        "# aorm benchmark: aorm against its peers",
        "",
        f"{meta['mode']} run, {meta['date']}, {meta['seconds']:.0f} s. Produced by "
        + _produced_by(meta)
        + "; see bench/README.md for what is measured and how.",
        "",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['memory']}, {m['os']}; "
        f"load average {m['load_average_at_start']} at start, {meta.get('load_average_at_end', '?')} at end "
        "(the machine is shared)",
        f"- PostgreSQL {meta['postgresql']}, database {meta['database']}, loopback TCP",
        f"- Python {m['python']}; Django {v['Django']}; aorm (django-aorm) {v['django-aorm']} with greenlet {v['greenlet']}; "
        f"psycopg {v['psycopg']} (binary {v['psycopg-binary']}), psycopg_pool {v['psycopg-pool']}; "
        f"asyncpg {v['asyncpg']}; django-async-backend {v['django-async-backend']}; "
        f"Tortoise ORM {v['tortoise-orm']}; SQLAlchemy {v['SQLAlchemy']}; asgiref {v['asgiref']}; "
        f"uvicorn {v['uvicorn']} (HTTP: {meta.get('uvicorn_http', 'httptools')}, httptools {v['httptools']}; asyncio loop)",
        f"- Pools: {meta['pool_size']} connections (min = max) for every contender on PostgreSQL "
        "(F0: no pool option); SQLite: no OPTIONS for either backend",
        f"- SQLite {meta.get('sqlite', '?')}",
        (
            f"- MariaDB {meta['mysql']}, loopback TCP; mysqlclient {v['mysqlclient']}, asyncmy "
            f"{v['asyncmy']}; pools of {meta['pool_size']} (min = max) for aorm, Tortoise and "
            "SQLAlchemy; Django's mysql backend has none (a connection per simulated request)"
            if _mysql(results["contenders"])
            else f"- MariaDB: {meta.get('mysql', 'not run')}"
        ),
        f"- A-E: {sizes['rows']:,} rows; {rounds} interleaved round(s), contender order rotated each round, "
        f"each contender in a fresh process; {sizes['request_ops']} operations per simulated request; "
        f"A {sizes['a_ops']:,} gets, B and E {sizes['b_tasks']} tasks x {sizes['request_ops']} gets, "
        f"C {sizes['c_ops']:,} lists, D {sizes['d_ops']:,} creates, each after an untimed warm-up of "
        f"{sizes['warmup_fraction']:.0%}",
    ]
    if not results["contenders"]:
        lines.pop()  # workload F only
    if meta.get("install_failures"):
        lines.append(f"- **Failed to install:** {', '.join(meta['install_failures'])}")
    notes: list[str] = []
    postgresql, sqlite = _postgresql(results["contenders"]), _sqlite(results["contenders"])
    mysql = _mysql(results["contenders"])
    if postgresql:
        lines += _micro_tables(results, postgresql, titles, notes)
    if sqlite:
        lines += _micro_tables(
            results,
            sqlite,
            {key: titles[key] for key in common.SQLITE_WORKLOADS},
            notes,
            heading="SQLite, workloads A, B, D",
            reference="stock Django async on SQLite",
        )
    if mysql:
        lines += _micro_tables(
            results,
            mysql,
            titles,
            notes,
            heading="MariaDB, workloads A-E",
            reference="stock Django async on MariaDB",
        )
    web = results.get("web_summary") or {}
    for workload in common.WEB_WORKLOADS:
        if workload in web:
            lines += _web_table(workload, web[workload], sizes, notes)
    if notes:
        lines += ["", "## Failures", "", *notes]
    lines += (
        [
            "",
            "requests/s counts successful responses; failed requests (the server's HTTP 500, its "
            "exception under Failures) are counted, not timed away.",
            "",
            "no_database (F only) answers student_list's JSON without a query: what uvicorn, "
            "Django's request handling and the load client, all on this machine, cost alone. "
            "It is the ceiling of each server's student_list here. Its x stock is the request "
            "path alone: Django closes each response through sync_to_async, in a thread it "
            "starts per request; aorm closes it on the loop.",
        ]
        if web
        else []
    )
    lines += ["", "Contenders:", ""]
    for name in results["contenders"]:
        lines.append(f"- {name}: {results['descriptions'].get(name) or 'did not start'}")
    lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary, sizes = results["summary"], results["sizes"]
    contenders = _postgresql(results["contenders"])
    sqlite = _sqlite(results["contenders"])
    mysql = _mysql(results["contenders"])
    titles = _workload_titles(sizes) if contenders else {}
    every = common.CONTENDERS + common.SQLITE_CONTENDERS
    colours = {name: plt.get_cmap("tab10")(i) for i, name in enumerate(every)}
    # On MariaDB, each library in its PostgreSQL colour.
    colours.update(
        {name: colours[name.removesuffix("-mysql")] for name in common.MYSQL_CONTENDERS}
    )
    web = results.get("web_summary") or {}
    panels = len(titles) + (1 if sqlite else 0) + (1 if mysql else 0) + len(web)
    columns = 3
    rows = (panels + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(16, 5 * rows), squeeze=False)
    flat = [ax for row in axes for ax in row]

    def bars(
        ax: Any, labels: list[str], entries: list[dict[str, float] | None], colors: list[Any]
    ) -> None:
        xs = list(range(len(labels)))
        medians = [e["median"] if e else 0.0 for e in entries]
        low = [e["median"] - e["min"] if e else 0.0 for e in entries]
        high = [e["max"] - e["median"] if e else 0.0 for e in entries]
        ax.bar(xs, medians, color=colors, yerr=[low, high], capsize=3)
        present = [m for m in medians if m > 0]
        if present and max(present) / min(present) > 12:
            ax.set_yscale("log")
        for x, m, e in zip(xs, medians, entries, strict=True):
            ax.text(
                x,
                m if m > 0 else 1,
                _n(m) if e else "failed",
                ha="center",
                va="bottom",
                fontsize=8,
            )
        ax.set_xticks(xs, labels, rotation=30, ha="right", fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    for ax, (key, title) in zip(flat, titles.items(), strict=False):
        entries = [summary[name].get(key, {}).get("ops_per_s") for name in contenders]
        bars(ax, contenders, entries, [colours[name] for name in contenders])
        ax.set_title(f"{key}: {title}", fontsize=10)
        ax.set_ylabel("operations/s (median, min-max)")
    panel = len(titles)
    # One panel per other database that ran: its contenders, workloads and title.
    databases = [
        (sqlite, common.SQLITE_WORKLOADS, "SQLite: A, B, D (stock Django vs aorm)"),
        (mysql, common.WORKLOADS, f"MariaDB: A-E, pools of {results['meta']['pool_size']}"),
    ]
    for names, workloads, title in databases:
        if not names:
            continue
        ax = flat[panel]
        panel += 1
        labels, entries, colors = [], [], []
        for key in workloads:
            for name in names:
                labels.append(f"{key}: {name.removesuffix('-mysql')}")
                entries.append(summary[name].get(key, {}).get("ops_per_s"))
                colors.append(colours[name])
        bars(ax, labels, entries, colors)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel("operations/s (median, min-max)")
    for workload in common.WEB_WORKLOADS:
        if workload not in web:
            continue
        ax = flat[panel]
        panel += 1
        labels, entries, colors = [], [], []
        for view in common.web_views(workload):
            for name in common.WEB_CONTENDERS:
                labels.append(f"{name}\n{view}")
                entries.append(web[workload][name][view].get("requests_per_s"))
                colors.append(colours[name])
        bars(ax, labels, entries, colors)
        ax.set_title(
            f"{workload}: seeds' views under uvicorn, {sizes['f_concurrency']} concurrent, "
            f"{'pools of ' + str(results['meta']['pool_size']) if workload == 'F' else 'no pool option, startproject middleware'}",
            fontsize=10,
        )
        ax.set_ylabel("requests/s (median, min-max)")
    for ax in flat[panels:]:
        ax.axis("off")
    meta = results["meta"]
    servers = [f"PostgreSQL {meta['postgresql']}"] if contenders or web else []
    servers += ["SQLite"] if sqlite else []
    servers += [f"MariaDB {meta['mysql'].split()[0]}"] if mysql else []
    fig.suptitle(
        f"aorm vs peers on {', '.join(servers)} — {meta['machine']['cpu']}, "
        f"{meta['machine']['cores']} cores, pools of {meta['pool_size']} ({meta['mode']} run)",
        fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
