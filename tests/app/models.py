from django.contrib.contenttypes.fields import GenericForeignKey, GenericRelation
from django.contrib.contenttypes.models import ContentType
from django.db import models


class Note(models.Model):
    text = models.CharField(max_length=100)
    content_type = models.ForeignKey(ContentType, models.CASCADE)
    object_id = models.PositiveIntegerField()
    target = GenericForeignKey("content_type", "object_id")


class Author(models.Model):
    name = models.CharField(max_length=100, unique=True)
    notes = GenericRelation(Note)

    class Meta:
        ordering = ["id"]


class Profile(models.Model):
    author = models.OneToOneField(Author, models.CASCADE, related_name="profile")
    bio = models.TextField(default="")


class Tag(models.Model):
    name = models.CharField(max_length=50)

    class Meta:
        ordering = ["id"]


class Book(models.Model):
    title = models.CharField(max_length=100)
    pages = models.PositiveSmallIntegerField(default=100)
    author = models.ForeignKey(Author, models.CASCADE, related_name="books")
    tags = models.ManyToManyField(Tag, related_name="books")
    published = models.DateTimeField(null=True)

    class Meta:
        ordering = ["id"]


class Event(models.Model):
    """What signal receivers write, in the tests of every path into the database."""

    kind = models.CharField(max_length=50)

    class Meta:
        ordering = ["id"]


class Edge(models.Model):
    """Bad input at the edges of every backend (tests/test_edges.py)."""

    label = models.CharField(max_length=10)
    text = models.TextField(default="")
    number = models.IntegerField(default=0)
    big = models.BigIntegerField(default=0)
    when = models.DateTimeField(null=True)
    data = models.JSONField(null=True)

    class Meta:
        ordering = ["id"]
