"""Every error as JSON, so that the demo behaves like an API whatever fails.

Around the views rather than in them: the seeds' views stay verbatim, and
errors raised outside any view (an unknown URL, a method a view does not
allow, a bad Host header) are answered the same way.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Awaitable, Callable
from http import HTTPStatus

from asgiref.sync import markcoroutinefunction
from django.conf import settings
from django.core.exceptions import BadRequest, PermissionDenied, SuspiciousOperation
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.urls import is_valid_path

logger = logging.getLogger("django.request")

GetResponse = Callable[[HttpRequest], Awaitable[HttpResponse]]

# Exceptions that are the client's doing, and their status (Django's own mapping);
# anything else a view raises is a 500.
CLIENT_ERRORS: dict[type[Exception], int] = {
    Http404: 404,
    PermissionDenied: 403,
    BadRequest: 400,
    SuspiciousOperation: 400,
}


class JsonErrorsMiddleware:
    """Turn every error response and every exception into ``{"error": ...}`` JSON.

    A 500 carries the exception's type and message, and its traceback only when
    ``DEBUG`` is on; the exception is logged either way. A 405 keeps ``Allow``.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request: HttpRequest) -> HttpResponse:
        if self.needs_slash(request):
            return error(404, f"{request.path} needs a trailing slash: {request.path}/", request)
        response = await self.get_response(request)
        if response.status_code < 400 or response.get("Content-Type") == "application/json":
            return response
        return self.as_json(request, response)

    def needs_slash(self, request: HttpRequest) -> bool:
        """A POST to a URL missing its slash, which CommonMiddleware can't redirect (it raises)."""
        path = request.path_info
        if request.method in ("GET", "HEAD") or path.endswith("/"):
            return False
        return is_valid_path(f"{path}/") and not is_valid_path(path)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse:
        """An exception a view raised: a 4xx for client errors, a 500 for the rest."""
        for kind, status in CLIENT_ERRORS.items():
            if isinstance(exception, kind):
                return error(status, str(exception) or HTTPStatus(status).phrase, request)
        logger.error(
            "Internal Server Error: %s",
            request.path,
            exc_info=exception,
            extra={"status_code": 500, "request": request},
        )
        if not settings.DEBUG:
            return error(500, "internal server error (logged on the server)", request)
        message = f"{type(exception).__name__}: {exception}"
        return error(500, message, request, traceback=traceback.format_exception(exception))

    def as_json(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        """An HTML or empty error response made by Django itself, as JSON."""
        status = response.status_code
        message = {
            404: f"no endpoint or object at {request.path}; GET / lists the endpoints",
            405: f"{request.method} is not allowed here; allowed: {response.get('Allow', '')}",
        }.get(status) or phrase(status)
        converted = error(status, message, request)
        if "Allow" in response:
            converted["Allow"] = response["Allow"]
        return converted


def error(status: int, message: str, request: HttpRequest, **extra: object) -> JsonResponse:
    body = {"error": message, "status": status, "path": request.path, **extra}
    return JsonResponse(body, status=status)


def phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "error"
