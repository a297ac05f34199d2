"""Channels: an ``AsyncWebsocketConsumer`` using the ORM natively, and ``database_sync_to_async``.

The consumer awaits the ORM as any async code does (``acreate``,
``async with transaction.atomic()``, ``aorm.afetch``), driven by Channels'
``WebsocketCommunicator``: every statement runs on the event loop's thread.
Existing ``database_sync_to_async`` code keeps working: it is a
``SyncToAsync`` subclass, so it runs in a worker thread on Django's
synchronous connection, as with stock Django, except inside an
``async with transaction.atomic()`` block when every alias is aorm's, where
aorm runs it natively in the transaction.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.urls import path

from aorm import _sync_to_async
from tests.app.models import Author, Book
from tests.conftest import ALL_DATABASES, SqlLog
from tests.frameworks.channels_consumers import LegacyConsumer, LibraryConsumer

pytestmark = ALL_DATABASES

application = URLRouter(
    [
        path("ws/library/<str:author>/", LibraryConsumer.as_asgi()),
        path("ws/legacy/", LegacyConsumer.as_asgi()),
    ]
)


class Boom(Exception):
    pass


@pytest.fixture
def all_aliases_aorm(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Treat the configuration as all-aorm (the suite keeps a stock reference alias)."""
    monkeypatch.setattr(_sync_to_async, "every_alias_native", lambda: True)
    yield


async def test_consumer_uses_the_orm_natively(sql_log: SqlLog) -> None:
    await Author.objects.acreate(name="ann")
    sql_log.clear()
    communicator = WebsocketCommunicator(application, "/ws/library/ann/")
    connected, _ = await communicator.connect()
    assert connected
    await communicator.send_json_to({"action": "add", "title": "b1", "tags": ["red", "blue"]})
    assert await communicator.receive_json_from() == {
        "title": "b1",
        "author": "ann",
        "tags": ["red", "blue"],
    }
    # A failed transaction: nothing of it is kept; the consumer's error closes the socket.
    await communicator.send_json_to({"action": "add", "title": "b2", "tags": []})
    with pytest.raises(ValueError, match="a book needs a tag"):
        await communicator.wait()
    assert not await Book.objects.filter(title="b2").aexists()

    again = WebsocketCommunicator(application, "/ws/library/ann/")
    assert (await again.connect())[0]
    await again.send_json_to({"action": "list"})
    assert await again.receive_json_from() == [
        {"title": "b1", "author": "ann", "tags": ["red", "blue"]}
    ]
    await again.disconnect()
    assert sql_log.statements
    assert sql_log.threads() == {threading.get_ident()}


async def test_database_sync_to_async_runs_in_a_thread(sql_log: SqlLog) -> None:
    ann = await Author.objects.acreate(name="ann")
    await Book.objects.acreate(title="b1", author=ann)
    sql_log.clear()
    communicator = WebsocketCommunicator(application, "/ws/legacy/")
    assert (await communicator.connect())[0]
    await communicator.send_json_to({})
    assert await communicator.receive_json_from() == {"titles": ["b1"], "count": 1}
    await communicator.disconnect()
    # As with stock Django: a worker thread, on Django's synchronous connection.
    assert sql_log.statements and threading.get_ident() not in sql_log.threads()


async def test_database_sync_to_async_inside_an_async_transaction(
    sql_log: SqlLog, all_aliases_aorm: None
) -> None:
    ann = await Author.objects.acreate(name="ann")

    @database_sync_to_async
    def add(title: str) -> Any:
        return Book.objects.create(title=title, author=ann)

    sql_log.clear()
    with pytest.raises(Boom):
        async with transaction.atomic():
            await add("b1")
            assert await Book.objects.filter(title="b1").aexists()  # the same transaction
            raise Boom
    assert not await Book.objects.filter(title="b1").aexists()  # rolled back with it
    assert sql_log.threads() == {threading.get_ident()}  # natively, in the transaction
