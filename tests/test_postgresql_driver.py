"""aorm's psycopg connection: one task at a time, and a loud error otherwise."""

from __future__ import annotations

import asyncio
from typing import Any

import psycopg
import pytest
from django.db import connections

import aorm
from tests.conftest import ALL_DATABASES, postgresql_only, until_server_sessions

pytestmark = [ALL_DATABASES, postgresql_only("aorm's psycopg driver")]


async def test_a_connection_used_by_two_tasks_at_once_fails_loudly() -> None:
    """A raw connection handed to another task while its statement runs: an error, not a hang."""
    shared: dict[str, Any] = {}

    def slow() -> None:
        with connections["default"].cursor() as cursor:
            shared["raw"] = cursor.connection  # Django's cursor wrapper's raw connection
            cursor.execute("SELECT pg_sleep(1), 'exclusive-use test'")

    first = asyncio.create_task(aorm.run(slow))
    await until_server_sessions("query LIKE '%%exclusive-use test%%' AND state = 'active'", 1)
    with pytest.raises(psycopg.InterfaceError, match="two tasks used this connection"):
        await aorm.run(lambda: shared["raw"].execute("SELECT 1"))
    await first  # the first task's statement is unharmed
