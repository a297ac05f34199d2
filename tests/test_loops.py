"""aorm._loops: resources owned by one event loop, closed when that loop shuts down."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.conf import settings
from students.models import Student

from aorm import _loops
from aorm._pool import AsyncPool, pool_key
from tests.conftest import ALL_DATABASES


def _is_closed(conn: Any) -> bool:
    if settings.DATABASE == "sqlite":
        return not conn.io.thread.is_alive()
    return bool(conn.closed)


@ALL_DATABASES
def test_a_pool_is_closed_with_its_loop() -> None:
    seen: dict[str, Any] = {}

    async def main() -> None:
        assert await Student.objects.acount() == 0
        pool = _loops.for_running_loop().find(pool_key("default")).pool
        assert isinstance(pool, AsyncPool)
        seen["pool"], seen["conn"] = pool, pool._idle[-1][0]
        assert not _is_closed(seen["conn"])

    asyncio.run(main())  # as uvicorn, pytest-asyncio and management commands end a loop
    assert seen["pool"]._closed
    assert _is_closed(seen["conn"])
    assert seen["pool"].stats().size == 0


@ALL_DATABASES
async def test_each_loop_has_its_own_pool() -> None:
    await Student.objects.acount()
    here = _loops.for_running_loop().find(pool_key("default"))
    assert here is not None

    async def other_loop() -> Any:
        await Student.objects.acount()
        return _loops.for_running_loop().find(pool_key("default"))

    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(asyncio.run(other_loop())))
    thread.start()
    await asyncio.to_thread(thread.join)
    assert result[0] is not None and result[0] is not here
    assert _loops.for_running_loop().find(pool_key("default")) is here


def test_resources_are_created_once_and_closed_in_reverse_order() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    async def main() -> None:
        resources = _loops.for_running_loop()
        assert resources is _loops.for_running_loop()  # one per loop
        assert resources.get("a", lambda: "first", close) == "first"
        assert resources.get("b", lambda: "second", close) == "second"
        assert resources.get("a", lambda: "never built", close) == "first"
        assert resources.find("b") == "second" and resources.find("c") is None
        assert closed == []

    asyncio.run(main())
    assert closed == ["second", "first"]


def test_forget_detaches_a_key_from_every_loop_for_the_caller_to_close() -> None:
    closed: list[str] = []

    async def close(name: str) -> None:
        closed.append(name)

    async def main() -> None:
        _loops.for_running_loop().get("forget-me", lambda: "value", close)
        (_, value, closer), *others = [
            item for item in _loops.forget("forget-me") if item[0] is asyncio.get_running_loop()
        ]
        assert (value, closer, others) == ("value", close, [])
        assert _loops.for_running_loop().find("forget-me") is None

    asyncio.run(main())
    assert closed == []  # detached: the loop's shutdown no longer closes it


def test_loop_running() -> None:
    assert not _loops.loop_running()

    async def main() -> bool:
        return _loops.loop_running()

    assert asyncio.run(main())


def test_for_running_loop_needs_a_loop() -> None:
    with pytest.raises(RuntimeError):
        _loops.for_running_loop()
