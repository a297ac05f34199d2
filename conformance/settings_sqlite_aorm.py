"""Django's test settings (its ``tests/test_sqlite.py``) on aorm's SQLite backend.

The same in-memory test databases as ``settings_sqlite_stock``; the ``aorm``
app is added by ``conformance.launch``, as for PostgreSQL.
"""

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

from conformance._settings import sqlite

DATABASES = sqlite("aorm.backends.sqlite3")
TEST_RUNNER = "conformance.runner.ConformanceRunner"
