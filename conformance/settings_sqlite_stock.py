"""Django's test settings (its ``tests/test_sqlite.py``) on Django's own SQLite backend.

In-memory test databases, as in Django's own runs of its test suite.
"""

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

from conformance._settings import sqlite

DATABASES = sqlite("django.db.backends.sqlite3")
TEST_RUNNER = "conformance.runner.ConformanceRunner"
