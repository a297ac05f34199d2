from django.db import models


class Student(models.Model):
    """The seeds' model."""

    name = models.CharField(max_length=100)
    age = models.IntegerField()

    class Meta:
        ordering = ["id"]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "age": self.age}


class Course(models.Model):
    """A course and the students enrolled in it: the demo's relation, served by django-ninja."""

    title = models.CharField(max_length=100, unique=True)
    students = models.ManyToManyField(Student, related_name="courses", blank=True)

    class Meta:
        ordering = ["id"]
