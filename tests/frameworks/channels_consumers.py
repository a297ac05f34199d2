"""Channels: a WebSocket consumer using the ORM natively, and one written for stock Django."""

from __future__ import annotations

import json
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.db import transaction

import aorm
from tests.app.models import Author, Book, Tag


def book_json(book: Book) -> dict[str, Any]:
    """Needs ``author`` and ``tags`` loaded: plain attribute access, no query."""
    return {
        "title": book.title,
        "author": book.author.name,
        "tags": [tag.name for tag in book.tags.all()],
    }


class LibraryConsumer(AsyncWebsocketConsumer):
    """JSON messages ``{"action": ..., ...}``; each answer is one JSON message.

    No ``database_sync_to_async``: the ORM is awaited as in any async view.
    """

    async def connect(self) -> None:
        self.author = await Author.objects.aget(name=self.scope["url_route"]["kwargs"]["author"])
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        message = json.loads(text_data or "{}")
        action = message["action"]
        if action == "add":
            async with transaction.atomic():  # the book and its tags, or nothing
                book = await Book.objects.acreate(title=message["title"], author=self.author)
                for name in message["tags"]:
                    tag, _ = await Tag.objects.aget_or_create(name=name)
                    await book.tags.aadd(tag)
                if not message["tags"]:
                    raise ValueError("a book needs a tag")
            await aorm.afetch(book, "author", "tags")
            await self.send(json.dumps(book_json(book)))
        elif action == "list":
            books = await Book.objects.filter(author=self.author).order_by("id")
            await aorm.afetch(books, "author", "tags")
            await self.send(json.dumps([book_json(book) for book in books]))

    async def disconnect(self, code: int) -> None:
        pass


class LegacyConsumer(AsyncWebsocketConsumer):
    """Written for stock Django: the ORM in ``database_sync_to_async`` functions."""

    async def connect(self) -> None:
        await self.accept()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        await self.send(json.dumps({"titles": await self.titles(), "count": await self.count()}))

    @database_sync_to_async
    def titles(self) -> list[str]:
        return [book.title for book in Book.objects.order_by("id")]

    @database_sync_to_async
    def count(self) -> int:
        return Book.objects.count()
