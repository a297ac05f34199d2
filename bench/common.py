"""What every part of the benchmark agrees on: the database, the table, the SQL, the sizes.

The driver (``bench/run.py``) and the worker subprocesses (``bench/worker.py``)
import this module; the worker gets the sizes as JSON on its command line, so
a quick run and a full run use exactly the same code.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass

HOST = os.environ.get("BENCH_PGHOST", "127.0.0.1")
PORT = int(os.environ.get("BENCH_PGPORT", "5432"))
USER = os.environ.get("BENCH_PGUSER", "postgres")
DBNAME = os.environ.get("BENCH_DB", "aorm_bench")
# The MariaDB (or MySQL) server of the MariaDB table: the database of the same name.
MYSQL_HOST = os.environ.get("BENCH_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("BENCH_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("BENCH_MYSQL_USER", "root")

# Every contender that pools gets a pool of this size (min = max: no
# connection is opened inside a timed section, after the warm-up).
POOL_SIZE = int(os.environ.get("BENCH_POOL_SIZE", "10"))

TABLE = "bench_student"  # workloads A-E: `rows` students
WEB_TABLE = "students_student"  # workload F: the students app's Student, WEB_ROWS rows
WEB_ROWS = 100

# The same SQL shape for every contender. ORMs generate their own spelling of
# it (Django adds LIMIT 21 to get(), Tortoise LIMIT 2); raw drivers send these.
SQL_GET = f"SELECT id, name, age FROM {TABLE} WHERE id = %s"
SQL_LIST = f"SELECT id, name, age FROM {TABLE} WHERE id >= %s ORDER BY id LIMIT 100"
SQL_CREATE = f"INSERT INTO {TABLE} (name, age) VALUES (%s, %s) RETURNING id"
# Workload E: the same get, and the server waits 2 ms before answering.
WAIT_FUNCTION = "bench_wait()"
SQL_GET_WAIT = f"SELECT id, name, age, {WAIT_FUNCTION} FROM {TABLE} WHERE id = %s"

SCHEMA = f"""
CREATE TABLE {TABLE} (
    id bigserial PRIMARY KEY,
    name varchar(100) NOT NULL,
    age integer NOT NULL
);
CREATE TABLE {WEB_TABLE} (
    id bigserial PRIMARY KEY,
    name varchar(100) NOT NULL,
    age integer NOT NULL
);
-- 2 ms of server-side waiting per call, returning true: used in the SELECT
-- list of workload E's get, so it runs once per returned row.
CREATE FUNCTION bench_wait() RETURNS boolean LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_sleep(0.002);
    RETURN true;
END $$;
"""


# The same table and wait function on MariaDB (INSERT ... RETURNING: MariaDB 10.5+).
MYSQL_SCHEMA = [
    f"""CREATE TABLE {TABLE} (
        id bigint AUTO_INCREMENT PRIMARY KEY,
        name varchar(100) NOT NULL,
        age integer NOT NULL
    ) ENGINE=InnoDB""",
    """CREATE FUNCTION bench_wait() RETURNS boolean NOT DETERMINISTIC NO SQL
    BEGIN
        DO SLEEP(0.002);
        RETURN true;
    END""",
]


def dsn(dbname: str = DBNAME) -> str:
    return f"host={HOST} port={PORT} user={USER} dbname={dbname}"


def asyncpg_url(scheme: str = "postgresql") -> str:
    return f"{scheme}://{USER}@{HOST}:{PORT}/{DBNAME}"


def mysql_url(scheme: str) -> str:
    return f"{scheme}://{MYSQL_USER}@{MYSQL_HOST}:{MYSQL_PORT}/{DBNAME}"


@dataclass(frozen=True)
class Sizes:
    """How much work one run does: :data:`FULL` for ``make bench``, :data:`QUICK` for its
    smoke run, each size described in ``_SIZES``."""

    rows: int
    rounds: int
    request_ops: int
    a_ops: int
    b_tasks: int
    c_ops: int
    d_ops: int
    warmup_fraction: float
    f_rounds: int
    f_requests: int
    f_warmup: int
    f_concurrency: int
    worker_timeout: float

    def to_json(self) -> dict[str, object]:
        return asdict(self)


# Each size: (FULL, QUICK), and what it counts.
_SIZES = {
    "rows": (10_000, 1000),  # students in bench_student
    "rounds": (5, 1),  # interleaved rounds of workloads A-E
    "request_ops": (20, 5),  # operations per simulated request (A, C, D; and per task in B, E)
    "a_ops": (2000, 100),  # A: sequential gets
    "b_tasks": (100, 20),  # B and E: concurrent tasks, each one request of request_ops gets
    "c_ops": (300, 20),  # C: 100-row list queries
    "d_ops": (1000, 50),  # D: single-row creates
    "warmup_fraction": (0.15, 0.2),  # untimed warm-up before each timed run, as a share of it
    "f_rounds": (3, 1),  # rounds of workload F
    "f_requests": (2000, 200),  # F: timed HTTP requests per view per server
    "f_warmup": (300, 50),  # F: untimed requests first
    "f_concurrency": (100, 20),  # F: requests in flight
    "worker_timeout": (240, 60),  # seconds before a contender's subprocess is killed
}
FULL = Sizes(**{name: full for name, (full, _) in _SIZES.items()})
QUICK = Sizes(**{name: quick for name, (_, quick) in _SIZES.items()})

# The contenders of workloads A-E on PostgreSQL, in the order of the output table.
CONTENDERS = [
    "raw-psycopg",
    "raw-asyncpg",
    "django-stock",
    "aorm",
    "django-async-backend",
    "tortoise",
    "sqlalchemy",
]
REFERENCE = "django-stock"

# The SQLite column: stock Django and aorm on the same SQLite file (WAL mode,
# which aorm sets by default and the file keeps), each with the settings a
# user writes first (no OPTIONS: aorm's default pool; stock Django's
# connection per request). Workloads A, B and D (no server to wait on in E).
SQLITE_CONTENDERS = ["django-stock-sqlite", "aorm-sqlite"]
SQLITE_REFERENCE = "django-stock-sqlite"
SQLITE_WORKLOADS = ("A", "B", "D")
SQLITE_FILE = os.environ.get(
    "BENCH_SQLITE", os.path.join(tempfile.gettempdir(), f"{DBNAME}.sqlite3")
)


# The MariaDB table: workloads A-E on the same table in a MariaDB database,
# stock Django (mysqlclient), aorm, Tortoise and SQLAlchemy (all three on
# asyncmy), in the same rounds as the PostgreSQL contenders. Every pool is
# POOL_SIZE; Django's mysql backend has no pool (a connection per request).
MYSQL_CONTENDERS = ["django-stock-mysql", "aorm-mysql", "tortoise-mysql", "sqlalchemy-mysql"]
MYSQL_REFERENCE = "django-stock-mysql"


def is_sqlite(name: str) -> bool:
    return name in SQLITE_CONTENDERS


def is_mysql(name: str) -> bool:
    return name in MYSQL_CONTENDERS


def reference_of(name: str) -> str:
    if is_mysql(name):
        return MYSQL_REFERENCE
    return SQLITE_REFERENCE if is_sqlite(name) else REFERENCE


def workloads_of(name: str) -> tuple[str, ...]:
    return SQLITE_WORKLOADS if is_sqlite(name) else tuple(WORKLOADS)


WORKLOADS = {
    "A": "get by pk, sequential",
    "B": "get by pk, {tasks} tasks x {ops} concurrent",
    "C": "100-row list, hydrated",
    "D": "single-row create",
    "E": "B with 2 ms server wait per query",
}

# Workload F: the seeds' views served by uvicorn, aorm against stock Django,
# with a pool of POOL_SIZE for both and no middleware (F), and with the
# settings a user writes first (F0): no OPTIONS["pool"], CONN_MAX_AGE = 0 and
# startproject's middleware.
WEB_CONTENDERS = ["django-stock", "aorm"]
WEB_VIEWS = {
    "student_list": "/students/",
    "example_view": "/example/",
    # student_list's response without its query: what uvicorn, Django and the
    # load client cost alone on this machine, the ceiling of F for any ORM.
    "no_database": "/no-database/",
}
WEB_WORKLOADS = {
    "F": f"pool of {POOL_SIZE} for both, no middleware",
    "F0": (
        "the settings a user writes first for both: no pool option (CONN_MAX_AGE = 0), "
        "startproject's seven middleware"
    ),
}
# BENCH_POOL for each web workload (read by djsettings.py).
WEB_POOL = {"F": "sized", "F0": "unset"}


def web_views(workload: str) -> list[str]:
    """The views a web workload loads: the ceiling once, in F (it makes no query)."""
    return [view for view in WEB_VIEWS if workload == "F" or view != "no_database"]
