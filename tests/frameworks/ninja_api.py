"""django-ninja: Schema and ModelSchema with ForeignKey and ManyToMany fields, paginated."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import path
from ninja import ModelSchema, NinjaAPI, Schema
from ninja.pagination import paginate
from ninja.responses import Status

from aorm.contrib.ninja import native
from tests.app.models import Author, Book, Tag

api = native(NinjaAPI(urls_namespace="aorm-ninja"))  # every async operation of the API

plain = NinjaAPI(urls_namespace="aorm-ninja-plain")  # without it: the problem it solves


class AuthorOut(Schema):
    id: int
    name: str


class TagOut(ModelSchema):
    class Meta:
        model = Tag
        fields = ["id", "name"]


class BookOut(Schema):
    """Nested schemas: resolving them reads ``book.author`` and ``book.tags.all()``."""

    id: int
    title: str
    author: AuthorOut
    tags: list[TagOut]


class BookModelOut(ModelSchema):
    """A ModelSchema: the ForeignKey as its id, the ManyToMany as a list of ids."""

    class Meta:
        model = Book
        fields = ["id", "title", "author", "tags"]


class BookIn(Schema):
    title: str
    author: str
    tags: list[str] = []


@api.get("/books", response=list[BookOut])
@paginate
async def books(request: HttpRequest) -> QuerySet[Book]:
    return Book.objects.all()


@api.get("/books/{book_id}", response=BookModelOut)
async def book(request: HttpRequest, book_id: int) -> Book:
    return await Book.objects.aget(id=book_id)


@api.post("/books", response={201: BookOut})
async def create_book(request: HttpRequest, data: BookIn) -> Status:
    author, _ = await Author.objects.aget_or_create(name=data.author)
    book = await Book.objects.acreate(title=data.title, author=author)
    for name in data.tags:
        await book.tags.acreate(name=name)
    return Status(201, book)


@plain.get("/books", response=list[BookOut])
async def plain_books(request: HttpRequest) -> list[Book]:
    return await Book.objects.all()


urlpatterns = [path("ninja/", api.urls), path("ninja-plain/", plain.urls)]
