"""DRF with adrf in async views (``aorm.contrib.drf``): serializers using the database, natively.

Validation (``UniqueValidator``, ``UniqueTogetherValidator``,
``PrimaryKeyRelatedField`` lookups), nested serializers and ``.data`` of a
paginated list with relations, through adrf views served by Django's
AsyncClient: every statement runs on the event loop's thread.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import SynchronousOnlyOperation
from django.test import AsyncClient

from tests.app.models import Author, Book
from tests.conftest import ALL_DATABASES, SqlLog, library
from tests.frameworks.drf import AuthorSerializer, BookDetailSerializer, BookSerializer

pytestmark = [ALL_DATABASES, pytest.mark.urls("tests.frameworks.drf")]


def on_loop(sql_log: SqlLog) -> bool:
    """Statements ran, on aorm's aliases only, all on this (the event loop's) thread."""
    aliases = {alias for alias, _, _ in sql_log.statements}
    return (
        bool(sql_log.statements)
        and sql_log.threads() == {threading.get_ident()}
        and (aliases == {"default"})
    )


async def test_unique_validator(sql_log: SqlLog) -> None:
    client = AsyncClient()
    created = await client.post("/drf/authors/", {"name": "ann"}, content_type="application/json")
    assert created.status_code == 201, created.content
    assert created.json() == {"id": (await Author.objects.aget(name="ann")).id, "name": "ann"}
    again = await client.post("/drf/authors/", {"name": "ann"}, content_type="application/json")
    assert again.status_code == 400
    assert again.json()["name"][0].endswith("already exists.")
    assert await Author.objects.acount() == 1
    assert on_loop(sql_log)


async def test_unique_together_and_primary_key_related_fields(sql_log: SqlLog) -> None:
    ann, _, red, blue = await library()
    sql_log.clear()
    client = AsyncClient()
    body = {"title": "b4", "pages": 7, "author": ann.id, "tags": [red.id, blue.id]}
    created = await client.post("/drf/books/", body, content_type="application/json")
    assert created.status_code == 201, created.content
    book = await Book.objects.prefetch_related("tags").aget(title="b4")
    assert created.json() == {**body, "id": book.id}
    assert (book.author_id, [t.name for t in book.tags.all()]) == (ann.id, ["red", "blue"])

    duplicate = await client.post("/drf/books/", body, content_type="application/json")
    assert duplicate.status_code == 400
    assert duplicate.json()["non_field_errors"] == [
        "The fields title, author must make a unique set."
    ]
    missing = await client.post(
        "/drf/books/", {**body, "title": "b5", "author": 999_999}, content_type="application/json"
    )
    assert missing.status_code == 400
    assert "does not exist" in missing.json()["author"][0]
    assert await Book.objects.acount() == 4
    assert on_loop(sql_log)


async def test_paginated_list_with_nested_relations(sql_log: SqlLog) -> None:
    _, bob, *_ = await library()
    sql_log.clear()
    client = AsyncClient()
    first = await client.get("/drf/books/")
    assert first.status_code == 200, first.content
    page = first.json()
    assert page["count"] == 3 and page["next"].endswith("?page=2")
    assert [
        (b["title"], b["author"]["name"], [t["name"] for t in b["tags"]]) for b in page["results"]
    ] == [("b1", "ann", ["red", "blue"]), ("b2", "ann", ["red"])]
    assert [b["author_books"] for b in page["results"]] == [2, 2]
    second = (await client.get("/drf/books/?page=2")).json()
    assert [(b["title"], b["author"], b["tags"]) for b in second["results"]] == [
        ("b3", {"id": bob.id, "name": "bob"}, [])
    ]
    assert on_loop(sql_log)


async def test_update_through_a_generic_view(sql_log: SqlLog) -> None:
    _, bob, red, _ = await library()
    b1 = await Book.objects.aget(title="b1")
    sql_log.clear()
    client = AsyncClient()
    moved = await client.patch(
        f"/drf/books/{b1.id}/",
        {"author": bob.id, "tags": [red.id]},
        content_type="application/json",
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["author"] == bob.id and moved.json()["tags"] == [red.id]
    # b3 is bob's already: moving b1 there and renaming it b3 breaks the unique pair.
    clash = await client.patch(
        f"/drf/books/{b1.id}/", {"title": "b3"}, content_type="application/json"
    )
    assert clash.status_code == 400
    assert (await client.get(f"/drf/books/{b1.id}/")).json()["title"] == "b1"
    assert on_loop(sql_log)


async def test_session_authentication(sql_log: SqlLog) -> None:
    user = await get_user_model().objects.acreate_user("ann", password="secret")
    client = AsyncClient()
    await client.aforce_login(user)
    sql_log.clear()
    response = await client.get("/drf/me/")
    assert response.status_code == 200, response.content
    assert response.json() == {"user": "ann"}
    assert len(sql_log.statements) >= 2  # the session, the user
    assert on_loop(sql_log)
    anonymous = await AsyncClient().get("/drf/me/")
    assert anonymous.json() == {"user": ""}


async def test_serializers_awaited_directly(sql_log: SqlLog) -> None:
    await library()
    books = await Book.objects.all()  # no select_related: the serializers load relations
    with pytest.raises(SynchronousOnlyOperation):
        _ = BookDetailSerializer(books, many=True).data  # DRF's sync property in async code
    sql_log.clear()
    data = await AuthorSerializer(await Author.objects.all(), many=True).adata
    assert [a["name"] for a in data] == ["ann", "bob"]
    nested = await BookSerializer(books, many=True).adata
    assert [(b["title"], len(b["tags"])) for b in nested] == [("b1", 2), ("b2", 1), ("b3", 0)]
    serializer = AuthorSerializer(data={"name": "bob"})
    assert await serializer.ais_valid() is False
    assert serializer.errors["name"][0].code == "unique"
    new = AuthorSerializer(data={"name": "cy"})
    assert await new.ais_valid()
    author = await new.asave()  # DRF's save(), natively
    assert isinstance(author, Author) and author.pk
    assert await Author.objects.filter(name="cy").aexists()
    assert on_loop(sql_log)


def test_aorm_imports_no_framework() -> None:
    """The integrations are optional: aorm and aorm.contrib import none of the frameworks."""
    frameworks = {
        "rest_framework",
        "adrf",
        "ninja",
        "channels",
        "debug_toolbar",
        "sentry_sdk",
        "opentelemetry",
    }
    code = (
        "import sys, django; django.setup(); import aorm, aorm.contrib; "
        f"print(sorted(set({sorted(frameworks)!r}) & set(sys.modules)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
