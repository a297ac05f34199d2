"""The bench database: created, seeded, reset between contenders, dropped; all by the bench."""

from __future__ import annotations

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
