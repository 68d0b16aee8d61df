"""The scheduler's cycle, assume / bind / forget, failure reporting and event handling, with a
fake API writer (no server): pure logic. The real thing runs in
tests/integration/scheduler."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from kumo.client import AsyncClient, ClientConfig
from kumo.platform.scheduler import Scheduler, SchedulerOptions, default_profile
from kumo.platform.scheduler.events import EventRecorder
from kumo.platform.scheduler.framework import Diagnosis
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.queue import BACKOFF, UNSCHEDULABLE
from kumo.platform.scheduler.scheduler import fit_error_message
from kumo.platform.scheduler.status import unresolvable, unschedulable
from tests.unit.scheduler.builders import anti_affinity, node, pod

Obj = dict[str, Any]


class FakeWriter:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, str]] = []
        self.fail_bindings = 0

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]:
        await asyncio.sleep(0)
        self.calls.append((method, path, copy.deepcopy(body), content_type))
        if path.endswith("/binding"):
            if self.fail_bindings:
                self.fail_bindings -= 1
                return 500, b'{"message": "boom"}'
            return 201, b"{}"
        if method == "POST":
            return 201, orjson.dumps(body)
        return 200, orjson.dumps(body or {})

    def bindings(self) -> dict[str, str]:
        return {
            path.split("/")[-2]: body["target"]["name"]
            for method, path, body, _ in self.calls
            if path.endswith("/binding")
        }

    def of(self, method: str, suffix: str) -> list[Any]:
        return [body for m, p, body, _ in self.calls if m == method and p.endswith(suffix)]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Harness:
    def __init__(self, scheduler: Scheduler, writer: FakeWriter) -> None:
        self.scheduler = scheduler
        self.writer = writer
        self.clock = Clock()
        scheduler.queue.clock = self.clock

    def add_node(self, obj: Obj) -> None:
        self.scheduler.nodes.indexer.upsert(obj["metadata"]["name"], obj)
        self.scheduler._on_node_add(obj)

    def add_pod(self, obj: Obj) -> None:
        key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
        self.scheduler.pods.indexer.upsert(key, obj)
        self.scheduler._on_pod_add(obj)

    def bind_event(self, name: str, node_name: str, namespace: str = "default") -> None:
        """The pod's MODIFIED watch event after the API server bound it."""
        key = f"{namespace}/{name}"
        old = self.scheduler.pods.indexer.get(key)
        assert old is not None
        new = copy.deepcopy(old)
        new["spec"]["nodeName"] = node_name
        self.scheduler.pods.indexer.upsert(key, new)
        self.scheduler._on_pod_update(old, new)

    async def cycle(self) -> bool:
        """One pop + scheduling cycle, as the run loop does it; False when nothing is active."""
        await self.scheduler._bind_slots.acquire()
        qpi = self.scheduler.queue.pop_nowait()
        if qpi is None:
            self.scheduler._bind_slots.release()
            return False
        if not self.scheduler.schedule_one(qpi):
            self.scheduler._bind_slots.release()
        return True

    async def settle(self) -> None:
        while self.scheduler._tasks:
            await asyncio.gather(*list(self.scheduler._tasks))


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    client = AsyncClient(ClientConfig(server="https://127.0.0.1:9", token="unused"))
    writer = FakeWriter()
    options = SchedulerOptions(profiles=(default_profile(),), seed=7)
    try:
        yield Harness(Scheduler(client, writer, options), writer)
    finally:
        await client.close()


def three_nodes() -> list[Obj]:
    return [
        node("small", cpu="2", memory="4Gi", labels={"disk": "hdd"}),
        node("medium", cpu="4", memory="8Gi", labels={"disk": "ssd"}),
        node(
            "large",
            cpu="8",
            memory="32Gi",
            labels={"gpu": "true"},
            taints=[{"key": "dedicated", "value": "ml", "effect": "NoSchedule"}],
        ),
    ]


async def test_places_pods_and_assumes_before_binding_completes(harness: Harness) -> None:
    harness.add_node(node("left", cpu="4", memory="8Gi"))
    harness.add_node(node("right", cpu="4", memory="8Gi"))
    # Pods of 3 cpu: the second must not go where the first is assumed, though neither
    # binding has completed yet.
    for name in ("a", "b", "c"):
        harness.add_pod(pod(name, cpu="3", memory="1Gi"))
    assert await harness.cycle()
    assert await harness.cycle()
    assert harness.scheduler.cache.assumed == {"default/a", "default/b"}
    assert await harness.cycle()
    await harness.settle()
    placed = harness.writer.bindings()
    assert set(placed) == {"a", "b"}
    assert {placed["a"], placed["b"]} == {"left", "right"}
    assert harness.scheduler.queue.where("default/c") == UNSCHEDULABLE
    (event,) = harness.writer.of("POST", "/events")
    assert event["message"] == "0/2 nodes are available: 2 Insufficient cpu."


async def test_unschedulable_pod_reports_and_waits_for_a_node(harness: Harness) -> None:
    for obj in three_nodes():
        harness.add_node(obj)
    harness.add_pod(pod("huge", cpu="1", memory="64Gi"))
    assert await harness.cycle()
    await harness.settle()
    assert harness.writer.bindings() == {}
    expected = (
        "0/3 nodes are available: 1 node(s) had untolerated taint {dedicated: ml},"
        " 2 Insufficient memory."
    )
    (patch,) = harness.writer.of("PATCH", "/pods/huge/status")
    (condition,) = patch["status"]["conditions"]
    assert condition["type"] == "PodScheduled"
    assert condition["status"] == "False"
    assert condition["reason"] == "Unschedulable"
    assert condition["message"] == expected
    (event,) = harness.writer.of("POST", "/events")
    assert event["reason"] == "FailedScheduling"
    assert event["type"] == "Warning"
    assert event["message"] == expected
    assert event["source"] == {"component": "default-scheduler"}
    assert event["involvedObject"]["kind"] == "Pod"
    assert event["involvedObject"]["name"] == "huge"
    assert event["count"] == 1
    assert harness.scheduler.queue.where("default/huge") == UNSCHEDULABLE

    # A big node arrives: the pod is moved back (to backoff: its first backoff is 1 s).
    harness.add_node(node("bigger", cpu="8", memory="128Gi"))
    assert harness.scheduler.queue.where("default/huge") == BACKOFF
    assert not await harness.cycle()  # still backing off
    harness.clock.now += 1.01
    assert await harness.cycle()
    await harness.settle()
    assert harness.writer.bindings() == {"huge": "bigger"}


async def test_failed_binding_forgets_the_assumption_and_backs_off(harness: Harness) -> None:
    harness.add_node(node("only", cpu="4", memory="4Gi"))
    harness.writer.fail_bindings = 1
    harness.add_pod(pod("a", cpu="3", memory="1Gi"))
    assert await harness.cycle()
    assert harness.scheduler.cache.is_assumed("default/a")
    await harness.settle()
    assert not harness.scheduler.cache.is_assumed("default/a")
    assert harness.scheduler.cache.get_node("only").free_cpu == 4000  # type: ignore[union-attr]
    assert harness.scheduler.queue.where("default/a") == BACKOFF
    assert harness.scheduler.stats.errors == 1


async def test_pod_recreated_while_binding_is_retried_as_the_new_pod(harness: Harness) -> None:
    """The API server refuses a binding whose uid is the old pod's (409); the retry must carry
    the new pod (its uid and spec), whose own events were not queued while binding."""
    harness.add_node(node("only", cpu="4", memory="4Gi"))
    harness.writer.fail_bindings = 1
    harness.add_pod(pod("a", cpu="3", memory="1Gi"))
    assert await harness.cycle()
    # Deleted and created again (new uid, smaller request) while the binding is in flight.
    harness.scheduler._on_pod_delete(harness.scheduler.pods.indexer.get("default/a") or {})
    fresh = pod("a", cpu="1", memory="1Gi")
    fresh["metadata"]["uid"] = "uid-second"
    harness.add_pod(fresh)
    await harness.settle()
    assert harness.scheduler.queue.where("default/a") == BACKOFF
    harness.clock.now += 60
    assert await harness.cycle()
    await harness.settle()
    bodies = harness.writer.of("POST", "/binding")
    assert [b["metadata"]["uid"] for b in bodies] == ["uid-default-a", "uid-second"]
    assert harness.scheduler.cache.get_node("only").free_cpu == 3000  # type: ignore[union-attr]


def test_host_selection_draws_like_random_choice_among_the_best() -> None:
    """``select_host`` picks among equal best totals exactly as ``rng.choice`` over the list of
    winners would (seeded runs place pods as before)."""
    import random

    from kumo.platform.scheduler.nodeinfo import NodeInfo

    rng = random.Random(5)
    for trial in range(300):
        size = rng.randint(1, 40)
        totals = [rng.randint(0, 4) for _ in range(size)]
        nodes = [NodeInfo(f"n{i}") for i in range(size)]
        seed = rng.randint(0, 10**9)
        scheduler = Scheduler.__new__(Scheduler)
        scheduler.rng = random.Random(seed)
        best = max(totals)
        winners = [i for i, t in enumerate(totals) if t == best]
        expected = nodes[winners[0] if len(winners) == 1 else random.Random(seed).choice(winners)]
        assert scheduler.select_host(nodes, totals) is expected, trial


async def test_bound_pod_event_confirms_the_assumption(harness: Harness) -> None:
    harness.add_node(node("only", cpu="4", memory="4Gi"))
    harness.add_pod(pod("a", cpu="3", memory="1Gi"))
    assert await harness.cycle()
    await harness.settle()
    harness.bind_event("a", "only")
    cache = harness.scheduler.cache
    assert not cache.is_assumed("default/a")
    assert cache.node_of("default/a") == "only"
    assert cache.get_node("only").free_cpu == 1000  # type: ignore[union-attr]
    assert harness.scheduler.stats.scheduled == 1


async def test_deleting_a_bound_pod_frees_room_for_a_parked_pod(harness: Harness) -> None:
    harness.add_node(node("only", cpu="4", memory="4Gi"))
    harness.add_pod(pod("first", cpu="3", memory="1Gi"))
    assert await harness.cycle()
    await harness.settle()
    harness.bind_event("first", "only")
    harness.add_pod(pod("second", cpu="3", memory="1Gi"))
    assert await harness.cycle()
    await harness.settle()
    assert harness.scheduler.queue.where("default/second") == UNSCHEDULABLE
    gone = harness.scheduler.pods.indexer.remove("default/first")
    assert gone is not None
    harness.scheduler._on_pod_delete(gone)
    assert harness.scheduler.queue.where("default/second") == BACKOFF


async def test_anti_affinity_replicas_spread_over_nodes(harness: Harness) -> None:
    for name in ("n1", "n2", "n3"):
        harness.add_node(node(name))
    for i in range(4):
        harness.add_pod(
            pod(f"web-{i}", labels={"app": "web"}, affinity=anti_affinity({"app": "web"}))
        )
    for _ in range(4):
        assert await harness.cycle()
    await harness.settle()
    placed = harness.writer.bindings()
    assert sorted(placed.values()) == ["n1", "n2", "n3"]
    (event,) = harness.writer.of("POST", "/events")
    assert event["message"] == (
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."
    )


async def test_pods_not_for_this_scheduler_are_left_alone(harness: Harness) -> None:
    harness.add_node(node("n1"))
    harness.add_pod(pod("bound", node_name="n1"))
    harness.add_pod(pod("other", scheduler_name="someone-else"))
    harness.add_pod(pod("mine"))
    assert await harness.cycle()
    assert not await harness.cycle()
    await harness.settle()
    assert harness.writer.bindings() == {"mine": "n1"}
    assert harness.scheduler.cache.node_of("default/bound") == "n1"


async def test_no_nodes_at_all(harness: Harness) -> None:
    harness.add_pod(pod("p"))
    assert await harness.cycle()
    await harness.settle()
    (event,) = harness.writer.of("POST", "/events")
    assert event["message"] == "no nodes available to schedule pods"
    assert harness.scheduler.queue.where("default/p") == UNSCHEDULABLE
    harness.add_node(node("n1"))
    assert harness.scheduler.queue.where("default/p") == BACKOFF


async def test_own_status_patch_does_not_requeue_a_parked_pod(harness: Harness) -> None:
    harness.add_node(node("n1", cpu="1"))
    harness.add_pod(pod("p", cpu="2"))
    assert await harness.cycle()
    await harness.settle()
    old = harness.scheduler.pods.indexer.get("default/p")
    assert old is not None
    new = copy.deepcopy(old)
    new["status"] = {"conditions": [{"type": "PodScheduled", "status": "False"}]}
    harness.scheduler._on_pod_update(old, new)
    assert harness.scheduler.queue.where("default/p") == UNSCHEDULABLE


def test_fit_error_message_wording() -> None:
    diagnosis = Diagnosis(
        node_statuses={
            "a": unschedulable("Insufficient memory"),
            "b": unschedulable("Insufficient cpu", "Insufficient memory"),
            "c": unresolvable("node(s) had untolerated taint {node.kubernetes.io/unreachable: }"),
        }
    )
    assert fit_error_message(3, diagnosis) == (
        "0/3 nodes are available: 1 Insufficient cpu, 1 node(s) had untolerated taint"
        " {node.kubernetes.io/unreachable: }, 2 Insufficient memory."
    )
    assert fit_error_message(0, Diagnosis()) == "no nodes available to schedule pods"
    assert (
        fit_error_message(5, Diagnosis(pre_filter_message="pod affinity terms conflict"))
        == "0/5 nodes are available: pod affinity terms conflict."
    )


async def test_event_recorder_deduplicates() -> None:
    writer = FakeWriter()
    recorder = EventRecorder(writer, "default-scheduler", instance="test")
    target = PodInfo(pod("p"))
    await recorder.record(target, "Warning", "FailedScheduling", "one")
    await recorder.record(target, "Warning", "FailedScheduling", "one")
    await recorder.record(target, "Warning", "FailedScheduling", "one")
    await recorder.record(target, "Warning", "FailedScheduling", "two")
    posts = writer.of("POST", "/events")
    assert [e["message"] for e in posts] == ["one", "two"]
    patches = [(p, body) for m, p, body, _ in writer.calls if m == "PATCH"]
    assert [body["count"] for _, body in patches] == [2, 3]
    assert all(p.endswith(posts[0]["metadata"]["name"]) for p, _ in patches)
    assert all("lastTimestamp" in body for _, body in patches)
