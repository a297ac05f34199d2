"""The query cache (``AORM_QUERY_CACHE_SIZE``): Django's rows, for every shape; bounded; off.

Each shape of the matrix runs with several values, twice over, on ``default``
(aorm, cache on) and is compared with two uncached references: the same
QuerySet on the ``stock`` alias (Django's own backend, same database) and on
``default`` with the cache switched off. A shape the cache must reuse has to
hit it on the second pass; a shape it must not key (expressions,
annotations...) must never hit.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import User
from django.core import checks
from django.db import connections, models
from django.db.models import Count, F, Q
from django.db.models.lookups import Lookup
from django.test import override_settings
from django.test.utils import isolate_apps, register_lookup

from aorm import _query_cache
from aorm.checks import check_settings
from tests.app.models import Author, Book, Edge, Student
from tests.conftest import ALL_DATABASES

pytestmark = ALL_DATABASES

OFF = {_query_cache.SETTING: 0}
NOON = datetime.datetime(2024, 5, 1, 12, tzinfo=datetime.UTC)


class InlinedEquals(Lookup):  # type: ignore[type-arg]
    """A custom lookup whose SQL depends on its value: the value is written into the SQL."""

    lookup_name = "inlined"

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs, params = self.process_lhs(compiler, connection)
        return f"{lhs} = {int(self.rhs)}", list(params)


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    _query_cache.clear()
    with register_lookup(models.IntegerField, InlinedEquals):
        yield
    _query_cache.clear()


async def data() -> None:
    for i in range(6):
        await Student.objects.acreate(name=f"s{i}", age=18 + i % 3)
    ann = await Author.objects.acreate(name="ann")
    bob = await Author.objects.acreate(name="bob")
    for title, author, pages, published in (
        ("b1", ann, 120, NOON),
        ("b2", ann, 80, None),
        ("b3", bob, 300, NOON + datetime.timedelta(days=1)),
    ):
        await Book.objects.acreate(title=title, author=author, pages=pages, published=published)
    for label, when in (("x", None), ("y", NOON), ("z", None)):
        await Edge.objects.acreate(label=label, when=when)
    await User.objects.acreate(username="on", is_active=True)
    await User.objects.acreate(username="off", is_active=False)


def row(item: Any) -> Any:
    """A row as comparable data: a model instance's fields and the related objects it holds."""
    if not isinstance(item, models.Model):
        return item
    fields = {name: value for name, value in vars(item).items() if not name.startswith("_")}
    related = {name: row(obj) for name, obj in item._state.fields_cache.items()}
    return type(item), fields, related


# name, QuerySet of a value, values, reused: True (must hit on the second pass),
# False (must never hit: not keyed), None (either: Django may change the query
# while compiling it, e.g. joining for select_related).
Shape = tuple[str, Callable[[Any], Any], list[Any], bool | None]
SHAPES: list[Shape] = [
    ("exact", lambda v: Student.objects.filter(name=v), ["s1", "s4", "nobody"], True),
    ("exclude", lambda v: Student.objects.exclude(age=v), [18, 19, 99], True),
    ("Q or", lambda v: Student.objects.filter(Q(age=v) | Q(name="s1")), [18, 20], True),
    ("negated Q", lambda v: Student.objects.filter(~Q(age__gte=v)), [19, 21], True),
    (
        "Q and, nested or",
        lambda v: Student.objects.filter(Q(age__lt=v), Q(name="s0") | ~Q(name__endswith="2")),
        [19, 30],
        True,
    ),
    ("F expression", lambda v: Student.objects.filter(age__gte=F("id") + v), [0, 10], False),
    (
        "annotation",
        lambda v: Author.objects.annotate(n=Count("books")).filter(n__gte=v),
        [1, 2],
        False,
    ),
    ("values", lambda v: Student.objects.filter(age__lte=v).values("name", "age"), [18, 20], True),
    (
        "values_list flat",
        lambda v: Student.objects.filter(age=v).values_list("name", flat=True),
        [18, 19],
        True,
    ),
    (
        "values_list named",
        lambda v: Student.objects.filter(age=v).values_list("name", "age", named=True),
        [19, 20],
        True,
    ),
    (
        "select_related",
        lambda v: Book.objects.select_related("author").filter(title=v),
        ["b1", "b3"],
        None,
    ),
    ("join filter", lambda v: Book.objects.filter(author__name=v), ["ann", "bob"], True),
    (
        "ordering",
        lambda v: Student.objects.filter(age__gte=v).order_by("-age", "name"),
        [18, 20],
        True,
    ),
    (
        "ordering by a relation",
        lambda v: Book.objects.filter(pages__gte=v).order_by("author__name", "-title"),
        [0, 100],
        None,
    ),
    ("slicing", lambda v: Student.objects.all()[v : v + 2], [0, 1, 3], True),
    ("slicing a filter", lambda v: Student.objects.filter(age__gt=v)[1:3], [17, 18], True),
    ("None", lambda v: Edge.objects.filter(when=v), [None, NOON], True),
    ("isnull", lambda v: Edge.objects.filter(when__isnull=v), [True, False], True),
    (
        "datetime",
        lambda v: Book.objects.filter(published__gte=v),
        [NOON, NOON.replace(day=2)],
        True,
    ),
    (
        "__in",
        lambda v: Student.objects.filter(age__in=v),
        [[18], [18, 19], [18, 19, 20], (19, 20), [None, 18], [18, 18, 19], []],
        True,
    ),
    ("__in of pks", lambda v: Student.objects.filter(pk__in=v), [[1], [1, 2, 3]], True),
    ("range", lambda v: Student.objects.filter(age__range=(v, v + 1)), [18, 19], True),
    ("contains", lambda v: Student.objects.filter(name__contains=v), ["1", "s", "%"], True),
    ("boolean", lambda v: User.objects.filter(is_active=v), [True, False], True),
    ("custom lookup", lambda v: Student.objects.filter(age__inlined=v), [18, 19, 20], True),
    (
        "distinct",
        lambda v: Student.objects.filter(age__gte=v).values("age").distinct(),
        [18, 19],
        True,
    ),
]


async def reference(queryset: Any) -> list[Any]:
    """The rows of ``queryset`` as Django's own backend gives them (no aorm compile)."""
    return await sync_to_async(lambda: [row(item) for item in queryset.using("stock")])()


@pytest.mark.parametrize("shape", SHAPES, ids=[shape[0] for shape in SHAPES])
async def test_the_same_rows_as_django(shape: Shape) -> None:
    name, queryset_of, values, reused = shape
    await data()
    expected = [await reference(queryset_of(value)) for value in values]
    with override_settings(**OFF):  # (switching it empties the cache)
        for value, rows in zip(values, expected, strict=True):
            assert [row(item) for item in await queryset_of(value)] == rows, (name, value)
    for pass_ in (1, 2):
        hits = _query_cache.info().hits
        for value, rows in zip(values, expected, strict=True):
            assert [row(item) for item in await queryset_of(value)] == rows, (name, value)
        if pass_ == 2 and reused is not None:
            assert (_query_cache.info().hits > hits) is reused, name


async def test_aget_and_the_model_cache_per_value() -> None:
    await data()
    for name in ["s2", "s3", "s2"]:
        student = await Student.objects.aget(name=name)
        assert (student.name, student.age) == (name, 18 + int(name[1]) % 3)
    assert _query_cache.info().hits == 2
    with pytest.raises(Student.DoesNotExist):
        await Student.objects.aget(name="nobody")


async def test_each_alias_has_its_own_entries() -> None:
    await data()
    aliases = ["default", "unpooled", "defaults"]
    for alias in aliases * 2:
        assert [s.name for s in await Student.objects.using(alias).filter(age=18)] == ["s0", "s3"]
    info = _query_cache.info()
    assert (info.entries, info.hits) == (len(aliases), len(aliases))
    await sync_to_async(list)(Student.objects.using("stock").filter(age=18))
    assert _query_cache.info().entries == len(aliases)  # Django's own backend: never cached


async def test_bounded() -> None:
    await data()
    with override_settings(**{_query_cache.SETTING: 2}):
        for i, shape in enumerate(SHAPES[:5] * 2):
            await shape[1](shape[2][0])
            assert _query_cache.info().entries <= 2, i
        hits = _query_cache.info().hits
        await SHAPES[4][1](SHAPES[4][2][0])  # the most recent shape is still there
        assert _query_cache.info().hits == hits + 1


async def test_off_when_switched_off() -> None:
    await data()
    with override_settings(**OFF):
        for _ in range(3):
            assert len(await Student.objects.filter(age=18)) == 2
            await Student.objects.aget(name="s1")
        assert _query_cache.info() == (0, 0, 0, 0)
    assert len(await Student.objects.filter(age=18)) == 2
    assert _query_cache.info().entries == 1


def _schema(action: Callable[[Any], None]) -> None:
    with connections["stock"].schema_editor() as editor:
        action(editor)


@isolate_apps("tests.app")
async def test_schema_changes() -> None:
    class Temporary(models.Model):
        name = models.CharField(max_length=10)

        class Meta:
            app_label = "app"
            db_table = "aorm_query_cache_temporary"

    await sync_to_async(_schema)(lambda editor: editor.create_model(Temporary))
    try:
        await Temporary.objects.acreate(name="t")
        for _ in range(2):
            assert [vars(t)["name"] for t in await Temporary.objects.filter(name="t")] == ["t"]
        assert _query_cache.info().hits == 1

        # A column added to the model and the table: selected from then on.
        age = models.IntegerField(default=7)
        await sync_to_async(_schema)(
            lambda editor: (age.set_attributes_from_name("age"), editor.add_field(Temporary, age))
        )
        assert [vars(t)["name"] for t in await Temporary.objects.filter(name="t")] == ["t"]
        age.contribute_to_class(Temporary, "age")
        assert [(t.name, t.age) for t in await Temporary.objects.filter(name="t")] == [("t", 7)]
    finally:
        await sync_to_async(_schema)(lambda editor: editor.delete_model(Temporary))

    # Another model on the same table, with other columns.
    class Replacement(models.Model):
        label = models.CharField(max_length=10)

        class Meta:
            app_label = "app"
            db_table = "aorm_query_cache_temporary"

    await sync_to_async(_schema)(lambda editor: editor.create_model(Replacement))
    try:
        await Replacement.objects.acreate(label="u")
        assert [vars(t)["label"] for t in await Replacement.objects.filter(pk__gte=0)] == ["u"]
    finally:
        await sync_to_async(_schema)(lambda editor: editor.delete_model(Replacement))


def test_check_of_the_setting() -> None:
    for good in (0, 1, 5000):
        with override_settings(**{_query_cache.SETTING: good}):
            assert not [m for m in check_settings() if m.id == "aorm.E005"]
    for bad in (-1, True, "100", 1.5, None):
        with override_settings(**{_query_cache.SETTING: bad}):
            errors = [m for m in check_settings() if m.id == "aorm.E005"]
            assert len(errors) == 1 and errors[0].level == checks.ERROR, bad
