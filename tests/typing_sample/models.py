from __future__ import annotations

from django.db import models


class CourseQuerySet(models.QuerySet["Course"]):
    def open(self) -> CourseQuerySet:
        return self.filter(closed=False)


class Course(models.Model):
    title = models.CharField(max_length=100)
    closed = models.BooleanField(default=False)

    objects = CourseQuerySet.as_manager()


class Student(models.Model):
    name = models.CharField(max_length=100)
    course = models.ForeignKey(Course, models.CASCADE, related_name="students")
