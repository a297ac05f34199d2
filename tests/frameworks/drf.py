"""DRF with adrf: serializers with validators, related fields and nested serializers."""

from __future__ import annotations

from typing import Any

from adrf import generics
from adrf import serializers as aserializers
from adrf.views import APIView
from django.urls import path
from rest_framework import serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.validators import UniqueTogetherValidator

from aorm.contrib.drf import NativeSerializerMixin, NativeViewMixin
from tests.app.models import Author, Book, Tag


class AuthorSerializer(NativeSerializerMixin, serializers.ModelSerializer):
    """DRF's own ModelSerializer; ``name`` is unique, so DRF adds a UniqueValidator."""

    class Meta:
        model = Author
        fields = ["id", "name"]


class TagSerializer(NativeSerializerMixin, serializers.ModelSerializer):
    class Meta:
        model = Tag
        fields = ["id", "name"]


class BookSerializer(NativeSerializerMixin, aserializers.ModelSerializer):
    """adrf's ModelSerializer, written with primary keys: its asave() is adrf's."""

    author = serializers.PrimaryKeyRelatedField(queryset=Author.objects.all())
    tags = serializers.PrimaryKeyRelatedField(queryset=Tag.objects.all(), many=True)

    class Meta:
        model = Book
        fields = ["id", "title", "pages", "author", "tags"]
        validators = [
            UniqueTogetherValidator(queryset=Book.objects.all(), fields=["title", "author"])
        ]


class BookDetailSerializer(serializers.ModelSerializer):
    """Nested, read-only; no mixin: NativeViewMixin adds it."""

    author = AuthorSerializer(read_only=True)
    tags = TagSerializer(many=True, read_only=True)
    author_books = serializers.SerializerMethodField()

    class Meta:
        model = Book
        fields = ["id", "title", "author", "tags", "author_books"]

    def get_author_books(self, book: Book) -> int:
        return book.author.books.count()  # a query per book, as sync DRF code does


class AuthorCreate(APIView):
    """A hand-written adrf view: the serializer is awaited, no thread, no aorm.run."""

    async def post(self, request: Request) -> Response:
        serializer = AuthorSerializer(data=request.data)
        await serializer.ais_valid(raise_exception=True)
        await serializer.asave()
        return Response(await serializer.adata, status=201)


class WhoAmI(NativeViewMixin, APIView):
    """DRF's default authentication (session first): the user is loaded natively."""

    async def get(self, request: Request) -> Response:
        return Response({"user": request.user.get_username()})


class Pages(PageNumberPagination):
    page_size = 2


class BookList(NativeViewMixin, generics.ListCreateAPIView):
    queryset = Book.objects.all()
    pagination_class = Pages

    def get_serializer_class(self) -> Any:
        return BookSerializer if self.request.method == "POST" else BookDetailSerializer


class BookDetail(NativeViewMixin, generics.RetrieveUpdateAPIView):
    queryset = Book.objects.all()
    serializer_class = BookSerializer


urlpatterns = [
    path("drf/authors/", AuthorCreate.as_view()),
    path("drf/me/", WhoAmI.as_view()),
    path("drf/books/", BookList.as_view()),
    path("drf/books/<int:pk>/", BookDetail.as_view()),
]
