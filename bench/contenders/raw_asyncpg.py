"""The limit on asyncpg: asyncpg's own pool, Records (tuples), its statement cache on."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from bench import common


def _dollar(sql: str) -> str:
    """``%s`` placeholders to asyncpg's ``$1, $2...``."""
    parts = sql.split("%s")
    return "".join(
        part + (f"${i + 1}" if i < len(parts) - 1 else "") for i, part in enumerate(parts)
    )


GET, GET_WAIT = _dollar(common.SQL_GET), _dollar(common.SQL_GET_WAIT)
LIST, CREATE = _dollar(common.SQL_LIST), _dollar(common.SQL_CREATE)


class Contender:
    description = "asyncpg Pool, Records"

    async def setup(self) -> None:
        self.pool = await asyncpg.create_pool(
            host=common.HOST,
            port=common.PORT,
            user=common.USER,
            database=common.DBNAME,
            min_size=common.POOL_SIZE,
            max_size=common.POOL_SIZE,
        )

    async def teardown(self) -> None:
        await self.pool.close()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        yield None

    async def get(self, ctx: None, pk: int) -> Any:
        return await self.pool.fetchrow(GET, pk)

    async def get_wait(self, ctx: None, pk: int) -> Any:
        return await self.pool.fetchrow(GET_WAIT, pk)

    async def list100(self, ctx: None, start: int) -> list[Any]:
        return await self.pool.fetch(LIST, start)

    async def create(self, ctx: None, name: str, age: int) -> int:
        return int(await self.pool.fetchval(CREATE, name, age))

    def versions(self) -> dict[str, str]:
        return {"asyncpg": asyncpg.__version__}
