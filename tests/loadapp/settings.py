"""Settings of the server the ASGI load test starts: tests.settings with a small, named pool.

- ``AORM_LOAD_POOL_MAX_SIZE``: the default alias's pool ``max_size`` (8).
- ``AORM_LOAD_APPLICATION_NAME``: the server's connections' ``application_name``,
  so that the test can find them in ``pg_stat_activity``.
- 500 responses are logged to stderr with their traceback, except those caused
  by the test's own fault (see :mod:`tests.loadapp.logs`), so that the test can
  require an otherwise empty stderr.
"""

import os

from tests.settings import *  # noqa: F403
from tests.settings import DATABASE, DATABASES

ROOT_URLCONF = "tests.loadapp.urls"
DEBUG = False

POOL_MAX_SIZE = int(os.environ.get("AORM_LOAD_POOL_MAX_SIZE", "8"))
APPLICATION_NAME = os.environ.get("AORM_LOAD_APPLICATION_NAME", "aorm-load")

if DATABASE != "postgresql":
    raise ValueError("the ASGI load test needs PostgreSQL")

DATABASES = {
    **DATABASES,
    "default": {
        **DATABASES["default"],
        "OPTIONS": {
            "pool": {"min_size": 1, "max_size": POOL_MAX_SIZE, "timeout": 10},
            "application_name": APPLICATION_NAME,
        },
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"expected_fault": {"()": "tests.loadapp.logs.ExpectedFault"}},
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "filters": ["expected_fault"],
            "formatter": "plain",
        },
    },
    "formatters": {"plain": {"format": "%(levelname)s %(name)s: %(message)s"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}
