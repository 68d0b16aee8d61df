"""The scheduling queue: ordering, backoff, parking and event-driven moves."""

from __future__ import annotations

import asyncio

import pytest

from kumo.platform.scheduler.framework import ASSIGNED_POD_DELETE, NODE_ADD, NODE_UPDATE_LABEL
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.queue import (
    ACTIVE,
    BACKOFF,
    UNSCHEDULABLE,
    QueuedPodInfo,
    SchedulingQueue,
)
from tests.unit.scheduler.builders import pod


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


INTEREST = {
    NODE_ADD: {"NodeResourcesFit", "TaintToleration", "NodeAffinity"},
    NODE_UPDATE_LABEL: {"NodeAffinity"},
    ASSIGNED_POD_DELETE: {"NodeResourcesFit"},
}


def make_queue(clock: Clock, **kwargs: float) -> SchedulingQueue:
    return SchedulingQueue(interest=INTEREST, clock=clock, **kwargs)


def info(name: str, priority: int | None = None) -> PodInfo:
    return PodInfo(pod(name, priority=priority))


def first_attempt(**kwargs: float) -> tuple[Clock, SchedulingQueue, QueuedPodInfo]:
    """A queue on a fake clock that has handed out its one pod, "a", for a first attempt."""
    clock = Clock()
    queue = make_queue(clock, **kwargs)
    queue.add(info("a"))
    qpi = queue.pop_nowait()
    assert qpi is not None
    return clock, queue, qpi


def drain(queue: SchedulingQueue) -> list[str]:
    out = []
    while (qpi := queue.pop_nowait()) is not None:
        out.append(qpi.pod.name)
    return out


def test_priority_then_arrival() -> None:
    clock = Clock()
    queue = make_queue(clock)
    for name, priority in (("low1", 0), ("high", 10), ("low2", 0), ("mid", 5)):
        queue.add(info(name, priority))
        clock.now += 1
    assert drain(queue) == ["high", "mid", "low1", "low2"]


@pytest.mark.parametrize(
    ("attempts", "expected"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 10.0), (9, 10.0)],
)
def test_backoff_doubles_up_to_the_maximum(attempts: int, expected: float) -> None:
    assert make_queue(Clock()).backoff_duration(attempts) == expected


def test_error_goes_to_backoff_then_active() -> None:
    clock, queue, qpi = first_attempt()
    assert qpi.attempts == 1
    queue.add_backoff(qpi)
    assert queue.where(qpi.pod.key) == BACKOFF
    clock.now += 0.9
    assert queue.pop_nowait() is None
    clock.now += 0.2
    again = queue.pop_nowait()
    assert again is qpi and again.attempts == 2


def test_unschedulable_is_parked_until_a_relevant_event() -> None:
    clock, queue, qpi = first_attempt()
    queue.add_unschedulable(qpi, {"NodeResourcesFit"})
    assert queue.where(qpi.pod.key) == UNSCHEDULABLE
    clock.now += 60
    assert queue.pop_nowait() is None  # backoff long over, still parked
    assert queue.move_for_event(NODE_UPDATE_LABEL) == 0  # NodeAffinity did not reject it
    assert queue.where(qpi.pod.key) == UNSCHEDULABLE
    assert queue.move_for_event(ASSIGNED_POD_DELETE) == 1
    assert queue.where(qpi.pod.key) == ACTIVE
    assert queue.pop_nowait() is qpi


def test_moved_pod_still_backing_off_waits_in_backoff() -> None:
    clock, queue, qpi = first_attempt()
    queue.add_unschedulable(qpi, {"NodeAffinity"})
    clock.now += 0.5
    queue.move_for_event(NODE_ADD)
    assert queue.where(qpi.pod.key) == BACKOFF
    assert queue.pop_nowait() is None
    clock.now += 0.6
    assert queue.pop_nowait() is qpi


def test_rejected_by_no_plugin_backs_off() -> None:
    _, queue, qpi = first_attempt()
    queue.add_unschedulable(qpi, set())
    assert queue.where(qpi.pod.key) == BACKOFF


def test_parked_too_long_is_retried() -> None:
    clock, queue, qpi = first_attempt(max_unschedulable=60.0)
    queue.add_unschedulable(qpi, {"NodeAffinity"})
    clock.now += 59
    assert queue.pop_nowait() is None
    clock.now += 40
    assert queue.pop_nowait() is qpi


def test_update_of_a_parked_pod_requeues_only_when_relevant() -> None:
    clock, queue, qpi = first_attempt()
    queue.add_unschedulable(qpi, {"NodeAffinity"})
    clock.now += 5
    queue.update(info("a"), relevant=False)  # e.g. our own status patch coming back
    assert queue.where(qpi.pod.key) == UNSCHEDULABLE
    queue.update(info("a"), relevant=True)
    assert queue.where(qpi.pod.key) == ACTIVE


def test_delete_removes_the_pod_everywhere() -> None:
    clock = Clock()
    queue = make_queue(clock)
    queue.add(info("a"))
    queue.add(info("b"))
    queue.delete("default/a")
    assert drain(queue) == ["b"]
    assert len(queue) == 0


def test_priority_change_resorts() -> None:
    clock = Clock()
    queue = make_queue(clock)
    queue.add(info("a", 0))
    clock.now += 1
    queue.add(info("b", 0))
    queue.update(info("b", 100), relevant=True)
    assert drain(queue) == ["b", "a"]


async def test_pop_waits_for_backoff_to_expire() -> None:
    queue = SchedulingQueue(interest=INTEREST, initial_backoff=0.05, max_backoff=0.05)
    queue.add(info("a"))
    qpi = queue.pop_nowait()
    assert qpi is not None
    queue.add_backoff(qpi)
    loop = asyncio.get_running_loop()
    started = loop.time()
    again = await asyncio.wait_for(queue.pop(), 2.0)
    assert again is qpi
    assert loop.time() - started >= 0.04


async def test_pop_returns_none_once_closed() -> None:
    queue = SchedulingQueue(interest=INTEREST)
    waiter = asyncio.ensure_future(queue.pop())
    await asyncio.sleep(0.01)
    queue.close()
    assert await asyncio.wait_for(waiter, 1.0) is None
