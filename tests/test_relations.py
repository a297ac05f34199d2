"""Relations in async code: ``await aorm.afetch(obj, ...)`` and the message of a lazy access."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.exceptions import SynchronousOnlyOperation
from django.db import models

import aorm
from tests.app.models import Author, Book, Note, Profile, Tag
from tests.conftest import ALL_DATABASES, SqlLog

pytestmark = ALL_DATABASES


async def library() -> None:
    ann = await Author.objects.acreate(name="ann")
    bob = await Author.objects.acreate(name="bob")
    await Profile.objects.acreate(author=ann, bio="writes")
    tag = await Tag.objects.acreate(name="t")
    for title, author in (("b1", ann), ("b2", ann), ("b3", bob)):
        book = await Book.objects.acreate(title=title, author=author)
        await book.tags.aadd(tag)
    content_type = await aorm.run(ContentType.objects.get_for_model, Author)
    await Note.objects.acreate(text="n", content_type=content_type, object_id=ann.pk)


def on_loop(sql_log: SqlLog) -> bool:
    return sql_log.threads() == {threading.get_ident()}


async def test_forward_and_chained_relations(sql_log: SqlLog) -> None:
    await library()
    book = await Book.objects.aget(title="b1")
    sql_log.clear()
    assert await aorm.afetch(book, "author", "author__profile", "tags") is book
    fetched = len(sql_log.statements)
    assert fetched == 3 and on_loop(sql_log)
    assert book.author.name == "ann"  # plain attribute access: no query
    assert book.author.profile.bio == "writes"
    assert [tag.name for tag in book.tags.all()] == ["t"]
    assert len(sql_log.statements) == fetched


async def test_reverse_relations_and_generic_foreign_keys(sql_log: SqlLog) -> None:
    await library()
    ann = await Author.objects.aget(name="ann")
    note = await Note.objects.aget(text="n")
    sql_log.clear()
    await aorm.afetch(ann, "books", "profile", "notes")
    await aorm.afetch(note, "target")
    assert [b.title for b in ann.books.all()] == ["b1", "b2"]
    assert ann.profile.bio == "writes"
    assert [n.text for n in ann.notes.all()] == ["n"]
    assert note.target == ann
    statements = len(sql_log.statements)
    assert statements and on_loop(sql_log)
    bob = await Author.objects.aget(name="bob")
    with pytest.raises(Author.profile.RelatedObjectDoesNotExist):  # as sync access raises
        await aorm.afetch(bob, "profile")


async def test_cached_relations_cost_no_query(sql_log: SqlLog) -> None:
    await library()
    book = await Book.objects.select_related("author").prefetch_related("tags").aget(title="b1")
    sql_log.clear()
    await aorm.afetch(book, "author", "tags")
    assert sql_log.statements == []
    assert book.author.name == "ann"


async def test_several_instances_in_one_query_per_level(sql_log: SqlLog) -> None:
    await library()
    books = await Book.objects.order_by("title")
    sql_log.clear()
    assert await aorm.afetch(books, "author") == books
    assert [b.author.name for b in books] == ["ann", "ann", "bob"]
    assert len(sql_log.statements) == 1 and on_loop(sql_log)
    assert await aorm.afetch([], "author") == []


async def test_the_same_objects_as_a_sync_access() -> None:
    await library()
    book = await Book.objects.aget(title="b3")
    await aorm.afetch(book, "author")
    expected = await aorm.run(lambda: Book.objects.get(title="b3").author)
    assert (book.author.pk, book.author.name) == (expected.pk, expected.name)


async def test_bad_lookups() -> None:
    await library()
    book = await Book.objects.aget(title="b1")
    with pytest.raises(TypeError, match="at least one relation"):
        await aorm.afetch(book)
    with pytest.raises(ValueError, match="'title' is a field of Book, not a relation"):
        await aorm.afetch(book, "title")
    with pytest.raises(AttributeError):
        await aorm.afetch(book, "nothing")


@pytest.mark.parametrize(
    ("access", "expected"),
    [
        (lambda book: book.author, "Book.author is not loaded"),
        (lambda author: author.profile, "Author.profile is not loaded"),
        (lambda note: note.target, "Note.target is not loaded"),
    ],
    ids=["forward", "reverse one-to-one", "generic"],
)
async def test_a_lazy_access_names_afetch(access: Any, expected: str) -> None:
    await library()
    targets = {
        "Book.": await Book.objects.aget(title="b1"),
        "Author.": await Author.objects.aget(name="ann"),
        "Note.": await Note.objects.aget(text="n"),
    }
    target = next(obj for prefix, obj in targets.items() if expected.startswith(prefix))
    with pytest.raises(SynchronousOnlyOperation) as error:
        access(target)
    relation = expected.split(".")[1].split(" ")[0]
    assert expected in str(error.value)
    assert f"await aorm.afetch(obj, {relation!r})" in str(error.value)


@pytest.mark.skipif(not hasattr(models, "FETCH_PEERS"), reason="fetch modes are new in Django 6.1")
async def test_fetch_peers_loads_the_peers_relation(sql_log: SqlLog) -> None:
    await library()
    books = await Book.objects.fetch_mode(models.FETCH_PEERS).order_by("title")  # type: ignore[attr-defined]
    sql_log.clear()
    await aorm.afetch(books[0], "author")
    assert len(sql_log.statements) == 1
    assert [b.author.name for b in books] == ["ann", "ann", "bob"]  # the peers' too
    assert len(sql_log.statements) == 1
