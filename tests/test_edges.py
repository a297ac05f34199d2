"""Bad input at the edges: the same Django error, or the same result, as Django's own backend.

Each case runs twice on the same database, from an empty table: on the
``stock`` alias (Django's own backend, its async API in a worker thread: the
reference) and on ``default`` (aorm, natively). Their outcomes must be equal:
the value returned or the exception raised (class and message), the rows left
in the table, and a query afterwards on the same alias (the connection, or the
pool, carries on). ``EXPECTED`` states what Django does on each database, so
that a case that silently stopped failing is noticed too.

Cases: NUL characters in text, strings over ``max_length``, integers out of
range, naive datetimes with ``USE_TZ``, values a JSONField cannot store as
JSON, a 10 MB parameter, 70,000 parameters in one ``__in``, and characters
beyond the Basic Multilingual Plane. Writes that fail write nothing: a single
row, a batch (``abulk_create``) or an ``async with transaction.atomic()``
block. On PostgreSQL some cases run again with ``server_side_binding``, where
70,000 parameters exceed what the protocol carries: the same
``OperationalError`` on both backends.
"""

from __future__ import annotations

import datetime
import warnings
import zoneinfo
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import SyncToAsync, sync_to_async
from django.conf import settings
from django.db import connections, transaction

from tests.app.models import Edge
from tests.conftest import ALL_DATABASES, postgresql_only

pytestmark = ALL_DATABASES

Case = Callable[[str], Awaitable[Any]]

NUL = "a\x00b"
TOO_LONG = "x" * 11  # Edge.label is max_length=10
TEN_MB = "é" * (5 * 1024 * 1024)  # 10 MiB of UTF-8, 5 Mi characters
ASTRAL = "😀𝄞🀄𐍈"  # outside the BMP: 4 bytes in UTF-8, 2 units in UTF-16
NAIVE = datetime.datetime(2026, 1, 1, 12, 0)


def objects(alias: str) -> Any:
    return Edge.objects.using(alias)


async def nul_in_text(db: str) -> Any:
    edge = await objects(db).acreate(label="nul", text=NUL)
    return (await objects(db).aget(pk=edge.pk)).text


async def nul_in_a_lookup(db: str) -> Any:
    await objects(db).acreate(label="plain", text="ab")
    return await objects(db).filter(text=NUL).aexists()


async def over_max_length(db: str) -> Any:
    await objects(db).acreate(label=TOO_LONG)


async def over_max_length_in_a_batch(db: str) -> Any:
    await objects(db).abulk_create([Edge(label="ok"), Edge(label=TOO_LONG), Edge(label="ok2")])


async def over_max_length_in_a_transaction(db: str) -> Any:
    async with transaction.atomic(using=db):
        await objects(db).acreate(label="first")
        await objects(db).acreate(label=TOO_LONG)


async def over_max_length_in_an_update(db: str) -> Any:
    edge = await objects(db).acreate(label="ok")
    return await objects(db).filter(pk=edge.pk).aupdate(label=TOO_LONG)


async def integer_out_of_range(db: str) -> Any:
    await objects(db).acreate(label="int", number=2**31)


async def bigint_out_of_range(db: str) -> Any:
    await objects(db).acreate(label="big", big=2**63)


async def out_of_range_in_lookups(db: str) -> Any:
    await objects(db).acreate(label="int", number=1, big=1)
    return [
        await objects(db).filter(number=2**31).acount(),
        await objects(db).filter(number__lt=2**40).acount(),
        await objects(db).filter(big__gt=-(2**63) - 1).acount(),
    ]


async def naive_datetime(db: str) -> Any:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        edge = await objects(db).acreate(label="naive", when=NAIVE)
        found = await objects(db).filter(when=NAIVE).acount()
    stored = (await objects(db).aget(pk=edge.pk)).when
    return stored, found, sorted({f"{w.category.__name__}: {w.message}" for w in caught})


async def json_not_serialisable(db: str) -> Any:
    await objects(db).acreate(label="set", data={1, 2})


async def json_nan(db: str) -> Any:
    await objects(db).acreate(label="nan", data=float("nan"))


async def json_nan_in_a_batch(db: str) -> Any:
    await objects(db).abulk_create(
        [Edge(label="ok", data={"a": 1}), Edge(label="nan", data=[1e999])]
    )


async def json_text_that_is_not_json(db: str) -> Any:
    edge = await objects(db).acreate(label="str", data='{"not": json')
    return (await objects(db).aget(pk=edge.pk)).data


async def ten_megabytes(db: str) -> Any:
    edge = await objects(db).acreate(label="big", text=TEN_MB)
    stored = (await objects(db).aget(pk=edge.pk)).text
    return len(stored), stored == TEN_MB, await objects(db).filter(text=TEN_MB).acount()


async def seventy_thousand_in(db: str) -> Any:
    await objects(db).abulk_create(Edge(label=f"e{i}", number=i) for i in range(3))
    numbers = list(range(70_000))
    pks = [edge.pk async for edge in objects(db).all()] + list(range(10**9, 10**9 + 69_997))
    return [
        await objects(db).filter(number__in=numbers).acount(),
        len(await objects(db).ain_bulk(pks)),
        await objects(db).exclude(number__in=numbers).acount(),
    ]


async def beyond_the_bmp(db: str) -> Any:
    edge = await objects(db).acreate(label=ASTRAL * 2 + "ab", text=ASTRAL * 1000)
    stored = await objects(db).aget(pk=edge.pk)
    return (
        stored.label == ASTRAL * 2 + "ab",
        stored.text == ASTRAL * 1000,
        await objects(db).filter(text__contains="𝄞🀄").acount(),
        await objects(db).filter(label__startswith="😀").acount(),
    )


async def beyond_the_bmp_over_max_length(db: str) -> Any:
    await objects(db).acreate(label="😀" * 11)


# What Django does on each database: the exception's class, or None when the
# call succeeds; then the rows left behind.
P, S, M = "postgresql", "sqlite", "mysql"
EXPECTED: dict[Case, dict[str, tuple[str | None, int]]] = {
    nul_in_text: {P: ("DataError", 0), S: (None, 1), M: (None, 1)},
    nul_in_a_lookup: {P: ("DataError", 1), S: (None, 1), M: (None, 1)},
    over_max_length: {P: ("DataError", 0), S: (None, 1), M: ("DataError", 0)},
    over_max_length_in_a_batch: {P: ("DataError", 0), S: (None, 3), M: ("DataError", 0)},
    over_max_length_in_a_transaction: {P: ("DataError", 0), S: (None, 2), M: ("DataError", 0)},
    over_max_length_in_an_update: {P: ("DataError", 1), S: (None, 1), M: ("DataError", 1)},
    integer_out_of_range: {P: ("DataError", 0), S: (None, 1), M: ("DataError", 0)},
    bigint_out_of_range: {P: ("DataError", 0), S: ("OverflowError", 0), M: ("DataError", 0)},
    out_of_range_in_lookups: {P: (None, 1), S: (None, 1), M: (None, 1)},
    naive_datetime: {P: (None, 1), S: (None, 1), M: (None, 1)},
    json_not_serialisable: {P: ("TypeError", 0), S: ("TypeError", 0), M: ("TypeError", 0)},
    json_nan: {P: ("DataError", 0), S: ("IntegrityError", 0), M: ("IntegrityError", 0)},
    json_nan_in_a_batch: {P: ("DataError", 0), S: ("IntegrityError", 0), M: ("IntegrityError", 0)},
    json_text_that_is_not_json: {P: (None, 1), S: (None, 1), M: (None, 1)},
    ten_megabytes: {P: (None, 1), S: (None, 1), M: (None, 1)},
    seventy_thousand_in: {P: (None, 3), S: (None, 3), M: (None, 3)},
    beyond_the_bmp: {P: (None, 1), S: (None, 1), M: (None, 1)},
    beyond_the_bmp_over_max_length: {P: ("DataError", 0), S: (None, 1), M: ("DataError", 0)},
}


def rows() -> list[tuple[Any, ...]]:
    """Every row, by content (10 MB texts by length), read with Django's own backend."""
    return [
        (label, len(text), text[:20], number, big, when, repr(data))
        for label, text, number, big, when, data in Edge.objects.using("stock")
        .order_by("label")
        .values_list("label", "text", "number", "big", "when", "data")
    ]


async def outcome(case: Case, alias: str) -> dict[str, Any]:
    await sync_to_async(Edge.objects.using("stock").all().delete)()
    try:
        result: Any = ("returned", await case(alias))
    except Exception as exc:
        result = ("raised", type(exc).__name__, str(exc))
    return {
        "result": result,
        "rows": await sync_to_async(rows)(),
        "then": await objects(alias).filter(label__startswith="z").acount(),  # still usable
    }


@pytest.mark.parametrize("case", list(EXPECTED), ids=lambda case: case.__name__)
async def test_same_outcome_as_djangos_backend(case: Case) -> None:
    stock = await outcome(case, "stock")
    native = await outcome(case, "default")
    assert native == stock
    error, count = EXPECTED[case][settings.DATABASE]
    assert (native["result"][1] if native["result"][0] == "raised" else None) == error, native[
        "result"
    ]
    assert len(native["rows"]) == count, native["rows"]
    if case is naive_datetime:  # stored as the current time zone's 12:00, with Django's warning
        stored, found, caught = native["result"][1]
        assert stored == NAIVE.replace(tzinfo=zoneinfo.ZoneInfo(settings.TIME_ZONE))
        assert found == 1
        assert any("received a naive datetime" in message for message in caught), caught


@pytest.fixture
def server_side_binding() -> Iterator[None]:
    """PostgreSQL's ``OPTIONS["server_side_binding"] = True`` on both aliases, then restored."""
    aliases = ("default", "stock")

    def close() -> None:
        for alias in aliases:
            connections[alias].close()

    saved = {alias: connections.settings[alias]["OPTIONS"] for alias in aliases}
    close()
    SyncToAsync.single_thread_executor.submit(close).result()
    for alias in aliases:
        connections[alias].close_pool()
        connections.settings[alias]["OPTIONS"] = {**saved[alias], "server_side_binding": True}
    try:
        yield
    finally:
        close()
        SyncToAsync.single_thread_executor.submit(close).result()
        for alias in aliases:
            connections[alias].close_pool()
            connections.settings[alias]["OPTIONS"] = saved[alias]


# With server-side binding, what changes on PostgreSQL: 70,000 parameters are
# more than the protocol carries (the three rows were written before, by a
# statement that succeeded).
SERVER_SIDE_BINDING: dict[Case, tuple[str | None, int]] = {
    seventy_thousand_in: ("OperationalError", 3),
    nul_in_text: ("DataError", 0),
    ten_megabytes: (None, 1),
    beyond_the_bmp: (None, 1),
    json_nan: ("DataError", 0),
}


@postgresql_only("server_side_binding is an option of Django's PostgreSQL backend")
@pytest.mark.parametrize("case", list(SERVER_SIDE_BINDING), ids=lambda case: case.__name__)
async def test_same_outcome_with_server_side_binding(
    case: Case, server_side_binding: None
) -> None:
    """Parameters sent apart from the query: PostgreSQL's limit of 65,535 of them applies."""
    stock = await outcome(case, "stock")
    native = await outcome(case, "default")
    assert native == stock
    error, count = SERVER_SIDE_BINDING[case]
    assert (native["result"][1] if native["result"][0] == "raised" else None) == error, native[
        "result"
    ]
    assert len(native["rows"]) == count, native["rows"]
