"""``manage.py load_students``: the sample students, once."""

from django.core.management.base import BaseCommand

from students.models import Student

# No "Ravi": the seeds' example_view creates him and expects exactly one.
SAMPLE = [("Aman", 20), ("Meera", 21), ("Priya", 20), ("Sara", 22), ("Kabir", 19)]


class Command(BaseCommand):
    help = "Load sample students (skipped when the table already has rows)."

    def handle(self, *args: object, **options: object) -> None:
        if Student.objects.exists():
            self.stdout.write(f"{Student.objects.count()} students already there; nothing loaded.")
            return
        Student.objects.bulk_create(Student(name=name, age=age) for name, age in SAMPLE)
        self.stdout.write(f"Loaded {len(SAMPLE)} sample students.")
