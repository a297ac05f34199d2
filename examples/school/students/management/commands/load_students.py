"""``manage.py load_students``: the sample students and courses, once."""

from django.core.management.base import BaseCommand

from students.models import Course, Student

# No "Ravi": the seeds' example_view creates him and expects exactly one.
SAMPLE = [("Aman", 20), ("Meera", 21), ("Priya", 20), ("Sara", 22), ("Kabir", 19)]
COURSES = {
    "Mathematics": ["Aman", "Meera", "Priya"],
    "Physics": ["Aman", "Sara"],
    "Literature": ["Kabir"],
}


class Command(BaseCommand):
    help = "Load sample students and courses (each skipped when its table already has rows)."

    def handle(self, *args: object, **options: object) -> None:
        if Student.objects.exists():
            self.stdout.write(f"{Student.objects.count()} students already there; nothing loaded.")
        else:
            Student.objects.bulk_create(Student(name=name, age=age) for name, age in SAMPLE)
            self.stdout.write(f"Loaded {len(SAMPLE)} sample students.")
        if Course.objects.exists():
            return
        for title, names in COURSES.items():
            course = Course.objects.create(title=title)
            course.students.set(Student.objects.filter(name__in=names))
        self.stdout.write(f"Loaded {len(COURSES)} sample courses.")
