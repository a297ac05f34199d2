"""One module per contender, each exposing ``Contender`` with the same small async interface.

``async with contender.request() as ctx`` is one simulated request (the unit a
web request would be: Django's ``ThreadSensitiveContext``, SQLAlchemy's
session, django-async-backend's connection scope); inside it
``get(ctx, pk)``, ``get_wait(ctx, pk)``, ``list100(ctx, start)`` and
``create(ctx, name, age)`` are the operations the workloads time.
"""

from __future__ import annotations

import importlib
from typing import Any

# contender name -> (module, constructor keyword arguments)
MODULES: dict[str, tuple[str, dict[str, Any]]] = {
    "raw-psycopg": ("bench.contenders.raw_psycopg", {}),
    "raw-asyncpg": ("bench.contenders.raw_asyncpg", {}),
    "django-stock": ("bench.contenders.django_orm", {"mode": "stock"}),
    "aorm": ("bench.contenders.django_orm", {"mode": "aorm"}),
    "django-async-backend": ("bench.contenders.django_orm", {"mode": "dab"}),
    "tortoise": ("bench.contenders.tortoise_orm", {}),
    "sqlalchemy": ("bench.contenders.sqlalchemy_orm", {}),
    "django-stock-sqlite": (
        "bench.contenders.django_orm",
        {"mode": "stock", "database": "sqlite"},
    ),
    "aorm-sqlite": ("bench.contenders.django_orm", {"mode": "aorm", "database": "sqlite"}),
    "django-stock-mysql": ("bench.contenders.django_orm", {"mode": "stock", "database": "mysql"}),
    "aorm-mysql": ("bench.contenders.django_orm", {"mode": "aorm", "database": "mysql"}),
    "tortoise-mysql": ("bench.contenders.tortoise_orm", {"database": "mysql"}),
    "sqlalchemy-mysql": ("bench.contenders.sqlalchemy_orm", {"database": "mysql"}),
}


def load(name: str) -> Any:
    module, kwargs = MODULES[name]
    return importlib.import_module(module).Contender(**kwargs)
