from django.db import models


class Course(models.Model):
    title = models.CharField(max_length=100)


class Student(models.Model):
    name = models.CharField(max_length=100)
    course = models.ForeignKey(Course, models.CASCADE, related_name="students")
