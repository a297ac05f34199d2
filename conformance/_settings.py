"""What both conformance settings share: Django's own test settings, two PostgreSQL aliases.

Django's ``tests/runtests.py`` needs the aliases ``default`` and ``other``. The
test databases are named after the flavour (``stock`` or ``aorm``), the Django
version and the checkout, so runs of other checkouts, of the other Django
version and aorm's own test suite (``test_aorm``) never share a database on the
server. The server is chosen as in ``tests/settings.py`` (``AORM_PGHOST``,
``AORM_PGPORT``, ``AORM_PGUSER``).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import django

_CHECKOUT = hashlib.sha256(str(Path(__file__).resolve().parent.parent).encode()).hexdigest()[:6]


def server() -> dict[str, str]:
    return {
        "NAME": "postgres",
        "USER": os.environ.get("AORM_PGUSER", "postgres"),
        "HOST": os.environ.get("AORM_PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("AORM_PGPORT", "5432"),
    }


def test_database_prefix(flavour: str) -> str:
    """Every test database of a run starts with this (Django adds ``_1``... for clones)."""
    version = "".join(str(part) for part in django.VERSION[:2])
    return f"conformance_{_CHECKOUT}_{flavour}_dj{version}_"


def databases(engine: str, flavour: str) -> dict[str, dict[str, Any]]:
    prefix = test_database_prefix(flavour)
    return {
        alias: {"ENGINE": engine, **server(), "TEST": {"NAME": prefix + alias}}
        for alias in ("default", "other")
    }
