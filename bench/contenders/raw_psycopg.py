"""The limit on psycopg: its AsyncConnection from psycopg_pool's AsyncConnectionPool, tuples.

psycopg's defaults (prepared statements after 5 executions); a pooled
connection is borrowed per operation, as aorm does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from psycopg_pool import AsyncConnectionPool

from bench import common


class Contender:
    description = "psycopg AsyncConnection (psycopg_pool), tuples"

    async def setup(self) -> None:
        self.pool = AsyncConnectionPool(
            common.dsn(), min_size=common.POOL_SIZE, max_size=common.POOL_SIZE, open=False
        )
        await self.pool.open(wait=True)

    async def teardown(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        yield None

    async def _one(self, sql: str, params: tuple[Any, ...]) -> Any:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(sql, params)
            return await cursor.fetchone()

    async def get(self, ctx: None, pk: int) -> Any:
        return await self._one(common.SQL_GET, (pk,))

    async def get_wait(self, ctx: None, pk: int) -> Any:
        return await self._one(common.SQL_GET_WAIT, (pk,))

    async def list100(self, ctx: None, start: int) -> list[Any]:
        async with self.pool.connection() as conn:
            cursor = await conn.execute(common.SQL_LIST, (start,))
            return await cursor.fetchall()

    async def create(self, ctx: None, name: str, age: int) -> int:
        row = await self._one(common.SQL_CREATE, (name, age))
        return int(row[0])

    def versions(self) -> dict[str, str]:
        import psycopg
        import psycopg_pool

        return {
            "psycopg": f"{psycopg.__version__} ({psycopg.pq.__impl__})",
            "psycopg_pool": psycopg_pool.__version__,
        }
