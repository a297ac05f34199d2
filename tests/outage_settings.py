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

One more kind is reported in a line of its own, starting with
:data:`UNWRAPPED_CONNECT_FAILURE`: psycopg's own ``OperationalError`` for a
connection that could not be opened, which aorm currently lets through
unwrapped when an operation takes its connection from the pool (a defect,
pinned by ``tests/test_stall.py::test_a_refused_connection_is_djangos_operational_error``).

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
UNWRAPPED_CONNECT_FAILURE = "aorm-outage unwrapped connection failure:"

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
        if type(exc) in (OperationalError, InterfaceError) and isinstance(  # not PoolTimeout
            exc.__cause__, psycopg.OperationalError | psycopg.InterfaceError
        ):
            marker = EXPECTED_OUTAGE
        elif type(exc) is psycopg.OperationalError and str(exc).startswith("connection failed:"):
            marker = UNWRAPPED_CONNECT_FAILURE
        else:
            return True
        message, first_line = record.getMessage(), str(exc).strip().splitlines()[0]
        record.msg = f"{marker} %s %s: %s"
        record.args = (message, type(exc).__name__, first_line)
        record.exc_info = record.exc_text = None
        record.levelname = "INFO"
        return True


LOGGING = {
    **LOGGING,
    "filters": {"expected_fault": {"()": "tests.outage_settings.ExpectedOutage"}},
}
