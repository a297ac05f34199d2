"""Test databases: Django's, minding the WAL files of aorm's default journal mode."""

from __future__ import annotations

import contextlib
import os
from typing import Any

from django.db.backends.sqlite3 import creation as django_creation

__all__ = ["DatabaseCreation"]


class DatabaseCreation(django_creation.DatabaseCreation):  # type: ignore[misc]
    def _remove_wal_files(self, database_name: Any) -> None:
        if database_name and not self.is_in_memory_db(database_name):
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(f"{os.fspath(database_name)}{suffix}")

    def _create_test_db(self, verbosity: int, autoclobber: bool, keepdb: bool = False) -> Any:
        name = super()._create_test_db(verbosity, autoclobber, keepdb)
        if not keepdb:
            self._remove_wal_files(name)
        return name

    def _clone_test_db(self, suffix: Any, verbosity: int, keepdb: bool = False) -> None:
        # Django copies the database file: first move what the WAL holds into it.
        if not self.is_in_memory_db(self.connection.settings_dict["NAME"]):
            with self.connection.cursor() as cursor:
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        super()._clone_test_db(suffix, verbosity, keepdb)

    def _destroy_test_db(self, test_database_name: Any, verbosity: int) -> None:
        super()._destroy_test_db(test_database_name, verbosity)
        self._remove_wal_files(test_database_name)
