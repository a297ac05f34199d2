"""The seeds' async views, verbatim."""

from django.http import JsonResponse

from .models import Student


async def student_list(request):
    students = await Student.objects.all()
    data = [{"name": s.name, "age": s.age} for s in students]
    return JsonResponse(data, safe=False)


# fmt: off
async def example_view(request):

    # Create
    await Student.objects.acreate(name="Ravi", age=21)

    # Get one
    student = await Student.objects.aget(name="Ravi")

    # Count
    total = await Student.objects.acount()

    return JsonResponse({
        "student": student.name,
        "total_students": total
    })
# fmt: on
