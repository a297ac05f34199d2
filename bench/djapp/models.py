from django.db import models

from bench import common


class Student(models.Model):
    name = models.CharField(max_length=100)
    age = models.IntegerField()

    class Meta:
        app_label = "djapp"
        db_table = common.TABLE
