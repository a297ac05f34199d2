"""Django's async API on aorm gives what it gives on Django's own backend, case by case.

Each case runs twice on the same database, from empty tables: on the
``stock`` alias (Django's own backend, its async API in a worker thread: the
reference) and on ``default`` (aorm, natively). The values returned (with
primary keys replaced by what they name), the exception raised (class and
message) and the signals sent must be equal.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
import warnings
import zoneinfo
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.contenttypes.models import ContentType
from django.db import connections
from django.db.models import (
    Avg,
    BigIntegerField,
    BinaryField,
    BooleanField,
    CharField,
    Count,
    DateField,
    DateTimeField,
    DecimalField,
    DurationField,
    F,
    FloatField,
    JSONField,
    Min,
    Sum,
    TimeField,
    UUIDField,
    Value,
    signals,
)
from django.db.models.functions import Cast
from django.test import override_settings
from students.models import Student

import aorm
from tests.app.models import Author, Book, Edge, Note, Tag
from tests.conftest import ALL_DATABASES

pytestmark = ALL_DATABASES

Case = Callable[[str], Awaitable[Any]]


def clean() -> None:
    for model in (Edge, Note, Book, Tag, Author, Student):
        model.objects.using("stock").all().delete()


async def run_sync(db: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Synchronous ORM code: in a thread on Django's backend, natively on aorm's."""
    if db == "stock":
        return await sync_to_async(fn)(*args)
    return await aorm.run(fn, *args)


# --- Parameters of raw SQL, as each driver sends them ---------------------------------------

PARAMETERS = {
    "str": "a'\\\x01\n\"é😀",
    "empty": "",
    "int": 2**62,
    "negative": -7,
    "float": 0.1 + 0.2,
    "tiny float": 1e-300,
    "decimal": Decimal("12.3400"),
    "decimal exponent": Decimal("1E+2"),
    "bool": True,
    "none": None,
    "bytes": b"\x00\x01'\\ab",
    "bytearray": bytearray(b"ab'"),
    "memoryview": memoryview(b"ab'"),
    "date": datetime.date(2020, 2, 29),
    "time": datetime.time(1, 2, 3, 4),
    "uuid": uuid.UUID(int=2**100 + 7),
    "tuple": (1, 2),
    "list": [1, 2],
}


def select_parameter(db: str, value: Any) -> Any:
    with connections[db].cursor() as cursor:
        cursor.execute("SELECT %s", [value])
        (row,) = cursor.fetchall()
    return row


async def raw_parameters(db: str) -> Any:
    results = {}
    for name, value in PARAMETERS.items():
        try:
            results[name] = await run_sync(db, select_parameter, db, value)
        except Exception as exc:
            results[name] = ("raised", type(exc).__name__)
    return results


def store_bytes(db: str) -> Any:
    blob = {"postgresql": "bytea", "mysql": "longblob", "sqlite": "blob"}[connections[db].vendor]
    with connections[db].cursor() as cursor:
        cursor.execute(f"CREATE TEMPORARY TABLE parity_bytes (b {blob}, t varchar(10))")
        try:
            insert = "INSERT INTO parity_bytes (b, t) VALUES (%s, %s)"
            cursor.execute(insert, [b"\xff\x00'\\\x80", "AbC"])
            cursor.execute(insert, [bytearray(b"\x01\xfe"), "x"])
            cursor.execute("SELECT b, t FROM parity_bytes ORDER BY t")
            rows = [(bytes(b), t) for b, t in cursor.fetchall()]
            try:  # bytes compared with text: by the column's collation, or by bytes?
                cursor.execute("SELECT count(*) FROM parity_bytes WHERE t = %s", [b"abc"])
                compared = cursor.fetchall()
            except Exception as exc:
                compared = type(exc).__name__
        finally:
            cursor.execute("DROP TABLE parity_bytes")
    return rows, compared


async def bytes_stored_and_compared(db: str) -> Any:
    return await run_sync(db, store_bytes, db)


async def raw_queryset_with_a_sequence(db: str) -> Any:
    await Student.objects.using(db).abulk_create(
        Student(name=f"s{i}", age=age) for i, age in enumerate([19, 20, 21])
    )
    sql = "SELECT * FROM students_student WHERE age IN %s ORDER BY age"
    return [
        [s.name async for s in Student.objects.using(db).raw(sql, [(19, 21)])],
        [s.name for s in await Student.objects.using(db).raw(sql, [[20, 21]])],
    ]


# --- Signals ---------------------------------------------------------------------------------


def _natural(value: Any, db: str) -> Any:
    if isinstance(value, Author | Tag | Student):
        return (type(value).__name__, value.name)
    if isinstance(value, Book):
        return ("Book", value.title)
    if isinstance(value, str) and value == db:
        return "<alias>"
    if isinstance(value, set | frozenset):
        return sorted(value)
    if isinstance(value, type):
        return value.__name__
    if hasattr(value, "model") and hasattr(value, "query"):  # a QuerySet (delete's origin)
        return ("QuerySet", value.model.__name__)
    return value


async def signals_sent(db: str) -> Any:
    sent: list[Any] = []
    names = {}
    kinds = ("pre_save", "post_save", "pre_delete", "post_delete", "m2m_changed")

    def receiver_for(kind: str) -> Callable[..., None]:
        def receiver(sender: Any, **kwargs: Any) -> None:
            kwargs.pop("signal")
            sent.append((kind, sender.__name__, {k: _natural(v, db) for k, v in kwargs.items()}))

        return receiver

    receivers = {kind: receiver_for(kind) for kind in kinds}
    for kind, receiver in receivers.items():
        getattr(signals, kind).connect(receiver)
    try:
        objects = Author.objects.using(db)
        ann = await objects.acreate(name="ann")
        ann.name = "anne"
        await ann.asave(update_fields=["name"])
        await objects.aget_or_create(name="bob", defaults={})
        await objects.aupdate_or_create(name="bob", defaults={"name": "bobby"})
        await objects.aupdate_or_create(name="cid", create_defaults={"name": "cid"})
        book = await Book.objects.using(db).acreate(title="b", author=ann)
        red = await Tag.objects.using(db).acreate(name="red")
        blue = await Tag.objects.using(db).acreate(name="blue")
        names.update({("Tag", red.pk): "red", ("Tag", blue.pk): "blue", ("Book", book.pk): "b"})
        await book.tags.aadd(red, blue)
        await book.tags.aremove(red)
        await book.tags.aset([red])
        await red.books.aclear()
        await blue.books.aadd(book)
        await book.arefresh_from_db()
        deleted = await ann.adelete()
        deleted_tags = await Tag.objects.using(db).filter(name="blue").adelete()
    finally:
        for kind, receiver in receivers.items():
            getattr(signals, kind).disconnect(receiver)
    for _, _, kwargs in sent:
        if isinstance(kwargs.get("pk_set"), list):
            kwargs["pk_set"] = sorted(names[kwargs["model"], pk] for pk in kwargs["pk_set"])
    return sent, deleted, deleted_tags


# --- Concurrency: Django's retries after an IntegrityError ------------------------------------


async def racing_get_or_create(db: str) -> Any:
    objects = Author.objects.using(db)
    results = await asyncio.gather(*(objects.aget_or_create(name="race") for _ in range(6)))
    return sorted(created for _, created in results), len({obj.pk for obj, _ in results})


async def racing_update_or_create(db: str) -> Any:
    objects = Author.objects.using(db)
    results = await asyncio.gather(
        *(objects.aupdate_or_create(name="race", defaults={"name": "race"}) for _ in range(6))
    )
    return sorted(created for _, created in results), await objects.acount()


# --- Bulk operations --------------------------------------------------------------------------


async def bulk_create_conflicts(db: str) -> Any:
    objects = Author.objects.using(db)
    await objects.acreate(name="ann")
    ignored = await objects.abulk_create(
        [Author(name="ann"), Author(name="bob")], ignore_conflicts=True
    )
    result: list[Any] = [[(a.name, a.pk is not None) for a in ignored]]
    try:
        upserted = await objects.abulk_create(
            [Author(name="bob"), Author(name="cid")],
            update_conflicts=True,
            unique_fields=["name"],
            update_fields=["name"],
        )
    except Exception as exc:
        result.append(("raised", type(exc).__name__, str(exc)))
    else:
        actual = {a.name: a.pk async for a in objects.all()}
        result.append([(a.name, a.pk == actual[a.name]) for a in upserted])
    made = await Student.objects.using(db).abulk_create(
        [Student(name=f"s{i}", age=i) for i in range(5)], batch_size=2
    )
    actual = {s.name: s.pk async for s in Student.objects.using(db).all()}
    result.append([s.pk == actual[s.name] for s in made])
    return result


async def related_managers_of_the_instances_alias(db: str) -> Any:
    """Each related manager works on its instance's alias (``stock``: Django's, in threads)."""
    ann = await Author.objects.using(db).acreate(name="ann")
    book = await ann.books.acreate(title="b1")
    made = await ann.books.aget_or_create(title="b2")
    red = await book.tags.acreate(name="red")
    await red.books.aadd(made[0])
    await run_sync(db, ContentType.objects.db_manager(db).get_for_model, Author)  # cached
    await ann.notes.acreate(text="n")
    return (
        [b.title async for b in ann.books.all()],
        await red.books.acount(),
        await ann.notes.acount(),
        await book.tags.aexists(),
    )


# --- Values through the driver ----------------------------------------------------------------


WHEN = datetime.datetime(2024, 3, 31, 1, 30, 0, 123456, tzinfo=datetime.UTC)  # Paris: DST day

ANNOTATIONS: dict[str, Any] = {
    "decimal": Value(Decimal("12.3400"), DecimalField(max_digits=10, decimal_places=4)),
    "negative decimal": Value(Decimal("-0.5"), DecimalField(max_digits=3, decimal_places=1)),
    "duration": Value(datetime.timedelta(days=-1, microseconds=5), DurationField()),
    "uuid": Value(uuid.UUID(int=2**100 + 7), UUIDField()),
    "time": Value(datetime.time(23, 59, 59, 999999), TimeField()),
    "date": Value(datetime.date(2020, 2, 29), DateField()),
    "datetime": Value(WHEN, DateTimeField()),
    "float": Value(0.1 + 0.2, FloatField()),
    "binary": Value(b"\x00\xff\x80", BinaryField()),
    "empty": Value("", CharField()),
    "null": Value(None, CharField()),
    "json": Value({"a": [1, None, 2.5, "é"], "b": {"c": True}}, JSONField()),
    "json null": Value(None, JSONField()),
    "big": Value(2**62, BigIntegerField()),
    "bool": Value(True, BooleanField()),
    "cast": Cast(Value("12.5"), DecimalField(max_digits=5, decimal_places=2)),
}


async def annotated_values(db: str) -> Any:
    objects = Edge.objects.using(db)
    await objects.acreate(label="x")
    results = {}
    for name, value in ANNOTATIONS.items():
        try:
            got = await objects.annotate(v=value).values_list("v", flat=True).aget(label="x")
            results[name] = (
                type(got).__name__,
                bytes(got) if isinstance(got, memoryview) else got,
            )
        except Exception as exc:
            results[name] = ("raised", type(exc).__name__)
    return results


async def stored_values(db: str) -> Any:
    objects = Edge.objects.using(db)
    await objects.abulk_create(
        [
            Edge(label="null", data=None),
            Edge(label="json null", data=Value(None, JSONField())),
            Edge(label="nested", data={"k": None, "l": [{"m": 2**53 + 1}], "f": 1e-7}),
            Edge(label="string", data="text", text="x" * 70_000),
            Edge(label="when", when=WHEN, big=-(2**63)),
        ]
    )
    return (
        [(e.label, e.data, len(e.text), e.when, e.big) async for e in objects.order_by("label")],
        await objects.filter(data__isnull=True).acount(),
        await objects.filter(data=None).acount(),
        await objects.filter(data__k=None).acount(),
        await objects.filter(data__l__0__m=2**53 + 1).acount(),
        await objects.filter(when=WHEN).acount(),
    )


async def naive_datetimes(db: str) -> Any:
    objects = Edge.objects.using(db)
    edge = await objects.acreate(label="n", when=datetime.datetime(2024, 7, 1, 12, 30))
    return await each(
        {
            "stored": lambda: objects.values_list("when", flat=True).aget(pk=edge.pk),
            "hour": lambda: objects.filter(when__hour=12).acount(),
            "datetimes": lambda: listed(objects.datetimes("when", "hour")),
        }
    )


async def time_zone_settings_changed(db: str) -> Any:
    """Pooled connections follow ``USE_TZ`` and ``TIME_ZONE`` as they change (tests do)."""
    await Edge.objects.using(db).acount()  # a pooled connection, set up with the old ones
    results = []
    for changed in ({"USE_TZ": False}, {"TIME_ZONE": "America/New_York"}):
        with override_settings(**changed), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a naive datetime with USE_TZ
            results.append(await naive_datetimes(db))
        await Edge.objects.using(db).all().adelete()
    return results


# --- Iterating and awaiting -------------------------------------------------------------------


async def library(db: str) -> None:
    ann = await Author.objects.using(db).acreate(name="ann")
    bob = await Author.objects.using(db).acreate(name="bob")
    red = await Tag.objects.using(db).acreate(name="red")
    for i, (author, when) in enumerate(
        [(ann, WHEN), (ann, None), (bob, WHEN.replace(month=11, day=2))]
    ):
        book = await Book.objects.using(db).acreate(title=f"b{i}", author=author, published=when)
        if i != 1:
            await book.tags.aadd(red)


async def each(calls: dict[str, Callable[[], Awaitable[Any]]]) -> dict[str, Any]:
    """Every call's outcome, in order: one that raises does not hide the next."""
    results: dict[str, Any] = {}
    for name, call in calls.items():
        try:
            results[name] = ("returned", await call())
        except Exception as exc:
            results[name] = ("raised", type(exc).__name__, str(exc))
    return results


async def listed(iterable: Any) -> list[Any]:
    return [item async for item in iterable]


async def awaited(awaitable: Any) -> Any:
    return await awaitable


async def iterating(db: str) -> Any:
    await library(db)
    books = Book.objects.using(db)
    authors = Author.objects.using(db)
    paris = zoneinfo.ZoneInfo("Europe/Paris")
    raw = "SELECT id, name, 1 AS n FROM app_author WHERE name = %s"

    async def prefetched() -> Any:
        related = books.select_related("author").prefetch_related("tags")
        return [
            (b.title, [t.name for t in b.tags.all()], b.author.name)
            async for b in related.aiterator(chunk_size=2)
        ]

    return await each(
        {
            "values": lambda: listed(books.values("title", "author__name")),
            "flat": lambda: listed(books.values_list("title", flat=True)),
            "named": lambda: listed(books.values_list("title", "pages", named=True)),
            "dates": lambda: listed(books.dates("published", "month")),
            "datetimes": lambda: listed(books.datetimes("published", "hour")),
            "datetimes tz": lambda: listed(books.datetimes("published", "hour", tzinfo=paris)),
            "await datetimes": lambda: books.datetimes("published", "day", order="DESC").aall(),
            "aiterator prefetch": prefetched,
            # values_list() without flat=True: Django's aiterator() raises SynchronousOnlyOperation
            "aiterator": lambda: listed(books.values_list("title", flat=True).aiterator(1)),
            "aiterator values": lambda: listed(books.values("title").aiterator(chunk_size=2)),
            "await raw": lambda: awaited(authors.raw("SELECT * FROM app_author")),
            "raw params": lambda: listed(authors.raw(raw, ["bob"])),
            "grouped": lambda: books.values_list("author__name").annotate(n=Count("id")).aall(),
        }
    )


async def queries(db: str) -> Any:
    await library(db)
    books = Book.objects.using(db)
    empty = books.filter(title="none")
    return await each(
        {
            "aggregate": lambda: books.aaggregate(
                n=Count("id"), avg=Avg("pages"), sum=Sum("pages"), first=Min("published")
            ),
            "empty aggregate": lambda: empty.aaggregate(
                n=Count("id"), avg=Avg("pages"), sum=Sum("pages", default=0)
            ),
            "first unordered": lambda: books.order_by().afirst(),
            "last": lambda: books.alast(),
            "first empty": lambda: empty.afirst(),
            "in_bulk": lambda: Author.objects.using(db).ain_bulk(["ann"], field_name="name"),
            "exists": lambda: empty.aexists(),
            "count distinct": lambda: books.values("author").distinct().acount(),
            "update": lambda: books.filter(published__isnull=False).aupdate(pages=F("pages") + 1),
            "latest without ordering": lambda: books.alatest(),
            "update a slice": lambda: books.all()[:1].aupdate(pages=1),
            "delete a slice": lambda: books.all()[:1].adelete(),
            "delete distinct": lambda: books.distinct("title").adelete(),
            "get two": lambda: books.aget(author__name="ann"),
            "get none": lambda: books.aget(title="none"),
            "in_bulk not unique": lambda: books.ain_bulk(["b0"], field_name="title"),
            "iterator bad chunk": lambda: books.aiterator(chunk_size=0).__anext__(),
            "create a duplicate": lambda: Author.objects.using(db).acreate(name="ann"),
            "contains other model": lambda: books.acontains(Author(pk=1)),
            "delete cascade": lambda: Author.objects.using(db).filter(name="ann").adelete(),
            "delete m2m": lambda: Tag.objects.using(db).all().adelete(),
        }
    )


def natural(value: Any) -> Any:
    """Model instances by what they name (their primary keys differ between the runs)."""
    if isinstance(value, Author | Tag | Student):
        return (type(value).__name__, value.name)
    if isinstance(value, Book):
        return ("Book", value.title)
    if isinstance(value, dict):
        return {key: natural(item) for key, item in value.items()}
    if isinstance(value, tuple):  # named tuples too (values_list(named=True))
        return (type(value).__name__, *(natural(item) for item in value))
    if isinstance(value, list):
        return [natural(item) for item in value]
    return value


CASES: list[Case] = [
    raw_parameters,
    raw_queryset_with_a_sequence,
    bytes_stored_and_compared,
    signals_sent,
    racing_get_or_create,
    racing_update_or_create,
    bulk_create_conflicts,
    related_managers_of_the_instances_alias,
    annotated_values,
    stored_values,
    iterating,
    queries,
    time_zone_settings_changed,
]


async def outcome(case: Case, alias: str) -> Any:
    await sync_to_async(clean)()
    try:
        return ("returned", natural(await case(alias)))
    except Exception as exc:
        return ("raised", type(exc).__name__, str(exc))


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.__name__)
async def test_same_outcome_as_djangos_backend(case: Case) -> None:
    if case is racing_update_or_create and settings.DATABASE == "mysql":
        pytest.skip("InnoDB deadlocks concurrent duplicate inserts, in Django's threads too")
    stock = await outcome(case, "stock")
    native = await outcome(case, "default")
    assert native == stock
