from django.db import models

from bench import common


class Student(models.Model):
    """The seeds' model, on its own small table (WEB_ROWS rows)."""

    name = models.CharField(max_length=100)
    age = models.IntegerField()

    class Meta:
        app_label = "webapp"
        db_table = common.WEB_TABLE
