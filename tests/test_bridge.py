"""The bridge: sync code run in a greenlet on behalf of a task, awaiting on its loop."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import traceback

import pytest

import aorm
from aorm import bridge

marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="unset")


async def double(x: int) -> int:
    await asyncio.sleep(0)
    return 2 * x


async def fail() -> None:
    await asyncio.sleep(0)
    raise KeyError("from the loop")


async def test_results_and_arguments_travel() -> None:
    def work(a: int, *, b: int) -> int:
        return bridge.await_(double(a)) + b

    assert await bridge.run(work, 3, b=1) == 7


async def test_exception_from_sync_code_keeps_its_traceback() -> None:
    def deep() -> None:
        raise ValueError("from sync code")

    with pytest.raises(ValueError, match="from sync code") as info:
        await bridge.run(deep)
    assert "deep" in "".join(traceback.format_tb(info.tb))


async def test_exception_from_awaitable_is_raised_at_await_() -> None:
    def work() -> str:
        try:
            bridge.await_(fail())
        except KeyError as exc:
            return f"caught {exc}"
        return "not raised"

    assert await bridge.run(work) == "caught 'from the loop'"


async def test_exception_from_awaitable_propagates_with_both_frames() -> None:
    def work() -> None:
        bridge.await_(fail())

    with pytest.raises(KeyError) as info:
        await bridge.run(work)
    frames = "".join(traceback.format_tb(info.tb))
    assert "in work" in frames and "in fail" in frames


async def test_cancellation_reaches_sync_code_and_runs_its_cleanup() -> None:
    cleaned = asyncio.Event()
    started = asyncio.Event()

    def work() -> None:
        started.set()
        try:
            bridge.await_(asyncio.sleep(10))
        finally:
            cleaned.set()

    task = asyncio.create_task(bridge.run(work))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned.is_set()


async def test_cancellation_raised_in_sync_code_cancels_the_task() -> None:
    def work() -> None:
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await bridge.run(work)


async def test_contextvars_are_the_callers_both_ways() -> None:
    marker.set("outer")

    def work() -> str:
        seen = marker.get()
        marker.set("inner")
        return seen

    assert await bridge.run(work) == "outer"
    assert marker.get() == "inner"


async def test_awaitables_inside_see_the_callers_context() -> None:
    marker.set("task")

    async def read() -> str:
        return marker.get()

    assert await bridge.run(lambda: bridge.await_(read())) == "task"


async def test_nested_run_from_an_awaitable() -> None:
    async def inner() -> int:
        return await bridge.run(lambda: bridge.await_(double(5)))

    assert await bridge.run(lambda: bridge.await_(inner()) + 1) == 11


async def test_concurrent_runs_interleave_on_one_loop() -> None:
    order: list[str] = []

    def work(name: str) -> str:
        order.append(f"{name} start")
        bridge.await_(asyncio.sleep(0.01))
        order.append(f"{name} end")
        return name

    assert await asyncio.gather(*(bridge.run(work, n) for n in "abc")) == ["a", "b", "c"]
    assert order[:3] == ["a start", "b start", "c start"]


def test_await_outside_the_bridge_says_what_to_do() -> None:
    coroutine = double(1)
    with pytest.raises(bridge.BridgeError, match=r"await aorm\.run\(fn"):
        bridge.await_(coroutine)
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning


async def test_await_in_async_code_outside_the_bridge_is_refused() -> None:
    with pytest.raises(bridge.BridgeError):
        bridge.await_(double(1))


async def test_in_bridge() -> None:
    assert not bridge.in_bridge()
    assert await bridge.run(bridge.in_bridge)


async def test_workers_are_reused_not_leaked() -> None:
    for _ in range(10_000):
        await bridge.run(lambda: bridge.await_(double(1)))
    gc.collect()
    workers = [o for o in gc.get_objects() if type(o).__name__ == "_Worker" and not o.dead]
    assert 1 <= len(workers) <= 64


async def test_public_run_is_the_bridge_with_a_connection_scope() -> None:
    assert await aorm.run(lambda x: x + 1, 1) == 2
