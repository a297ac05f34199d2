"""Django's test settings (its ``tests/test_sqlite.py``) on Django's own MySQL backend."""

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

from conformance._settings import mysql

DATABASES = mysql("django.db.backends.mysql", "stock")
TEST_RUNNER = "conformance.runner.ConformanceRunner"
