"""Django's test settings (its ``tests/test_sqlite.py``) on Django's own PostgreSQL backend."""

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

from conformance._settings import postgresql

DATABASES = postgresql("django.db.backends.postgresql", "stock")
TEST_RUNNER = "conformance.runner.ConformanceRunner"
