"""django-ninja in async views (``aorm.contrib.ninja``): schemas following relations, natively.

A ``Schema`` with nested ForeignKey and ManyToMany schemas, a ``ModelSchema``
with a ForeignKey and a ManyToMany field, ninja's async pagination, and a
``Status`` response, served through ninja's routes by Django's AsyncClient:
every statement runs on the event loop's thread. Without ``native``, the same
schema fails on SynchronousOnlyOperation.
"""

from __future__ import annotations

import threading

import pytest
from django.test import AsyncClient
from pydantic import ValidationError

from tests.app.models import Book, Tag
from tests.conftest import ALL_DATABASES, SqlLog, library

pytestmark = [ALL_DATABASES, pytest.mark.urls("tests.frameworks.ninja_api")]


def on_loop(sql_log: SqlLog) -> bool:
    """Statements ran, on aorm's alias only, all on this (the event loop's) thread."""
    aliases = {alias for alias, _, _ in sql_log.statements}
    loop_thread = {threading.get_ident()}
    return bool(sql_log.statements) and sql_log.threads() == loop_thread and aliases == {"default"}


async def test_nested_schemas_paginated(sql_log: SqlLog) -> None:
    await library()
    sql_log.clear()
    client = AsyncClient()
    page = await client.get("/ninja/books", {"limit": 2})
    assert page.status_code == 200, page.content
    body = page.json()
    assert body["count"] == 3
    assert [
        (b["title"], b["author"]["name"], [t["name"] for t in b["tags"]]) for b in body["items"]
    ] == [("b1", "ann", ["red", "blue"]), ("b2", "ann", ["red"])]
    rest = (await client.get("/ninja/books", {"limit": 2, "offset": 2})).json()
    assert [(b["title"], b["author"]["name"], b["tags"]) for b in rest["items"]] == [
        ("b3", "bob", [])
    ]
    assert on_loop(sql_log)


async def test_model_schema_with_foreign_key_and_many_to_many(sql_log: SqlLog) -> None:
    await library()
    b1 = await Book.objects.aget(title="b1")
    tags = [t.id async for t in Tag.objects.filter(name__in=["red", "blue"]).order_by("id")]
    sql_log.clear()
    response = await AsyncClient().get(f"/ninja/books/{b1.id}")
    assert response.status_code == 200, response.content
    assert response.json() == {"id": b1.id, "title": "b1", "author": b1.author_id, "tags": tags}
    assert on_loop(sql_log)


async def test_status_response_after_writes(sql_log: SqlLog) -> None:
    client = AsyncClient()
    body = {"title": "b9", "author": "cy", "tags": ["x", "y"]}
    response = await client.post("/ninja/books", body, content_type="application/json")
    assert response.status_code == 201, response.content
    book = await Book.objects.aget(title="b9")
    assert response.json() == {
        "id": book.id,
        "title": "b9",
        "author": {"id": book.author_id, "name": "cy"},
        "tags": [{"id": t.id, "name": t.name} async for t in book.tags.order_by("id")],
    }
    assert on_loop(sql_log)


async def test_without_native_the_schema_cannot_load_relations() -> None:
    await library()
    # pydantic reports the SynchronousOnlyOperation of each relation, with aorm's message.
    with pytest.raises(ValidationError, match=r"SynchronousOnlyOperation.*aorm\.afetch"):
        await AsyncClient().get("/ninja-plain/books")
