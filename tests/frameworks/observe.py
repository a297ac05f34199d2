"""An async view observed by debug-toolbar, Sentry and OpenTelemetry; what they recorded."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import Any

import sentry_sdk
from debug_toolbar.store import get_store
from debug_toolbar.toolbar import debug_toolbar_urls
from django.conf import settings
from django.db import connections
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import path
from opentelemetry import trace

import aorm
from tests.app.models import Author, Book

served_on: list[int] = []  # the thread of each request to books()
executed: list[tuple[str, int]] = []  # each statement of books(), with its thread


def show_toolbar(request: HttpRequest) -> bool:
    return True


def opentelemetry_span(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    """An ``execute_wrapper``: each statement as a client span of the request's span.

    (It also records each statement and its thread, the reference the tools'
    records are compared with.)
    """
    tracer = trace.get_tracer("aorm.tests", tracer_provider=settings.TRACER_PROVIDER)
    db = context["connection"]
    executed.append((sql, threading.get_ident()))
    with tracer.start_as_current_span(
        "db", kind=trace.SpanKind.CLIENT, attributes={"db.system": db.vendor, "db.statement": sql}
    ):
        return execute(sql, params, many, context)


def opentelemetry_spans(get_response: Callable[..., Any]) -> Callable[..., Any]:
    """A span per request, and the statements' spans through ``execute_wrapper`` (async only)."""

    async def middleware(request: HttpRequest) -> Any:
        tracer = trace.get_tracer("aorm.tests", tracer_provider=settings.TRACER_PROVIDER)
        with tracer.start_as_current_span(f"{request.method} {request.path}"):
            if request.path != "/books/":
                return await get_response(request)
            with contextlib.ExitStack() as stack:
                stack.enter_context(connections["default"].execute_wrapper(opentelemetry_span))
                return await get_response(request)

    return middleware


opentelemetry_spans.async_capable, opentelemetry_spans.sync_capable = True, False  # type: ignore[attr-defined]


async def books(request: HttpRequest) -> HttpResponse:
    served_on.append(threading.get_ident())
    ann, _ = await Author.objects.aget_or_create(name="ann")
    await Book.objects.acreate(title="b1", author=ann)
    listed = await Book.objects.filter(author=ann)
    await aorm.afetch(listed, "author", "tags")
    titles = ", ".join(f"{b.title} by {b.author.name}" for b in listed)
    return HttpResponse(f"<html><body><p>{titles}</p></body></html>")


async def observed(request: HttpRequest) -> JsonResponse:
    """What each tool recorded of the requests to ``books()``."""
    store = get_store()
    toolbar = []
    for request_id in store.request_ids():
        panel = store.panel(request_id, "SQLPanel") or {}
        toolbar.extend(query["sql"] for query in panel.get("queries", []))
    sentry_sdk.flush()
    sentry = []
    for envelope in settings.SENTRY.envelopes:
        for item in envelope.items:
            event = item.payload.json or {}
            if event.get("type") == "transaction" and event.get("transaction") == "/books/":
                sentry.extend(
                    (span.get("description"), span.get("data", {}).get("thread.id"))
                    for span in event["spans"]
                    if span.get("op") == "db"
                )
    spans = settings.SPANS.get_finished_spans()
    requests = {s.context.span_id: s.name for s in spans if s.parent is None}
    otel = [
        {
            "statement": s.attributes.get("db.statement"),
            "parent": requests.get(s.parent.span_id) if s.parent else None,
            "by": s.instrumentation_scope.name if s.instrumentation_scope else None,
        }
        for s in spans
        if s.attributes.get("db.statement")
    ]
    return JsonResponse(
        {
            "threads": served_on,
            "executed": executed,
            "toolbar": toolbar,
            "sentry": sentry,
            "otel": otel,
        }
    )


urlpatterns = [path("books/", books), path("observed/", observed), *debug_toolbar_urls()]
