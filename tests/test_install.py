"""The table of changes aorm makes to Django (``aorm._install``) and the system checks."""

from __future__ import annotations

from typing import Any

import django
import pytest
from asgiref.sync import sync_to_async
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.db import connections
from django.test import override_settings

from aorm import _install
from aorm.checks import check_app_installed, check_settings


def test_every_entry_is_applied_and_install_is_idempotent() -> None:
    table = _install.patches()
    assert all(patch.applied() for patch in table)
    before = [patch.original() for patch in table]
    _install.install()
    assert [patch.original() for patch in _install.patches()] == before


def test_the_table_names_what_a_maintainer_looks_for() -> None:
    names = {patch.name for patch in _install.patches()}
    for expected in (
        "django.utils.asyncio.get_running_loop",
        "django.db.models.query.sync_to_async",
        "django.contrib.sessions.backends.base.sync_to_async",
        "django.dispatch.dispatcher.sync_to_async",
        "django.db.models.query.QuerySet.__await__",
        "django.db.transaction.Atomic.__aenter__",
        "asgiref.sync.SyncToAsync.__call__",
        "django.core.handlers.base.BaseHandler.make_view_atomic",
    ):
        assert expected in names


def unrelated(*args: Any, **kwargs: Any) -> None:
    """What a future Django might have in place of what aorm replaces."""


@pytest.mark.parametrize("index", range(len(_install.patches())), ids=lambda i: str(i))
def test_a_failed_precondition_stops_startup(monkeypatch: pytest.MonkeyPatch, index: int) -> None:
    """Each entry, its target altered as a new Django version might: never a silent fall-back."""
    patch = _install.patches()[index]
    with monkeypatch.context() as altered, pytest.raises(ImproperlyConfigured) as error:
        altered.setattr(patch.target, patch.attribute, unrelated)
        _install.install()
    message = str(error.value)
    assert patch.name in message
    assert patch.requires in message
    assert f"Django {django.get_version()}" in message


def ids(messages: list[checks.CheckMessage]) -> list[str]:
    return [message.id for message in messages if message.id]


def with_pool(pool: Any, **settings: Any) -> dict[str, Any]:
    return {**connections.settings["default"], "OPTIONS": {"pool": pool}, **settings}


@pytest.mark.parametrize(
    ("pool", "extra", "expected"),
    [
        (None, {}, []),
        (False, {}, []),
        (True, {}, []),
        ({"max_size": 4, "timeout": 2.5}, {}, []),
        ({"max_sise": 4}, {}, ["aorm.E003"]),
        ({"max_size": "4"}, {}, ["aorm.E003"]),
        ({"min_size": 5, "max_size": 2}, {}, ["aorm.E003"]),
        ("yes", {}, ["aorm.E003"]),
        (None, {"CONN_MAX_AGE": 60}, []),  # the default async pool is not a persistent conflict
    ],
)
def test_pool_settings_checks(
    monkeypatch: pytest.MonkeyPatch, pool: Any, extra: dict[str, Any], expected: list[str]
) -> None:
    monkeypatch.setitem(connections.settings, "default", with_pool(pool, **extra))
    assert ids(check_settings()) == expected


def test_a_persistent_connection_with_a_pool_is_only_an_error_on_postgresql(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for engine, expected in (("postgresql", ["aorm.E004"]), ("mysql", []), ("sqlite3", [])):
        settings = {"ENGINE": f"aorm.backends.{engine}", "NAME": "db", "CONN_MAX_AGE": 60}
        settings["OPTIONS"] = {"pool": {"max_size": 4}}
        monkeypatch.setitem(connections.settings, "default", settings)
        assert ids(check_settings()) == expected, engine


def test_in_memory_sqlite_with_a_pool_size_warns(monkeypatch: pytest.MonkeyPatch) -> None:
    memory = {"ENGINE": "aorm.backends.sqlite3", "NAME": ":memory:", "OPTIONS": {}}
    monkeypatch.setitem(connections.settings, "default", memory)
    assert ids(check_settings()) == []
    memory["OPTIONS"] = {"pool": {"max_size": 4}}
    messages = check_settings()
    assert ids(messages) == ["aorm.W001"]
    assert messages[0].level == checks.WARNING


def test_unsupported_django_version(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(django, "VERSION", (7, 0, 0, "final", 0))
    monkeypatch.setattr(django, "get_version", lambda: "7.0")
    messages = check_settings()
    assert ids(messages) == ["aorm.E002"]
    assert "this is Django 7.0" in messages[0].msg


def test_backend_without_the_app_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.db.models import QuerySet

    assert check_app_installed in checks.registry.registry.get_checks()
    assert check_app_installed() == []
    with override_settings(INSTALLED_APPS=["django.contrib.contenttypes"]):
        assert check_app_installed() == []  # installed once: a test's override changes nothing
        monkeypatch.delattr(QuerySet, "__await__")  # as if the app had never been installed
        messages = check_app_installed()
        assert set(ids(messages)) == {"aorm.E001"}
        assert "'aorm' is not in INSTALLED_APPS" in messages[0].msg


@pytest.mark.django_db(transaction=True)
async def test_without_the_app_async_queries_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without aorm's routing, Django's a-methods would run in threads: the backend refuses."""
    from django.db.models import QuerySet
    from students.models import Student

    def reconnect() -> None:
        connections["default"].close()
        connections["default"].ensure_connection()

    monkeypatch.delattr(QuerySet, "__await__")  # as if the app had never been installed
    with pytest.raises(ImproperlyConfigured, match=r"add 'aorm' to INSTALLED_APPS \(aorm\.E001\)"):
        await sync_to_async(reconnect)()
    monkeypatch.undo()
    await sync_to_async(reconnect)()  # with the app, a thread's sync connection is fine
    assert await Student.objects.acount() == 0
