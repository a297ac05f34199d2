"""The seeds' async views, verbatim, and the rest of a small JSON API around them."""

import json
from pathlib import Path

from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import aget_object_or_404
from django.views.decorators.http import require_http_methods

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


class BadRequest(Exception):
    """The request body is not what the API expects: a 400, nothing written."""


def load_json(body: bytes) -> object:
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("the body is nested too deeply") from None


NAME_MAX_LENGTH = Student._meta.get_field("name").max_length


def validate_name(name: object) -> None:
    """What the database would reject, rejected first and alike on every database.

    PostgreSQL refuses a name longer than the column (SQLite stores it) and any NUL
    character (SQLite stores it too); neither stores a lone surrogate.
    """
    if not isinstance(name, str) or not name.strip():
        raise BadRequest('"name" must be a non-empty string')
    if NAME_MAX_LENGTH is not None and len(name) > NAME_MAX_LENGTH:
        raise BadRequest(f'"name" must be at most {NAME_MAX_LENGTH} characters, not {len(name)}')
    if "\x00" in name:
        raise BadRequest('"name" must not contain NUL (\\u0000) characters')
    try:
        name.encode()
    except UnicodeEncodeError:
        raise BadRequest('"name" must be valid Unicode (no lone surrogates)') from None


def validate_student(data: object, *, partial: bool = False) -> dict[str, object]:
    if not isinstance(data, dict):
        raise BadRequest('expected a JSON object like {"name": "Aman", "age": 20}')
    unknown = set(data) - {"name", "age"}
    if unknown:
        raise BadRequest(f"unknown field(s): {', '.join(sorted(unknown))}")
    if not partial and set(data) != {"name", "age"}:
        raise BadRequest('both "name" and "age" are required')
    if "name" in data:
        validate_name(data["name"])
    if "age" in data and (type(data["age"]) is not int or not 0 <= data["age"] <= 150):
        raise BadRequest('"age" must be an integer between 0 and 150')
    return data


def bad_request(error: Exception, request: HttpRequest) -> JsonResponse:
    """A 400 shaped like every other error of the demo (school/middleware.py)."""
    return JsonResponse({"error": str(error), "status": 400, "path": request.path}, status=400)


@require_http_methods(["POST"])
async def create_student(request: HttpRequest) -> JsonResponse:
    try:
        data = validate_student(load_json(request.body))
    except BadRequest as error:
        return bad_request(error, request)
    student = await Student.objects.acreate(**data)
    return JsonResponse(student.as_dict(), status=201)


@require_http_methods(["GET", "PATCH", "DELETE"])
async def student_detail(request: HttpRequest, student_id: int) -> JsonResponse:
    student = await aget_object_or_404(Student, id=student_id)
    if request.method == "PATCH":
        try:
            data = validate_student(load_json(request.body), partial=True)
        except BadRequest as error:
            return bad_request(error, request)
        for field, value in data.items():
            setattr(student, field, value)
        await student.asave(update_fields=list(data))
    elif request.method == "DELETE":
        await student.adelete()
        return JsonResponse({"deleted": student_id})
    return JsonResponse(student.as_dict())


@require_http_methods(["POST"])
async def enrol_class(request: HttpRequest) -> JsonResponse:
    """Create a whole class at once: every student or none, in one async transaction."""
    try:
        rows = load_json(request.body)
        if not isinstance(rows, list) or not rows:
            raise BadRequest("expected a non-empty JSON list of students")
        async with transaction.atomic():
            created = [await Student.objects.acreate(**validate_student(row)) for row in rows]
    except BadRequest as error:
        return bad_request(error, request)
    return JsonResponse([s.as_dict() for s in created], safe=False, status=201)


INDEX_HTML = (Path(__file__).parent / "index.html").read_bytes()


@require_http_methods(["GET", "HEAD"])
async def index(request: HttpRequest) -> HttpResponse:
    """A page that lists the endpoints, with a form per endpoint to try it from a browser."""
    return HttpResponse(INDEX_HTML, content_type="text/html; charset=utf-8")
