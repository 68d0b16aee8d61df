"""The controller work queue: dedup, processing exclusivity, delays, backoff, shutdown."""

from __future__ import annotations

import asyncio

import pytest

from kumo.platform.controllers.workqueue import ExponentialBackoff, QueueShutDown, WorkQueue


async def test_a_key_added_many_times_is_handed_out_once() -> None:
    queue: WorkQueue[str] = WorkQueue()
    for _ in range(5):
        queue.add("a")
    queue.add("b")
    queue.add("a")
    assert len(queue) == 2
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    assert len(queue) == 0


async def test_keys_come_out_in_fifo_order() -> None:
    queue: WorkQueue[int] = WorkQueue()
    for n in range(10):
        queue.add(n)
    assert [await queue.get() for _ in range(10)] == list(range(10))


async def test_a_key_added_while_processing_is_requeued_after_done() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    key = await queue.get()
    queue.add("a")  # changed again while a worker holds it
    queue.add("a")
    assert len(queue) == 0, "a key being processed is not handed to a second worker"
    queue.done(key)
    assert len(queue) == 1
    assert await queue.get() == "a"
    queue.done("a")
    assert len(queue) == 0


async def test_done_without_new_adds_does_not_requeue() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.done(await queue.get())
    assert len(queue) == 0
    assert queue.processing == 0


async def test_two_workers_never_hold_the_same_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    holding: set[str] = set()
    overlaps = 0
    handled = 0

    async def worker() -> None:
        nonlocal overlaps, handled
        while True:
            try:
                key = await queue.get()
            except QueueShutDown:
                return
            if key in holding:
                overlaps += 1
            holding.add(key)
            await asyncio.sleep(0.001)
            holding.discard(key)
            handled += 1
            queue.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(50):
        for key in ("a", "b", "c"):
            queue.add(key)
        await asyncio.sleep(0)
    await asyncio.sleep(0.05)
    queue.shut_down(drain=True)
    await asyncio.gather(*workers)
    assert overlaps == 0
    assert handled >= 3


async def test_get_waits_for_an_add() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    queue.add("x")
    assert await asyncio.wait_for(waiter, 1) == "x"


async def test_add_after_delays_the_key() -> None:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_after("a", 0.1)
    assert len(queue) == 0
    assert queue.delayed == 1
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert loop.time() - started >= 0.09
    assert queue.delayed == 0


async def test_the_earliest_delayed_add_wins() -> None:
    queue: WorkQueue[str] = WorkQueue()
    loop = asyncio.get_running_loop()
    started = loop.time()
    queue.add_after("a", 5)
    queue.add_after("a", 0.05)
    queue.add_after("a", 3)  # later than the pending one: ignored
    assert queue.delayed == 1
    assert await asyncio.wait_for(queue.get(), 2) == "a"
    assert loop.time() - started < 1
    queue.done("a")
    await asyncio.sleep(0.1)
    assert len(queue) == 0, "the superseded delays do not fire later"


async def test_a_delayed_key_already_queued_is_not_duplicated() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_after("a", 0.02)
    await asyncio.sleep(0.05)
    assert len(queue) == 1


def test_backoff_doubles_per_failure_up_to_the_cap() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=0.01, cap=0.1)
    delays = [backoff.when("a") for _ in range(6)]
    assert delays == pytest.approx([0.01, 0.02, 0.04, 0.08, 0.1, 0.1])
    assert backoff.failures("a") == 6
    assert backoff.when("b") == pytest.approx(0.01), "keys back off independently"
    backoff.forget("a")
    assert backoff.when("a") == pytest.approx(0.01)


def test_backoff_survives_huge_failure_counts() -> None:
    backoff: ExponentialBackoff[str] = ExponentialBackoff(base=1.0, cap=60.0)
    for _ in range(200):
        delay = backoff.when("a")
    assert delay == 60.0


async def test_rate_limited_adds_back_off_and_forget_resets() -> None:
    queue: WorkQueue[str] = WorkQueue(backoff=ExponentialBackoff(base=0.02, cap=1.0))
    loop = asyncio.get_running_loop()
    gaps = []
    for _ in range(4):
        started = loop.time()
        queue.add_rate_limited("a")
        key = await asyncio.wait_for(queue.get(), 2)
        gaps.append(loop.time() - started)
        queue.done(key)
    assert queue.num_requeues("a") == 4
    # 0.02, 0.04, 0.08, 0.16 seconds (timer granularity allows a little early firing)
    for got, want in zip(gaps, (0.02, 0.04, 0.08, 0.16), strict=True):
        assert got >= want * 0.9
    assert gaps[3] > gaps[0] * 4
    queue.forget("a")
    assert queue.num_requeues("a") == 0
    assert queue.stats.retries == 4


async def test_shut_down_wakes_waiting_workers() -> None:
    queue: WorkQueue[str] = WorkQueue()
    waiters = [asyncio.create_task(queue.get()) for _ in range(3)]
    await asyncio.sleep(0.01)
    queue.shut_down()
    results = await asyncio.gather(*waiters, return_exceptions=True)
    assert all(isinstance(r, QueueShutDown) for r in results)


async def test_shut_down_drops_pending_work_and_ignores_adds() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add_after("b", 0.01)
    queue.shut_down()
    queue.add("c")
    with pytest.raises(QueueShutDown):
        await queue.get()
    await asyncio.sleep(0.03)
    assert len(queue) == 0


async def test_shut_down_with_drain_hands_out_queued_keys_first() -> None:
    queue: WorkQueue[str] = WorkQueue()
    queue.add("a")
    queue.add("b")
    queue.shut_down(drain=True)
    assert await queue.get() == "a"
    assert await queue.get() == "b"
    with pytest.raises(QueueShutDown):
        await queue.get()


async def test_a_cancelled_waiter_passes_its_wakeup_on() -> None:
    queue: WorkQueue[str] = WorkQueue()
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0.01)
    queue.add("a")  # wakes the first waiter ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1) == "a"
