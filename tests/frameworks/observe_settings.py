"""Settings of the server the monitoring tools are tested in (``tests/test_observability.py``).

The test project, plus django-debug-toolbar (its SQL panel), Sentry (the
Django integration, with a transport keeping events in memory) and
OpenTelemetry (the psycopg and sqlite3 instrumentations, an in-memory span
exporter), set up as their documentation says: here, at startup. A separate
process, since these tools patch Django's classes for good.
"""

from typing import Any

import sentry_sdk
from debug_toolbar.settings import PANELS_DEFAULTS
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
from opentelemetry.instrumentation.sqlite3 import SQLite3Instrumentor
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.transport import Transport

from tests.settings import *  # noqa: F403
from tests.settings import INSTALLED_APPS, MIDDLEWARE

DEBUG = True
INSTALLED_APPS = [*INSTALLED_APPS, "django.contrib.staticfiles", "debug_toolbar"]
MIDDLEWARE = [
    "debug_toolbar.middleware.DebugToolbarMiddleware",
    "tests.frameworks.observe.opentelemetry_spans",
    *MIDDLEWARE,
]
ROOT_URLCONF = "tests.frameworks.observe"
STATIC_URL = "/static/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {"context_processors": ["django.template.context_processors.request"]},
    }
]
# The toolbar's default panels, its SQL panel replaced by aorm's.
DEBUG_TOOLBAR_PANELS = [
    "aorm.contrib.debug_toolbar.SQLPanel"
    if panel == "debug_toolbar.panels.sql.SQLPanel"
    else panel
    for panel in PANELS_DEFAULTS
]
DEBUG_TOOLBAR_CONFIG = {
    "SHOW_TOOLBAR_CALLBACK": "tests.frameworks.observe.show_toolbar",
    "IS_RUNNING_TESTS": False,
}


class MemoryTransport(Transport):
    """Sentry's envelopes, kept in memory."""

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.envelopes: list[Any] = []

    def capture_envelope(self, envelope: Any) -> None:
        self.envelopes.append(envelope)


SENTRY = MemoryTransport()
sentry_sdk.init(
    dsn="http://public@127.0.0.1/1",
    transport=SENTRY,
    integrations=[DjangoIntegration()],
    default_integrations=False,
    traces_sample_rate=1.0,
)

SPANS = InMemorySpanExporter()
TRACER_PROVIDER = TracerProvider()
TRACER_PROVIDER.add_span_processor(SimpleSpanProcessor(SPANS))
PsycopgInstrumentor().instrument(tracer_provider=TRACER_PROVIDER, skip_dep_check=True)
SQLite3Instrumentor().instrument(tracer_provider=TRACER_PROVIDER)
