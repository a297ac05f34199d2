"""Strawberry (strawberry-graphql-django) in async views: relations resolved natively.

The schemas of ``tests/frameworks/strawberry_schema.py`` are served by
Strawberry's own Django view (``AsyncGraphQLView``) through Django's
AsyncClient. An async resolver loading relations with ``aorm.afetch`` is
native as written; with ``aorm.contrib.strawberry.NativeORM``, so are
strawberry-django's own relation fields, sync resolvers and optimizer, which
it otherwise runs in a worker thread.
"""

from __future__ import annotations

import threading

import pytest
from django.test import AsyncClient

from tests.conftest import ALL_DATABASES, SqlLog, library

pytestmark = [ALL_DATABASES, pytest.mark.urls("tests.frameworks.strawberry_schema")]

BOOKS = "books { title author { name } tags { name } }"
EXPECTED_BOOKS = [
    {"title": "b1", "author": {"name": "ann"}, "tags": [{"name": "red"}, {"name": "blue"}]},
    {"title": "b2", "author": {"name": "ann"}, "tags": [{"name": "red"}]},
    {"title": "b3", "author": {"name": "bob"}, "tags": []},
]


def on_loop(sql_log: SqlLog) -> bool:
    """Statements ran, on aorm's alias only, all on this (the event loop's) thread."""
    aliases = {alias for alias, _, _ in sql_log.statements}
    loop_thread = {threading.get_ident()}
    return bool(sql_log.statements) and sql_log.threads() == loop_thread and aliases == {"default"}


async def graphql(url: str, query: str) -> dict[str, object]:
    response = await AsyncClient().post(url, {"query": query}, content_type="application/json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert "errors" not in body, body
    return body["data"]  # type: ignore[no-any-return]


async def test_async_resolver_loads_relations_with_afetch(sql_log: SqlLog) -> None:
    """Without the extension: an async resolver awaits the ORM and aorm.afetch, on the loop."""
    await library()
    sql_log.clear()
    query = '{ book(title: "b1") { title authorName author { name } tags { name } } }'
    assert await graphql("/graphql-plain/", query) == {
        "book": {
            "title": "b1",
            "authorName": "ann",
            "author": {"name": "ann"},
            "tags": [{"name": "red"}, {"name": "blue"}],
        }
    }
    # The book, its author, its tags: strawberry-django reads the loaded relations as they are.
    assert len(sql_log.statements) == 3, sql_log.statements
    assert on_loop(sql_log)


AUTHORS = "authors { name books { title } }"
EXPECTED_AUTHORS = [
    {"name": "ann", "books": [{"title": "b1"}, {"title": "b2"}]},
    {"name": "bob", "books": [{"title": "b3"}]},
]


async def test_relation_fields_and_sync_resolvers_natively(sql_log: SqlLog) -> None:
    await library()
    sql_log.clear()
    data = await graphql("/graphql/", f"{{ {BOOKS} {AUTHORS} }}")
    assert data == {"books": EXPECTED_BOOKS, "authors": EXPECTED_AUTHORS}
    assert on_loop(sql_log)


async def test_with_the_optimizer(sql_log: SqlLog) -> None:
    await library()
    sql_log.clear()
    data = await graphql("/graphql-optimized/", f"{{ {BOOKS} {AUTHORS} }}")
    assert data == {"books": EXPECTED_BOOKS, "authors": EXPECTED_AUTHORS}
    # The optimizer's: the books with their authors, their tags; the authors, and each
    # one's books (the authors come from a resolver's QuerySet, fetched as it returns it).
    assert len(sql_log.statements) == 5, sql_log.statements
    assert on_loop(sql_log)


async def test_without_the_extension_relations_load_in_a_thread(sql_log: SqlLog) -> None:
    """What NativeORM changes: strawberry-django loads each book's author in a worker thread."""
    await library()
    sql_log.clear()
    assert await graphql("/graphql-plain/", "{ books { title author { name } } }") == {
        "books": [{"title": b["title"], "author": b["author"]} for b in EXPECTED_BOOKS]
    }
    loads = [thread for _, sql, thread in sql_log.statements if "app_author" in sql]
    assert len(loads) == 3 and threading.get_ident() not in loads, sql_log.statements
