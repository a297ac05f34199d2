"""SQLAlchemy 2 asyncio ORM on asyncpg, or on asyncmy on MariaDB: a session per request,
its QueuePool of POOL_SIZE.

Gets and lists are ``select()`` statements (``session.get()`` could answer
from the identity map without a query); a create is ``add`` + ``commit``.
The session opens a transaction at its first statement, as SQLAlchemy does.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import BigInteger, String, literal_column, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bench import common


class Base(DeclarativeBase):
    pass


class Student(Base):
    __tablename__ = common.TABLE

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    age: Mapped[int]


class Contender:
    def __init__(self, database: str = "postgresql") -> None:
        self.driver = "asyncmy" if database == "mysql" else "asyncpg"
        self.url = (
            common.mysql_url("mysql+asyncmy")
            if database == "mysql"
            else common.asyncpg_url("postgresql+asyncpg")
        )
        self.description = f"SQLAlchemy 2 AsyncSession, {self.driver}" + (
            ", MariaDB" if database == "mysql" else ""
        )

    async def setup(self) -> None:
        self.engine = create_async_engine(
            self.url,
            pool_size=common.POOL_SIZE,
            max_overflow=0,
        )
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self.wait = literal_column(common.WAIT_FUNCTION)

    async def teardown(self) -> None:
        await self.engine.dispose()

    @contextlib.asynccontextmanager
    async def request(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def get(self, session: AsyncSession, pk: int) -> Any:
        return (await session.scalars(select(Student).where(Student.id == pk))).one()

    async def get_wait(self, session: AsyncSession, pk: int) -> Any:
        result = await session.execute(select(Student, self.wait).where(Student.id == pk))
        return result.one()[0]

    async def list100(self, session: AsyncSession, start: int) -> list[Any]:
        statement = select(Student).where(Student.id >= start).order_by(Student.id).limit(100)
        return list((await session.scalars(statement)).all())

    async def create(self, session: AsyncSession, name: str, age: int) -> int:
        student = Student(name=name, age=age)
        session.add(student)
        await session.commit()
        return student.id

    def versions(self) -> dict[str, str]:
        from importlib.metadata import version

        return {"SQLAlchemy": version("sqlalchemy"), self.driver: version(self.driver)}
