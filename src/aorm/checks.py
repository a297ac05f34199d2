"""Django system checks for aorm's settings: misconfiguration found by ``manage.py check``.

Each problem has an id, listed in docs/checks.md:

- ``aorm.E001``: an alias uses an aorm ENGINE but ``"aorm"`` is not in
  ``INSTALLED_APPS`` (its async API would not be routed: ``await qs`` fails,
  a-methods run in threads).
- ``aorm.E002``: the installed Django version is not supported.
- ``aorm.E003``: ``OPTIONS["pool"]`` is neither a bool nor a dict of known
  options with values of the right type.
- ``aorm.E004``: an explicit PostgreSQL pool together with a persistent
  ``CONN_MAX_AGE`` (Django refuses the combination at the first connection).
- ``aorm.W001``: a pool size for an in-memory SQLite database, which has
  exactly one connection per event loop.

E001 is registered by the backends (the app's own checks cannot run when the
app is missing); the others by the app.
"""

from __future__ import annotations

from typing import Any

import django
from django.apps import apps
from django.core import checks
from django.db import connections
from django.db.models import QuerySet

from aorm._pool import _OPTIONS

__all__ = ["SUPPORTED_DJANGO", "check_app_installed", "check_settings"]

SUPPORTED_DJANGO = ((5, 2), (6, 1))  # oldest and newest feature release supported

_NUMBERS = {"min_size", "max_size", "timeout", "max_lifetime", "max_idle"}


def _aorm_aliases() -> list[tuple[str, dict[str, Any]]]:
    return [
        (alias, settings)
        for alias, settings in connections.settings.items()
        if str(settings.get("ENGINE", "")).startswith("aorm.backends.")
    ]


def check_app_installed(**kwargs: Any) -> list[checks.CheckMessage]:
    # Once the app has installed aorm's table (QuerySet.__await__ is one entry),
    # a test that swaps INSTALLED_APPS does not undo it.
    if apps.is_installed("aorm") or hasattr(QuerySet, "__await__"):
        return []
    return [
        checks.Error(
            f"DATABASES[{alias!r}] uses {settings['ENGINE']!r}, but 'aorm' is not in "
            "INSTALLED_APPS.",
            hint="Add 'aorm' to INSTALLED_APPS: without it Django's async ORM API is not "
            "routed to aorm (`await queryset` fails, a-methods run in threads).",
            id="aorm.E001",
        )
        for alias, settings in _aorm_aliases()
    ]


def check_settings(**kwargs: Any) -> list[checks.CheckMessage]:
    messages: list[checks.CheckMessage] = []
    version = django.VERSION[:2]
    oldest, newest = SUPPORTED_DJANGO
    if not oldest <= version <= newest:
        messages.append(
            checks.Error(
                f"aorm supports Django {oldest[0]}.{oldest[1]} to {newest[0]}.{newest[1]}; "
                f"this is Django {django.get_version()}.",
                hint="Install a supported Django version, e.g. pip install 'Django>=5.2,<6.2'.",
                id="aorm.E002",
            )
        )
    for alias, settings in _aorm_aliases():
        messages += _check_pool(alias, settings)
    return messages


def _check_pool(alias: str, settings: dict[str, Any]) -> list[checks.CheckMessage]:
    pool = (settings.get("OPTIONS") or {}).get("pool")
    where = f"DATABASES[{alias!r}]['OPTIONS']['pool']"
    if pool is None or isinstance(pool, bool):
        options: dict[str, Any] = {}
    elif isinstance(pool, dict):
        options = pool
    else:
        return [
            checks.Error(
                f"{where} is {pool!r}.",
                hint="Use True, False (a connection per operation) or a dict of pool options.",
                id="aorm.E003",
            )
        ]
    messages: list[checks.CheckMessage] = []
    unknown = sorted(set(options) - _OPTIONS)
    wrong = sorted(
        name
        for name in set(options) & _NUMBERS
        if isinstance(options[name], bool) or not isinstance(options[name], int | float)
    )
    if unknown or wrong:
        problems = [f"unknown option(s) {', '.join(unknown)}"] if unknown else []
        problems += [f"{', '.join(wrong)} must be numbers"] if wrong else []
        messages.append(
            checks.Error(
                f"{where}: {'; '.join(problems)}.",
                hint=f"aorm's async pool accepts {', '.join(sorted(_OPTIONS))}.",
                id="aorm.E003",
            )
        )
    elif options.get("max_size", 1) < max(1, options.get("min_size", 0)):
        messages.append(
            checks.Error(
                f"{where}: max_size must be at least 1 and at least min_size.",
                hint="Raise max_size, or lower min_size.",
                id="aorm.E003",
            )
        )
    # Only PostgreSQL's OPTIONS["pool"] is Django's too, whose sync pool refuses
    # persistent connections; elsewhere it is aorm's async pool alone.
    postgresql = settings["ENGINE"].endswith("postgresql")
    if pool and postgresql and settings.get("CONN_MAX_AGE", 0) != 0:
        messages.append(
            checks.Error(
                f"DATABASES[{alias!r}] sets both a pool and CONN_MAX_AGE="
                f"{settings['CONN_MAX_AGE']!r}.",
                hint="Pooled connections are not persistent: remove CONN_MAX_AGE, or the pool.",
                id="aorm.E004",
            )
        )
    name = str(settings.get("NAME", ""))
    in_memory = name == ":memory:" or "mode=memory" in name
    if in_memory and settings["ENGINE"].endswith("sqlite3") and options.get("max_size", 1) > 1:
        messages.append(
            checks.Warning(
                f"{where}: max_size={options['max_size']} for an in-memory SQLite database.",
                hint="An in-memory database lives as long as its connection: aorm keeps "
                "exactly one per event loop, shared in turn. Remove max_size.",
                id="aorm.W001",
            )
        )
    return messages
