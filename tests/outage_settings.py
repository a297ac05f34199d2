"""Settings of the server tests/test_restart.py starts: tests.loadapp's, outages in one line.

The server runs :mod:`tests.loadapp` on a throwaway PostgreSQL cluster
(``AORM_PGPORT``) that the test restarts under load. Requests then fail with
Django's ``OperationalError`` or ``InterfaceError`` caused by psycopg's error
for a lost or refused connection (a terminated session, a server that is down,
shutting down or starting up). The filter below turns exactly those 500s' log
records into one line starting with :data:`EXPECTED_OUTAGE`, without
traceback; any other record keeps its traceback, so that the test can require
an otherwise empty stderr (a hang shows up as aorm's ``PoolTimeout``, a
subclass, and is not rewritten).

``AORM_OUTAGE_HEALTH_CHECKS=1`` turns ``CONN_HEALTH_CHECKS`` on for the
default alias.
"""

import logging
import os

import psycopg
from django.db.utils import InterfaceError, OperationalError

from tests.loadapp.settings import *  # noqa: F403
from tests.loadapp.settings import DATABASES, LOGGING

EXPECTED_OUTAGE = "aorm-outage expected fault:"

DATABASES = {
    **DATABASES,
    "default": {
        **DATABASES["default"],
        "CONN_HEALTH_CHECKS": os.environ.get("AORM_OUTAGE_HEALTH_CHECKS") == "1",
    },
}


class ExpectedOutage(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name != "django.request" or exc is None:
            return True
        if type(exc) not in (OperationalError, InterfaceError) or not isinstance(  # PoolTimeout
            exc.__cause__, psycopg.OperationalError | psycopg.InterfaceError
        ):
            return True
        message, first_line = record.getMessage(), str(exc).strip().splitlines()[0]
        record.msg = f"{EXPECTED_OUTAGE} %s %s: %s"
        record.args = (message, type(exc).__name__, first_line)
        record.exc_info = record.exc_text = None
        record.levelname = "INFO"
        return True


LOGGING = {
    **LOGGING,
    "filters": {"expected_fault": {"()": "tests.outage_settings.ExpectedOutage"}},
}
