"""aorm._waiters.WaitQueue: first in, first out, one wake-up per release, nothing lost."""

from __future__ import annotations

import asyncio

import pytest

from aorm._waiters import WaitQueue


async def _waiting(queue: WaitQueue[str], **kwargs: object) -> asyncio.Task[str]:
    """A task that waits in ``queue``, started and already in line."""
    task = asyncio.create_task(queue.wait(**kwargs))  # type: ignore[arg-type]
    await asyncio.sleep(0)  # it runs up to its wait
    return task


async def test_waiters_are_served_in_order_one_per_wake() -> None:
    queue: WaitQueue[str] = WaitQueue(lambda _: None)
    first, second, third = [await _waiting(queue) for _ in range(3)]
    assert len(queue) == 3
    assert queue.wake("a")
    await asyncio.sleep(0)
    assert first.done() and not second.done() and not third.done()
    assert queue.wake("b") and queue.wake("c")
    assert [await first, await second, await third] == ["a", "b", "c"]
    assert not queue
    assert not queue.wake("d")  # nobody waits: the caller keeps it


async def test_a_waiter_put_in_front_is_served_first() -> None:
    queue: WaitQueue[str] = WaitQueue(lambda _: None)
    behind = await _waiting(queue)
    ahead = await _waiting(queue, front=True)
    queue.wake("first")
    queue.wake("second")
    assert (await ahead, await behind) == ("first", "second")


async def test_a_waiter_cancelled_before_its_turn_leaves_the_line() -> None:
    abandoned: list[str] = []
    queue: WaitQueue[str] = WaitQueue(abandoned.append)
    gone, staying = await _waiting(queue), await _waiting(queue)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert len(queue) == 1
    assert queue.wake("x")
    assert await staying == "x"
    assert abandoned == []


async def test_a_waiter_cancelled_after_being_woken_passes_the_value_on() -> None:
    queue: WaitQueue[str] = WaitQueue(lambda value: queue.wake(value))
    woken, next_in_line = await _waiting(queue), await _waiting(queue)
    queue.wake("connection")
    woken.cancel()  # before it could resume with what it was handed
    with pytest.raises(asyncio.CancelledError):
        await woken
    async with asyncio.timeout(5):  # a lost value would leave it waiting for good
        assert await next_in_line == "connection"


async def test_a_value_abandoned_with_nobody_left_goes_back_to_the_owner() -> None:
    returned: list[str] = []
    queue: WaitQueue[str] = WaitQueue(lambda value: queue.wake(value) or returned.append(value))
    woken = await _waiting(queue)
    queue.wake("slot")
    woken.cancel()
    with pytest.raises(asyncio.CancelledError):
        await woken
    assert returned == ["slot"]


async def test_a_timed_out_waiter_leaves_the_line() -> None:
    abandoned: list[str] = []
    queue: WaitQueue[str] = WaitQueue(abandoned.append)
    with pytest.raises(TimeoutError):
        await queue.wait(timeout=0)
    assert not queue
    assert not queue.wake("late")
    assert abandoned == []


async def test_a_waiter_woken_as_its_timer_fires_keeps_what_it_got() -> None:
    queue: WaitQueue[str] = WaitQueue(lambda _: None)
    task = await _waiting(queue, timeout=0)  # its timer runs on the loop's next round
    assert queue.wake("in time")
    assert await task == "in time"


async def test_wake_all_serves_every_waiter() -> None:
    queue: WaitQueue[str] = WaitQueue(lambda _: None)
    tasks = [await _waiting(queue) for _ in range(3)]
    queue.wake_all("ended")
    assert await asyncio.gather(*tasks) == ["ended"] * 3
    assert not queue


async def test_each_waiter_times_out_at_its_own_deadline() -> None:
    """One timer serves the queue: a later, shorter wait re-arms it earlier, and a
    waiter served before the timer fires is not failed by it."""
    queue: WaitQueue[str] = WaitQueue(lambda _: None)
    loop = asyncio.get_running_loop()
    start = loop.time()
    long_wait = await _waiting(queue, timeout=0.4)
    early = await _waiting(queue, timeout=0.05)
    short_wait = await _waiting(queue, timeout=0.1)
    assert queue.wake("first in line")  # long_wait: served, whatever its deadline
    assert await long_wait == "first in line"
    with pytest.raises(TimeoutError):
        await early
    assert loop.time() - start < 0.4  # failed at its own deadline, not the first waiter's
    with pytest.raises(TimeoutError):
        await short_wait
    assert loop.time() - start >= 0.1
    assert not queue
    later = await _waiting(queue, timeout=0.05)  # the timer re-arms for a new waiter
    with pytest.raises(TimeoutError):
        await later
