"""Tortoise ORM, its pool of POOL_SIZE: on asyncpg (its default PostgreSQL client) or on
MariaDB with asyncmy (its MySQL client's first choice)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from tortoise import Tortoise, fields
from tortoise.expressions import RawSQL
from tortoise.models import Model

from bench import common


class Student(Model):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=100)
    age = fields.IntField()

    class Meta:
        table = common.TABLE


class Contender:
    def __init__(self, database: str = "postgresql") -> None:
        self.database = database
        self.driver = "asyncmy" if database == "mysql" else "asyncpg"
        self.description = (
            "Tortoise ORM, asyncmy client, MariaDB"
            if database == "mysql"
            else "Tortoise ORM, asyncpg client"
        )

    async def setup(self) -> None:
        if self.database == "mysql":
            engine = "tortoise.backends.mysql"
            host, port, user = common.MYSQL_HOST, common.MYSQL_PORT, common.MYSQL_USER
        else:
            engine = "tortoise.backends.asyncpg"
            host, port, user = common.HOST, common.PORT, common.USER
        await Tortoise.init(
            config={
                "connections": {
                    "default": {
                        "engine": engine,
                        "credentials": {
                            "host": host,
                            "port": port,
                            "user": user,
                            "password": "",
                            "database": common.DBNAME,
                            "minsize": common.POOL_SIZE,
                            "maxsize": common.POOL_SIZE,
                        },
                    }
                },
                "apps": {"bench": {"models": [__name__]}},
            }
        )

    async def teardown(self) -> None:
        await Tortoise.close_connections()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[None]:
        yield None

    async def get(self, ctx: None, pk: int) -> Any:
        return await Student.get(id=pk)

    async def get_wait(self, ctx: None, pk: int) -> Any:
        return await Student.annotate(wait=RawSQL(common.WAIT_FUNCTION)).get(id=pk)

    async def list100(self, ctx: None, start: int) -> list[Any]:
        return await Student.filter(id__gte=start).order_by("id").limit(100)

    async def create(self, ctx: None, name: str, age: int) -> int:
        return int((await Student.create(name=name, age=age)).id)

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"tortoise-orm": version("tortoise-orm"), self.driver: version(self.driver)}
