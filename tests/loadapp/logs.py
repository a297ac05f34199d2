"""Logging of the load test's server: the fault the test injects is reported in one line.

The test terminates every server session of the database once during the
load. The operations that were using, or later pick up, one of those sessions
fail with psycopg's ``OperationalError`` for a lost connection, and their
requests end in a 500 response, which Django logs with a traceback. This
filter turns exactly those records into one line starting with
:data:`EXPECTED_FAULT`, without traceback; every other record, with its
traceback, is left alone, so that the test can require that stderr holds
nothing else.
"""

from __future__ import annotations

import logging
import re

import psycopg
from django.db.utils import OperationalError

__all__ = ["EXPECTED_FAULT", "ExpectedFault", "lost_connection"]

EXPECTED_FAULT = "aorm-load expected fault:"

# What libpq and psycopg report when the server terminated the session
# (pg_terminate_backend: SQLSTATE 57P01 "admin_shutdown") before or during an
# exchange, or when the session's socket was closed by the server.
LOST_CONNECTION = re.compile(
    r"terminating connection due to administrator command"
    r"|server closed the connection unexpectedly"
)


def lost_connection(exc: BaseException | None) -> bool:
    """``exc`` is Django's OperationalError for a session the server terminated."""
    if exc is None or type(exc) is not OperationalError:  # nor a subclass (aorm.PoolTimeout)
        return False
    cause = exc.__cause__
    return isinstance(cause, psycopg.OperationalError) and bool(LOST_CONNECTION.search(str(cause)))


class ExpectedFault(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if record.name == "django.request" and lost_connection(exc):
            message, first_line = record.getMessage(), str(exc).strip().splitlines()[0]
            record.msg = f"{EXPECTED_FAULT} %s: %s"
            record.args = (message, first_line)
            record.exc_info = record.exc_text = None
            record.levelname = "INFO"
        return True
