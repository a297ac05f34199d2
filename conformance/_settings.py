"""What the conformance settings share: Django's own test settings, with two aliases.

Django's ``tests/runtests.py`` needs the aliases ``default`` and ``other``.

PostgreSQL: the test databases are named after the flavour (``stock`` or
``aorm``), the Django version and the checkout, so runs of other checkouts, of
the other Django version and aorm's own test suite (``test_aorm``) never share
a database on the server. The server is chosen as in ``tests/settings.py``
(``AORM_PGHOST``, ``AORM_PGPORT``, ``AORM_PGUSER``).

MySQL/MariaDB: the same naming, on the server of ``tests/settings.py``
(``AORM_MYSQL_HOST``, ``AORM_MYSQL_PORT``, ``AORM_MYSQL_USER``), utf8mb4.

SQLite: Django's defaults (``tests/test_sqlite.py``), for both flavours: no
``NAME``, so each alias's test database is Django's shared-cache in-memory
database (``file:memorydb_<alias>?mode=memory&cache=shared``), private to the
run's processes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import django

_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:6]

ALIASES = ("default", "other")


# Database -> (the database to connect to, the environment variables' prefix,
# the default user and port), as in tests/settings.py.
SERVERS = {
    "postgresql": ("postgres", "AORM_PG", "postgres", "5432"),
    "mysql": ("mysql", "AORM_MYSQL_", "root", "3306"),
}


def server(database: str) -> dict[str, str]:
    """Where a database's server is: ``<prefix>USER``, ``<prefix>HOST``, ``<prefix>PORT``."""
    name, prefix, user, port = SERVERS[database]
    return {
        "NAME": name,
        "USER": os.environ.get(f"{prefix}USER", user),
        "HOST": os.environ.get(f"{prefix}HOST", "127.0.0.1"),
        "PORT": os.environ.get(f"{prefix}PORT", port),
    }


def test_database_prefix(flavour: str) -> str:
    """What every test database of a server run starts with (clones add ``_1``...)."""
    version = "".join(str(part) for part in django.VERSION[:2])
    return f"conformance_{_CHECKOUT}_{flavour}_dj{version}_"


def postgresql(engine: str, flavour: str) -> dict[str, dict[str, Any]]:
    prefix = test_database_prefix(flavour)
    return {
        alias: {"ENGINE": engine, **server("postgresql"), "TEST": {"NAME": prefix + alias}}
        for alias in ALIASES
    }


def mysql(engine: str, flavour: str) -> dict[str, dict[str, Any]]:
    prefix = test_database_prefix(flavour)
    return {
        alias: {
            "ENGINE": engine,
            **server("mysql"),
            "TEST": {"NAME": prefix + alias, "CHARSET": "utf8mb4"},
        }
        for alias in ALIASES
    }


def sqlite(engine: str) -> dict[str, dict[str, Any]]:
    return {alias: {"ENGINE": engine} for alias in ALIASES}
