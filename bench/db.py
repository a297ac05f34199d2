"""The bench database: created, seeded, reset between contenders, dropped; all by the bench."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from typing import Any

import psycopg

from bench import common


def server_version() -> str:
    with psycopg.connect(common.dsn("postgres"), autocommit=True) as conn:
        return str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]


def create(rows: int) -> None:
    """(Re)create ``common.DBNAME`` with both tables, ``rows`` students, the wait function."""
    with psycopg.connect(common.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {common.DBNAME} WITH (FORCE)")
        conn.execute(f"CREATE DATABASE {common.DBNAME}")
    with psycopg.connect(common.dsn(), autocommit=True) as conn:
        conn.execute(common.SCHEMA)
        conn.execute(
            f"INSERT INTO {common.TABLE} (name, age) "
            "SELECT 'student-' || i, 18 + i %% 12 FROM generate_series(1, %s) AS i",
            (rows,),
        )
        conn.execute(f"VACUUM ANALYZE {common.TABLE}")
    reset_web()


def reset(rows: int) -> None:
    """Remove what a contender's creates added: every contender starts on the same table."""
    with psycopg.connect(common.dsn(), autocommit=True) as conn:
        conn.execute(f"DELETE FROM {common.TABLE} WHERE id > %s", (rows,))
        conn.execute(f"VACUUM ANALYZE {common.TABLE}")


def reset_web() -> None:
    """The seeds' table for workload F: WEB_ROWS students, ids from 1."""
    with psycopg.connect(common.dsn(), autocommit=True) as conn:
        conn.execute(f"TRUNCATE {common.WEB_TABLE} RESTART IDENTITY")
        conn.execute(
            f"INSERT INTO {common.WEB_TABLE} (name, age) "
            "SELECT 'student-' || i, 18 + i %% 12 FROM generate_series(1, %s) AS i",
            (common.WEB_ROWS,),
        )
        conn.execute(f"VACUUM ANALYZE {common.WEB_TABLE}")


def drop() -> None:
    with psycopg.connect(common.dsn("postgres"), autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {common.DBNAME} WITH (FORCE)")


# The SQLite column: the same table in a file, in WAL mode (a property of the
# file: both backends use it).


def sqlite_create(rows: int) -> None:
    sqlite_drop()
    with contextlib.closing(sqlite3.connect(common.SQLITE_FILE)) as conn:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            f"CREATE TABLE {common.TABLE} (id integer NOT NULL PRIMARY KEY AUTOINCREMENT, "
            "name varchar(100) NOT NULL, age integer NOT NULL)"
        )
        conn.executemany(
            f"INSERT INTO {common.TABLE} (name, age) VALUES (?, ?)",
            ((f"student-{i}", 18 + i % 12) for i in range(1, rows + 1)),
        )
        conn.commit()
        conn.execute("ANALYZE")


def sqlite_reset(rows: int) -> None:
    with contextlib.closing(sqlite3.connect(common.SQLITE_FILE)) as conn:
        conn.execute(f"DELETE FROM {common.TABLE} WHERE id > ?", (rows,))
        conn.commit()
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")


def sqlite_drop() -> None:
    for suffix in ("", "-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(common.SQLITE_FILE + suffix)


# The MariaDB table: the same table and wait function in a MariaDB (or MySQL)
# database, through mysqlclient, the driver of stock Django's contender.


@contextlib.contextmanager
def _mysql(dbname: str | None = common.DBNAME) -> Iterator[Any]:
    import MySQLdb

    params = {"host": common.MYSQL_HOST, "port": common.MYSQL_PORT, "user": common.MYSQL_USER}
    conn = MySQLdb.connect(**params, **({"database": dbname} if dbname else {}), autocommit=True)
    try:
        yield conn.cursor()
    finally:
        conn.close()


def mysql_server_version() -> str:
    with _mysql(None) as cursor:
        cursor.execute("SELECT VERSION()")
        return str(cursor.fetchone()[0])


def mysql_create(rows: int) -> None:
    """(Re)create ``common.DBNAME`` on MariaDB with ``rows`` students and the wait function."""
    with _mysql(None) as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {common.DBNAME}")
        cursor.execute(f"CREATE DATABASE {common.DBNAME} CHARACTER SET utf8mb4")
    with _mysql() as cursor:
        for statement in common.MYSQL_SCHEMA:
            cursor.execute(statement)
        cursor.executemany(
            f"INSERT INTO {common.TABLE} (name, age) VALUES (%s, %s)",
            [(f"student-{i}", 18 + i % 12) for i in range(1, rows + 1)],
        )
        cursor.execute(f"ANALYZE TABLE {common.TABLE}")
        cursor.fetchall()


def mysql_reset(rows: int) -> None:
    with _mysql() as cursor:
        cursor.execute(f"DELETE FROM {common.TABLE} WHERE id > %s", (rows,))
        cursor.execute(f"ANALYZE TABLE {common.TABLE}")
        cursor.fetchall()


def mysql_drop() -> None:
    with _mysql(None) as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {common.DBNAME}")
