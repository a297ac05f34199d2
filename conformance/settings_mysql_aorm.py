"""Django's test settings (its ``tests/test_sqlite.py``) on aorm's MySQL backend.

The ``aorm`` app itself is added to the always-installed apps by
``conformance.launch`` (``runtests.py`` replaces ``INSTALLED_APPS``).
"""

from test_sqlite import *  # type: ignore[import-not-found]  # noqa: F403

from conformance._settings import mysql

DATABASES = mysql("aorm.backends.mysql", "aorm")
TEST_RUNNER = "conformance.runner.ConformanceRunner"
