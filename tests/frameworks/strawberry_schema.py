"""Strawberry (strawberry-graphql-django): async schemas whose fields follow relations."""

from __future__ import annotations

import strawberry
import strawberry_django
from django.urls import path
from strawberry import auto
from strawberry.django.views import AsyncGraphQLView
from strawberry_django.optimizer import DjangoOptimizerExtension

import aorm
from aorm.contrib.strawberry import NativeORM
from tests.app.models import Author, Book, Tag


@strawberry_django.type(Tag)
class TagType:
    id: auto
    name: auto


@strawberry_django.type(Author)
class AuthorType:
    id: auto
    name: auto
    books: list[BookType]  # reverse ForeignKey


@strawberry_django.type(Book)
class BookType:
    id: auto
    title: auto
    author: AuthorType  # ForeignKey
    tags: list[TagType]  # ManyToMany

    @strawberry_django.field
    async def author_name(self, root: Book) -> str:
        """An async resolver: it loads the relation it reads with aorm.afetch."""
        await aorm.afetch(root, "author")
        return root.author.name


@strawberry.type
class Query:
    books: list[BookType] = strawberry_django.field()  # a root QuerySet

    @strawberry_django.field
    async def book(self, title: str) -> BookType:
        return await aorm.afetch(await Book.objects.aget(title=title), "author", "tags")

    @strawberry_django.field
    def authors(self) -> list[AuthorType]:
        """A sync resolver: strawberry-django runs it where the ORM is synchronous."""
        return Author.objects.filter(books__isnull=False).distinct()


native = strawberry.Schema(query=Query, extensions=[NativeORM])
optimized = strawberry.Schema(query=Query, extensions=[NativeORM, DjangoOptimizerExtension])
plain = strawberry.Schema(query=Query)  # without NativeORM: strawberry-django's threads

urlpatterns = [
    path("graphql/", AsyncGraphQLView.as_view(schema=native)),
    path("graphql-optimized/", AsyncGraphQLView.as_view(schema=optimized)),
    path("graphql-plain/", AsyncGraphQLView.as_view(schema=plain)),
]
