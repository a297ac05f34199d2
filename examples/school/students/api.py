"""The courses API: django-ninja, whose response schema follows the ManyToMany natively.

``native(api)`` (aorm.contrib.ninja) runs ninja's validation of each async
view's result, where ``CourseOut.students`` reads ``course.students.all()``,
in aorm's bridge: on the event loop, on the async driver. Without it, that
read would raise SynchronousOnlyOperation.
"""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import aget_object_or_404
from ninja import NinjaAPI, Schema
from ninja.errors import HttpError, ValidationError
from school.middleware import error

from aorm.contrib.ninja import native

from .models import Course, Student

api = native(NinjaAPI(title="aorm demo: courses", urls_namespace="courses", docs_url=None))


class StudentOut(Schema):
    id: int
    name: str


class CourseOut(Schema):
    id: int
    title: str
    students: list[StudentOut]  # the ManyToMany


class Enrolment(Schema):
    student: int


@api.get("/courses/", response=list[CourseOut])
async def courses(request: HttpRequest) -> QuerySet[Course]:
    """Every course with its students: two queries, run when ninja reads them, natively."""
    return Course.objects.prefetch_related("students")


@api.post("/courses/{course_id}/students/", response=CourseOut)
async def enrol(request: HttpRequest, course_id: int, data: Enrolment) -> Course:
    """Enrol a student in a course; the answer lists its students, loaded by ninja natively."""
    course = await aget_object_or_404(Course, id=course_id)
    await course.students.aadd(await aget_object_or_404(Student, id=data.student))
    return course


# Errors shaped like every other error of the demo (school/middleware.py).
@api.exception_handler(Http404)
def not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return error(404, str(exc), request)


@api.exception_handler(ValidationError)
def invalid(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    return error(400, "; ".join(f"{e['loc'][-1]}: {e['msg']}" for e in exc.errors), request)


@api.exception_handler(HttpError)
def http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return error(exc.status_code, str(exc), request)  # a body that is not JSON, among others
