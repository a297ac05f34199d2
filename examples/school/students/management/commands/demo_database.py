"""``manage.py demo_database --create | --drop``: the demo's database, made or removed.

``make demo`` runs ``--create`` first, so that a ``DATABASE_URL`` naming a
PostgreSQL database that does not exist is created (or, when that is not
allowed, the demo stops at once with the command that creates it) instead of
waiting on a pool that cannot connect. ``make demo-reset`` runs ``--drop``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

# Seconds to wait for a PostgreSQL server before saying it is not there.
CONNECT_TIMEOUT = 3


class Command(BaseCommand):
    help = "Create (--create) or remove (--drop) the database the demo's DATABASE_URL names."

    def add_arguments(self, parser: CommandParser) -> None:
        action = parser.add_mutually_exclusive_group(required=True)
        action.add_argument("--create", action="store_true", help="create it if it is missing")
        action.add_argument("--drop", action="store_true", help="remove it and its data")

    def handle(self, *args: Any, **options: Any) -> None:
        settings = connections["default"].settings_dict
        vendor = connections["default"].vendor
        if vendor == "sqlite":
            self.sqlite(Path(settings["NAME"]), drop=options["drop"])
        elif vendor == "postgresql":
            self.postgresql(settings, drop=options["drop"])
        else:
            self.stdout.write(f"{vendor}: create or drop the database with your server's tools.")

    def sqlite(self, path: Path, *, drop: bool) -> None:
        """SQLite creates its file on first use; dropping removes it with its WAL files."""
        if str(path) == ":memory:":
            return
        if not drop:
            if not path.parent.is_dir():
                raise CommandError(
                    f"{path.parent} does not exist: create it (mkdir -p {path.parent}) or "
                    "point DATABASE_URL elsewhere"
                )
            return
        removed = [
            p for p in (path, *(Path(f"{path}{s}") for s in ("-wal", "-shm"))) if p.exists()
        ]
        for file in removed:
            file.unlink()
        self.stdout.write(f"Removed {path}." if removed else f"{path}: no such file.")

    def postgresql(self, settings: dict[str, Any], *, drop: bool) -> None:
        import psycopg
        from psycopg import sql

        name = settings["NAME"]
        host, port, user = (
            settings["HOST"] or "localhost",
            settings["PORT"] or "5432",
            settings["USER"],
        )
        createdb = f"createdb -h {host} -p {port}{f' -U {user}' if user else ''} {name}"
        try:
            admin = psycopg.connect(
                dbname="postgres",
                host=host,
                port=port,
                user=user or None,
                password=settings["PASSWORD"] or None,
                connect_timeout=CONNECT_TIMEOUT,
                autocommit=True,
            )
        except psycopg.OperationalError as exc:
            reason = " ".join(line.strip() for line in str(exc).splitlines())
            raise CommandError(
                f"PostgreSQL at {host}:{port} cannot be reached as {user or 'the default user'}: "
                f"{reason}\nStart the server or fix DATABASE_URL; unset DATABASE_URL for SQLite."
            ) from None
        with admin:
            exists = admin.execute(
                "SELECT 1 FROM pg_database WHERE datname = %s", [name]
            ).fetchone()
            try:
                if drop and exists:
                    admin.execute(
                        sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name))
                    )
                    self.stdout.write(f"Dropped database {name}.")
                elif drop:
                    self.stdout.write(f"Database {name}: does not exist.")
                elif not exists:
                    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
                    self.stdout.write(f"Created database {name}.")
            except psycopg.Error as exc:
                verb = "drop" if drop else "create"
                hint = f"dropdb -h {host} -p {port} {name}" if drop else createdb
                raise CommandError(f"Cannot {verb} database {name}: {exc}\nRun: {hint}") from None
