from django.db import models


class Student(models.Model):
    """The seeds' model."""

    name = models.CharField(max_length=100)
    age = models.IntegerField()

    class Meta:
        ordering = ["id"]

    def as_dict(self) -> dict[str, object]:
        return {"id": self.id, "name": self.name, "age": self.age}
