"""Django's async ORM API on an aorm alias: same results as the sync API, and no thread hop.

Every case is written once against a ``call`` function. In the reference run,
``call(target, "get", ...)`` runs Django's synchronous ``target.get(...)`` in a
worker thread; in the native run it awaits ``target.aget(...)``. Both runs
start from the same rows; their results and the rows they leave behind must
be equal, and every SQL statement of the native run must have been executed
by the event loop's own thread.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.contenttypes.models import ContentType
from django.db.models import Count, F, Model, Prefetch, QuerySet, Sum, prefetch_related_objects
from django.db.models.query import aprefetch_related_objects
from students.models import Student

from tests.app.models import Author, Book, Note, Tag
from tests.conftest import ALL_DATABASES

pytestmark = ALL_DATABASES

Call = Callable[..., Awaitable[Any]]


def seed() -> None:
    for model in (Note, Book, Tag, Author, Student):
        model.objects.all().delete()
    # Building a generic relation's manager looks its content type up (Django 6
    # queries then): cached here, as a running application has it.
    ContentType.objects.get_for_model(Author)
    Student.objects.bulk_create(
        Student(name=f"s{i}", age=age) for i, age in enumerate([19, 20, 20, 21, 22])
    )
    ann, bob = Author.objects.create(name="ann"), Author.objects.create(name="bob")
    t1, t2, t3 = (Tag.objects.create(name=f"t{i}") for i in (1, 2, 3))
    Book.objects.create(title="b1", author=ann, pages=120).tags.set([t1, t2])
    Book.objects.create(title="b2", author=ann, pages=300).tags.set([t3])
    Book.objects.create(title="b3", author=bob, pages=80)


def snapshot() -> dict[str, Any]:
    """Every row, by natural key, so that runs with different primary keys compare equal."""
    return {
        "students": sorted(Student.objects.values_list("name", "age")),
        "authors": sorted(Author.objects.values_list("name", flat=True)),
        "tags": sorted(Tag.objects.values_list("name", flat=True)),
        "books": sorted(
            (b.title, b.pages, b.author.name, tuple(sorted(t.name for t in b.tags.all())))
            for b in Book.objects.all()
        ),
    }


def natural(value: Any) -> Any:
    """A result with model instances replaced by their natural keys."""
    if isinstance(value, Model):
        key = getattr(value, "name", None) or getattr(value, "title", None)
        return (type(value).__name__, key)
    if isinstance(value, dict):
        if all(isinstance(v, Model) for v in value.values()):  # in_bulk: keys are pks
            return sorted(natural(v) for v in value.values())
        return {k: natural(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(natural(v) for v in value)
    if isinstance(value, str) and "cost=" in value:  # explain(): the plan's shape
        return value.split("(cost=")[0]
    return value


async def sync_call(target: Any, method: str, /, *args: Any, **kwargs: Any) -> Any:
    """Django's synchronous API, in a worker thread: the reference."""
    if method == "list":
        return await sync_to_async(list)(target)
    if method == "iterator":
        return await sync_to_async(lambda: list(target.iterator(*args, **kwargs)))()
    return await sync_to_async(getattr(target, method))(*args, **kwargs)


async def native_call(target: Any, method: str, /, *args: Any, **kwargs: Any) -> Any:
    """Django's async API (and aorm's ``await qs``), natively."""
    if method == "list":
        return await target
    if method == "iterator":
        return [row async for row in target.aiterator(*args, **kwargs)]
    return await getattr(target, f"a{method}")(*args, **kwargs)


async def outcome(case: Callable[[Call], Awaitable[Any]], call: Call) -> tuple[Any, Any]:
    await sync_to_async(seed)()
    try:
        result = natural(await case(call))
    except Exception as exc:
        result = ("raised", type(exc).__name__, str(exc))
    return result, await sync_to_async(snapshot)()


# --- The cases: one per entry point of Django's async API. ---------------------------------


async def get(call: Call) -> Any:
    return await call(Student.objects, "get", name="s1")


async def get_missing(call: Call) -> Any:
    return await call(Student.objects, "get", name="nobody")


async def get_multiple(call: Call) -> Any:
    return await call(Student.objects, "get", age=20)


async def create(call: Call) -> Any:
    return await call(Student.objects, "create", name="new", age=30)


async def get_or_create(call: Call) -> Any:
    found = await call(Student.objects, "get_or_create", name="s1", defaults={"age": 1})
    made = await call(Student.objects, "get_or_create", name="s9", defaults={"age": 1})
    return found, made


async def update_or_create(call: Call) -> Any:
    updated = await call(Student.objects, "update_or_create", name="s1", defaults={"age": 99})
    made = await call(
        Student.objects,
        "update_or_create",
        name="s8",
        defaults={"age": 5},
        create_defaults={"age": 6},
    )
    return updated, made


async def bulk_create(call: Call) -> Any:
    objs = [Student(name=f"bulk{i}", age=i) for i in range(3)]
    return await call(Student.objects, "bulk_create", objs, batch_size=2)


async def bulk_update(call: Call) -> Any:
    objs = await call(Student.objects.filter(age__gte=20), "list")
    for obj in objs:
        obj.age += 100
    return await call(Student.objects, "bulk_update", objs, ["age"])


async def count(call: Call) -> Any:
    return await call(Student.objects.filter(age=20), "count")


async def in_bulk(call: Call) -> Any:
    by_pk = await call(Student.objects, "in_bulk")
    by_name = await call(Student.objects, "in_bulk", ["s1", "s2"], field_name="name")
    return by_pk, by_name


async def iterator(call: Call) -> Any:
    return await call(Student.objects.order_by("-age"), "iterator", chunk_size=2)


async def latest_earliest(call: Call) -> Any:
    return (
        await call(Student.objects, "latest", "age"),
        await call(Student.objects, "earliest", "age", "name"),
    )


async def first_last(call: Call) -> Any:
    return (
        await call(Student.objects.order_by("age"), "first"),
        await call(Student.objects, "last"),
        await call(Student.objects.filter(age=99), "first"),
    )


async def aggregate(call: Call) -> Any:
    return await call(Book.objects, "aggregate", total=Sum("pages"), n=Count("id"))


async def exists(call: Call) -> Any:
    return (
        await call(Student.objects.filter(age=20), "exists"),
        await call(Student.objects.filter(age=99), "exists"),
    )


async def contains(call: Call) -> Any:
    student = await call(Student.objects, "get", name="s0")
    return (
        await call(Student.objects.filter(age=19), "contains", student),
        await call(Student.objects.filter(age=20), "contains", student),
    )


async def update(call: Call) -> Any:
    return await call(Student.objects.filter(age=20), "update", age=F("age") + 1)


async def delete(call: Call) -> Any:
    return await call(Author.objects.filter(name="ann"), "delete")  # cascades to books


async def explain(call: Call) -> Any:
    return await call(Student.objects.filter(age=20), "explain")


async def evaluate(call: Call) -> Any:
    return (
        await call(Student.objects.filter(age=20), "list"),
        await call(Student.objects.values("name", "age"), "list"),
        await call(Student.objects.values_list("name", "age"), "list"),
        await call(Student.objects.values_list("name", flat=True), "list"),
        await call(Book.objects.select_related("author"), "list"),
        await call(
            Student.objects.raw("SELECT * FROM students_student WHERE age > %s", [20]), "list"
        ),
    )


async def model_methods(call: Call) -> Any:
    student = await call(Student.objects, "get", name="s1")
    student.age = 42
    await call(student, "save")
    new = Student(name="fresh", age=7)
    await call(new, "save")
    victim = await call(Student.objects, "get", name="s2")
    deleted = await call(victim, "delete")
    stale = await call(Student.objects, "get", name="s1")
    stale.age = 0
    await call(stale, "refresh_from_db")
    return stale.age, deleted


async def related_managers(call: Call) -> Any:
    ann = await call(Author.objects, "get", name="ann")
    b3 = await call(Book.objects, "get", title="b3")
    t1, t3 = await call(Tag.objects, "get", name="t1"), await call(Tag.objects, "get", name="t3")
    await call(b3.tags, "add", t1, t3)
    await call(b3.tags, "remove", t1)
    b1 = await call(Book.objects, "get", title="b1")
    await call(b1.tags, "set", [t3])
    b2 = await call(Book.objects, "get", title="b2")
    await call(b2.tags, "clear")
    made = await call(ann.books, "create", title="b4", pages=10)
    got = await call(ann.books, "get_or_create", title="b5", defaults={"pages": 11})
    upd = await call(ann.books, "update_or_create", title="b4", defaults={"pages": 12})
    tag = await call(b3.tags, "create", name="t4")
    tag_got = await call(b3.tags, "get_or_create", name="t5")
    tag_upd = await call(b3.tags, "update_or_create", name="t5", defaults={"name": "t6"})
    bob = await call(Author.objects, "get", name="bob")
    await call(bob.books, "add", b1)
    await call(bob.books, "set", [b2])
    return made, got, upd, tag, tag_got, tag_upd


async def generic_relations(call: Call) -> Any:
    ann = await call(Author.objects, "get", name="ann")
    bob = await call(Author.objects, "get", name="bob")
    first = await call(ann.notes, "create", text="n1")
    await call(ann.notes, "get_or_create", text="n2")
    await call(ann.notes, "update_or_create", text="n2", defaults={"text": "n3"})
    moved = await call(bob.notes, "create", text="n4")
    await call(ann.notes, "add", moved)
    await call(ann.notes, "remove", first)
    await call(bob.notes, "set", [first])
    remaining = sorted(await call(ann.notes.values_list("text", flat=True), "list"))
    await call(bob.notes, "clear")
    return remaining, await call(Note.objects, "count")


async def prefetch(call: Call) -> Any:
    authors = await call(Author.objects.all(), "list")
    if call is not sync_call:
        await aprefetch_related_objects(authors, Prefetch("books"), "books__tags")
    else:
        await sync_to_async(prefetch_related_objects)(authors, Prefetch("books"), "books__tags")
    return [
        (a.name, [(b.title, [t.name for t in b.tags.all()]) for b in a.books.all()])
        for a in authors
    ]


CASES = [
    get, get_missing, get_multiple, create, get_or_create, update_or_create, bulk_create,
    bulk_update, count, in_bulk, iterator, latest_earliest, first_last, aggregate, exists,
    contains, update, delete, explain, evaluate, model_methods, related_managers,
    generic_relations, prefetch,
]  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_native_matches_sync(case: Callable[[Call], Awaitable[Any]], sql_log: Any) -> None:
    expected = await outcome(case, sync_call)
    await sync_to_async(seed)()
    sql_log.clear()
    try:
        result = natural(await case(native_call))
    except Exception as exc:
        result = ("raised", type(exc).__name__, str(exc))
    statements, threads = list(sql_log.statements), sql_log.threads()
    assert (result, await sync_to_async(snapshot)()) == expected
    assert statements, "no SQL statement was recorded: the proof proves nothing"
    assert threads == {threading.get_ident()}, "SQL ran outside the event loop's thread"


async def test_async_for_over_querysets(sql_log: Any) -> None:
    await sync_to_async(seed)()
    sql_log.clear()
    students = [s.name async for s in Student.objects.filter(age__gte=20)]
    raw = [s.name async for s in Student.objects.raw("SELECT * FROM students_student ORDER BY id")]
    assert students == ["s1", "s2", "s3", "s4"]
    assert raw == ["s0", "s1", "s2", "s3", "s4"]
    assert len(sql_log.statements) == 2
    assert sql_log.threads() == {threading.get_ident()}


# --- The routing census: every async method Django defines, found by introspection. ---------


def own_async_methods(cls: type) -> set[str]:
    """The coroutine (and async generator) methods ``cls`` defines itself."""
    return {
        name
        for name, value in vars(cls).items()
        if inspect.iscoroutinefunction(value) or inspect.isasyncgenfunction(value)
    }


def django_async_api() -> dict[str, set[str]]:
    api = {
        "QuerySet": own_async_methods(QuerySet) - {"aall"},  # aall is aorm's
        "Model": own_async_methods(Model),
    }
    for kind, cls in related_manager_classes().items():
        api[kind] = own_async_methods(cls)
    return api


def related_manager_classes() -> dict[str, type]:
    return {
        "reverse foreign key manager": Author.books.related_manager_cls,
        "many-to-many manager": Book.tags.related_manager_cls,
        "generic relation manager": Author.notes.related_manager_cls,
    }


def kind_of(target: Any) -> str:
    if isinstance(target, Model):
        return "Model"
    for kind, cls in related_manager_classes().items():
        if isinstance(target, cls):
            return kind
    return "QuerySet"  # a QuerySet, or a manager's proxy of its methods


async def test_routing_census(sql_log: Any) -> None:
    """Every async method of Django's ORM runs natively, its SQL on the loop's thread.

    The methods are found by introspection: a method that a future Django adds
    and no case here calls fails this test on that Django.
    """
    called: dict[str, set[str]] = {kind: set() for kind in django_async_api()}

    async def recording_call(target: Any, method: str, /, *args: Any, **kwargs: Any) -> Any:
        if method != "list":
            called[kind_of(target)].add(f"a{method}")
        return await native_call(target, method, *args, **kwargs)

    for case in CASES:
        await sync_to_async(seed)()
        sql_log.clear()
        with contextlib.suppress(Exception):  # get_missing, get_multiple: Django's errors
            await case(recording_call)
        assert sql_log.threads() <= {threading.get_ident()}, case.__name__
    missing = {kind: names - called[kind] for kind, names in django_async_api().items()}
    assert not any(missing.values()), f"async methods no case exercises: {missing}"
    assert all(django_async_api().values())
