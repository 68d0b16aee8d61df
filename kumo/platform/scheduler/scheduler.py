"""The scheduler: informers -> cache + queue; one pod at a time through the profile's
framework; asynchronous, bounded binding.

One scheduling cycle (``schedule_one``) is synchronous on the event loop: PreFilter, Filter
(batch, from a rotating start index, stopping at ``nodes_to_find`` feasible nodes), PreScore,
Score, host selection (ties broken at random), then the pod is *assumed* on the chosen node in
the cache, so the next cycle sees its resources taken, and its binding runs as a task (at most
``parallel_binds`` in flight). A failed binding forgets the assumption and retries the pod with
backoff. A pod that fits nowhere gets ``PodScheduled=False`` (reason Unschedulable) and a
FailedScheduling Warning event worded like Kubernetes', and is parked until a relevant cluster
event.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import operator
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kumo.client import AsyncClient
from kumo.model.core import Namespace, Node, Pod
from kumo.model.meta import now_rfc3339
from kumo.platform.controllers.informer import EventHandler, InformerFactory, Obj
from kumo.platform.scheduler.cache import Cache
from kumo.platform.scheduler.events import FAILED_SCHEDULING, WARNING, EventRecorder
from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    NODE_ADD,
    PREFILTER_RESULT_REASON,
    CycleState,
    Diagnosis,
    Framework,
    Handle,
    Writer,
    node_update_events,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.profile import Profile, default_profile
from kumo.platform.scheduler.queue import QueuedPodInfo, SchedulingQueue
from kumo.platform.scheduler.registry import Registry, build_framework
from kumo.platform.scheduler.status import unresolvable

log = logging.getLogger(__name__)

NO_NODES_MESSAGE = "no nodes available to schedule pods"
# A pseudo plugin: pods that failed because there was no node at all wait for a node.
NO_NODES = "NoNodes"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
YIELD_INTERVAL = 0.001  # seconds of scheduling cycles between turns of the event loop


class FitError(Exception):
    """Not raised: returned by ``schedule_pod`` when no node fits."""

    def __init__(self, pod: PodInfo, total_nodes: int, diagnosis: Diagnosis) -> None:
        self.pod = pod
        self.total_nodes = total_nodes
        self.diagnosis = diagnosis
        super().__init__(fit_error_message(total_nodes, diagnosis))


def fit_error_message(total_nodes: int, diagnosis: Diagnosis) -> str:
    """Kubernetes' FitError text: "0/N nodes are available: <count> <reason>, ...." with the
    "<count> <reason>" strings sorted, each reason counted once per node that gave it."""
    if total_nodes == 0:
        return NO_NODES_MESSAGE
    message = f"0/{total_nodes} nodes are available:"
    if diagnosis.pre_filter_message:
        return f"{message} {diagnosis.pre_filter_message}."
    histogram: dict[str, int] = {}
    for status in diagnosis.node_statuses.values():
        for reason in status.reasons:
            histogram[reason] = histogram.get(reason, 0) + 1
    reasons = sorted(f"{count} {reason}" for reason, count in histogram.items())
    if reasons:
        message += " " + ", ".join(reasons) + "."
    return message


@dataclass
class SchedulerStats:
    attempts: int = 0
    scheduled: int = 0  # bindings the API server accepted
    unschedulable: int = 0  # attempts that found no node
    errors: int = 0  # attempts or bindings that failed
    skipped: int = 0  # popped but no longer pending (bound elsewhere, deleted)
    cycle_seconds: float = 0.0  # time spent in scheduling cycles
    bind_wait_seconds: float = 0.0  # time the loop waited for a free binding slot
    per_profile: dict[str, int] = field(default_factory=dict)


@dataclass
class SchedulerOptions:
    profiles: Sequence[Profile] = (default_profile(),)
    initial_backoff: float = 1.0
    max_backoff: float = 10.0
    max_unschedulable: float = 300.0
    parallel_binds: int = 32
    record_events: bool = True
    seed: int | None = None


class Scheduler:
    def __init__(
        self,
        client: AsyncClient,
        writer: Writer,
        options: SchedulerOptions | None = None,
        *,
        registry: Registry | None = None,
    ) -> None:
        self.client = client
        self.writer = writer
        self.options = options or SchedulerOptions()
        self.cache = Cache()
        self.handle = Handle(self.cache, self._namespace_labels, writer)
        self.frameworks: dict[str, Framework] = {}
        for profile in self.options.profiles:
            if profile.scheduler_name in self.frameworks:
                raise ValueError(f"two profiles for scheduler name {profile.scheduler_name!r}")
            self.frameworks[profile.scheduler_name] = build_framework(
                profile, self.handle, registry
            )
        interest: dict[str, set[str]] = {NODE_ADD: {NO_NODES}}
        for framework in self.frameworks.values():
            for event, plugins in framework.event_plugins.items():
                interest.setdefault(event, set()).update(plugins)
        self.queue = SchedulingQueue(
            interest=interest,
            initial_backoff=self.options.initial_backoff,
            max_backoff=self.options.max_backoff,
            max_unschedulable=self.options.max_unschedulable,
        )
        self.recorder = EventRecorder(writer, next(iter(self.frameworks)))
        self.rng = random.Random(self.options.seed)
        self.stats = SchedulerStats()
        self.informers = InformerFactory(client)
        self.pods = self.informers.informer(Pod)
        self.nodes = self.informers.informer(Node)
        self.namespaces = self.informers.informer(Namespace)
        self._bind_slots = asyncio.Semaphore(self.options.parallel_binds)
        self._binding: set[str] = set()  # keys whose binding is in flight
        self._tasks: set[asyncio.Task[None]] = set()
        self.pods.add_event_handler(
            EventHandler(self._on_pod_add, self._on_pod_update, self._on_pod_delete)
        )
        self.nodes.add_event_handler(
            EventHandler(self._on_node_add, self._on_node_update, self._on_node_delete)
        )

    # ---- informer events ---------------------------------------------------------------------

    def _namespace_labels(self, namespace: str) -> Mapping[str, str]:
        obj = self.namespaces.get(None, namespace)
        return ((obj or {}).get("metadata") or {}).get("labels") or {}

    def _responsible(self, pod: PodInfo) -> bool:
        return pod.scheduler_name in self.frameworks and not pod.deleting and not pod.terminal

    def _move(self, event: str) -> None:
        self.queue.move_for_event(event)

    def _assigned_pod(self, pod: PodInfo, *, updated: bool) -> None:
        self.queue.delete(pod.key)
        if pod.terminal:
            if self.cache.remove_pod(pod.key) is not None:
                self._move(ASSIGNED_POD_DELETE)
            return
        self.cache.add_pod(pod)
        self._move(ASSIGNED_POD_UPDATE if updated else ASSIGNED_POD_ADD)

    def _on_pod_add(self, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        if spec.get("nodeName"):
            key = _key(obj)
            if self.cache.confirm(key, obj):
                return
            self._assigned_pod(PodInfo(obj), updated=False)
            return
        pod = PodInfo(obj)
        if self._responsible(pod) and pod.key not in self._binding:
            self.queue.add(pod)

    def _on_pod_update(self, old: Obj, new: Obj) -> None:
        spec = new.get("spec") or {}
        if spec.get("nodeName"):
            key = _key(new)
            if not (old.get("spec") or {}).get("nodeName"):
                # Just bound: usually our own binding coming back.
                phase = (new.get("status") or {}).get("phase")
                if phase not in ("Succeeded", "Failed") and self.cache.confirm(key, new):
                    return
                self._assigned_pod(PodInfo(new), updated=False)
                return
            if _same_placement(old, new):
                return
            self._assigned_pod(PodInfo(new), updated=True)
            return
        pod = PodInfo(new)
        if not self._responsible(pod):
            self.queue.delete(pod.key)
            return
        if pod.key in self._binding or self.cache.is_assumed(pod.key):
            return
        relevant = old.get("spec") != new.get("spec") or (old.get("metadata") or {}).get(
            "labels"
        ) != (new.get("metadata") or {}).get("labels")
        self.queue.update(pod, relevant=relevant)

    def _on_pod_delete(self, obj: Obj) -> None:
        key = _key(obj)
        self.queue.delete(key)
        if self.cache.remove_pod(key) is not None:
            self._move(ASSIGNED_POD_DELETE)

    def _on_node_add(self, obj: Obj) -> None:
        self.cache.set_node(obj)
        self._move(NODE_ADD)

    def _on_node_update(self, old: Obj, new: Obj) -> None:
        _, changes, added = self.cache.set_node(new)
        if added:
            self._move(NODE_ADD)
            return
        for event in node_update_events(changes):
            self._move(event)

    def _on_node_delete(self, obj: Obj) -> None:
        self.cache.remove_node(str((obj.get("metadata") or {}).get("name") or ""))

    # ---- one cycle ---------------------------------------------------------------------------

    def schedule_pod(
        self, framework: Framework, state: CycleState, pod: PodInfo
    ) -> NodeInfo | FitError:
        """Pick a node for ``pod`` (no side effects on the cache)."""
        all_nodes = self.cache.node_list
        if not all_nodes:
            diagnosis = Diagnosis(unschedulable_plugins={NO_NODES})
            return FitError(pod, 0, diagnosis)
        allowed, status = framework.run_pre_filter(state, pod)
        if not status.is_success:
            diagnosis = Diagnosis(
                unschedulable_plugins={status.plugin} if status.is_rejected else set(),
                pre_filter_message=status.message,
            )
            for node in all_nodes:
                diagnosis.node_statuses[node.name] = status
            return FitError(pod, len(all_nodes), diagnosis)
        nodes = all_nodes
        generation: int | None = self.cache.static_generation
        if allowed is not None:
            nodes = [n for n in all_nodes if n.name in allowed]
            generation = None
        feasible = framework.find_feasible(state, pod, nodes, generation)
        if not feasible:
            diagnosis = framework.diagnose(state, pod, nodes)
            if allowed is not None:
                excluded = unresolvable(PREFILTER_RESULT_REASON)
                for node in all_nodes:
                    if node.name not in allowed:
                        diagnosis.node_statuses[node.name] = excluded
                for plugin in framework.pre_filter_plugins:
                    if plugin.name not in state.skip_filter:
                        diagnosis.unschedulable_plugins.add(plugin.name)
            return FitError(pod, len(all_nodes), diagnosis)
        if len(feasible) == 1:
            return feasible[0]
        status = framework.run_pre_score(state, pod, feasible)
        if not status.is_success:
            raise RuntimeError(f"PreScore: {status}")
        totals = framework.run_score(state, pod, feasible)
        return self.select_host(feasible, totals)

    def select_host(self, nodes: Sequence[NodeInfo], totals: Sequence[int]) -> NodeInfo:
        """The best total; among equals, one chosen uniformly at random."""
        best = max(totals)
        count = totals.count(best)
        if count == 1:
            return nodes[totals.index(best)]
        # The same draw as ``rng.choice(winners)``, without building the list of winners.
        wanted = self.rng.randrange(count)
        winners = itertools.compress(
            range(len(totals)), map(operator.eq, totals, itertools.repeat(best))
        )
        return nodes[next(itertools.islice(winners, wanted, None))]

    def _still_pending(self, pod: PodInfo) -> bool:
        if pod.key in self.cache.pods:
            return False
        current = self.pods.indexer.get(pod.key)
        if current is None:
            return False
        meta = current.get("metadata") or {}
        return not (current.get("spec") or {}).get("nodeName") and not meta.get("deletionTimestamp")

    def schedule_one(self, qpi: QueuedPodInfo) -> bool:
        """One cycle for one popped pod; True if it was assumed and its binding started (the
        caller must then have a bind slot to give it)."""
        pod = qpi.pod
        framework = self.frameworks.get(pod.scheduler_name)
        if framework is None or not self._still_pending(pod):
            self.stats.skipped += 1
            return False
        self.stats.attempts += 1
        started = time.perf_counter()
        state = CycleState()
        try:
            result = self.schedule_pod(framework, state, pod)
        except Exception:
            log.exception("scheduling %s failed", pod.key)
            self.stats.errors += 1
            self.queue.add_backoff(qpi)
            return False
        finally:
            self.stats.cycle_seconds += time.perf_counter() - started
        if isinstance(result, FitError):
            self.stats.unschedulable += 1
            message = str(result)
            log.info("%s is unschedulable: %s", pod.key, message)
            self.queue.add_unschedulable(qpi, result.diagnosis.unschedulable_plugins)
            self._spawn(self._report_unschedulable(pod, message))
            return False
        self.cache.assume(pod, result.name)
        self._binding.add(pod.key)
        self._spawn(self._bind(framework, state, qpi, result.name))
        return True

    async def _bind(
        self, framework: Framework, state: CycleState, qpi: QueuedPodInfo, node_name: str
    ) -> None:
        pod = qpi.pod
        try:
            status = await framework.run_bind(state, pod, node_name)
        finally:
            self._binding.discard(pod.key)
            self._bind_slots.release()
        if status.is_success:
            self.stats.scheduled += 1
            name = framework.scheduler_name
            self.stats.per_profile[name] = self.stats.per_profile.get(name, 0) + 1
            return
        self.stats.errors += 1
        log.warning("binding %s to %s failed: %s", pod.key, node_name, status)
        if self.cache.is_assumed(pod.key):
            self.cache.forget(pod)
            self._move(ASSIGNED_POD_DELETE)
        if self._still_pending(pod):
            current = self.pods.indexer.get(pod.key)
            if current is not None and current is not pod.obj:
                # Changed (or deleted and created again: the binding's uid no longer matches)
                # while its binding was in flight, when its own events were not queued.
                qpi.pod = PodInfo(current)
            self.queue.add_backoff(qpi)

    async def _report_unschedulable(self, pod: PodInfo, message: str) -> None:
        try:
            await self._set_unschedulable_condition(pod, message)
        except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
            log.warning("updating PodScheduled of %s: %s", pod.key, exc)
        if self.options.record_events:
            await self.recorder.record(pod, WARNING, FAILED_SCHEDULING, message)

    async def _set_unschedulable_condition(self, pod: PodInfo, message: str) -> None:
        current = self.pods.indexer.get(pod.key) or pod.obj
        if (current.get("spec") or {}).get("nodeName"):
            return
        previous: dict[str, Any] = {}
        for condition in (current.get("status") or {}).get("conditions") or ():
            if condition.get("type") == "PodScheduled":
                previous = condition
        if (
            previous.get("status") == "False"
            and previous.get("reason") == "Unschedulable"
            and previous.get("message") == message
        ):
            return
        now = now_rfc3339()
        condition = {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": message,
            "lastProbeTime": None,
            "lastTransitionTime": (
                previous.get("lastTransitionTime", now)
                if previous.get("status") == "False"
                else now
            ),
        }
        path = f"/api/v1/namespaces/{pod.namespace}/pods/{pod.name}/status"
        code, body = await self.writer.request(
            "PATCH", path, {"status": {"conditions": [condition]}}, STRATEGIC_PATCH
        )
        if code not in (200, 404):
            log.warning("patching %s status: HTTP %s: %s", pod.key, code, body[:200])

    def _spawn(self, coroutine: Any) -> None:
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("scheduler task failed", exc_info=task.exception())

    # ---- running -----------------------------------------------------------------------------

    async def wait_for_sync(self) -> None:
        self.informers.start()
        await self.informers.wait_for_sync()

    async def run(self, stop: asyncio.Event) -> None:
        """Schedule until ``stop`` is set; then let in-flight bindings finish (up to 10 s)."""
        closer = asyncio.get_running_loop().create_task(self._close_on(stop))
        try:
            sync = asyncio.ensure_future(self.wait_for_sync())
            stopped = asyncio.ensure_future(stop.wait())
            await asyncio.wait({sync, stopped}, return_when=asyncio.FIRST_COMPLETED)
            stopped.cancel()
            if not sync.done():
                sync.cancel()
                return
            log.info(
                "scheduler synced: %d nodes, %d pods queued",
                len(self.cache.node_list),
                len(self.queue),
            )
            yield_at = 0.0
            while True:
                if self._bind_slots.locked():
                    waited = time.perf_counter()
                    await self._bind_slots.acquire()
                    self.stats.bind_wait_seconds += time.perf_counter() - waited
                else:
                    await self._bind_slots.acquire()
                qpi = await self.queue.pop()
                if qpi is None:
                    self._bind_slots.release()
                    break
                if not self.schedule_one(qpi):
                    self._bind_slots.release()
                # Let watch events and binding answers in between pods, about every
                # millisecond: a turn of the event loop after each pod costs more than a short
                # cycle, and the bindings started meanwhile go out together.
                now = time.perf_counter()
                if now >= yield_at:
                    await asyncio.sleep(0)
                    yield_at = now + YIELD_INTERVAL
        finally:
            closer.cancel()
            await self._drain()
            await self.informers.stop()

    async def _close_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.queue.close()

    async def _drain(self) -> None:
        if self._tasks:
            _, pending = await asyncio.wait(set(self._tasks), timeout=10.0)
            for task in pending:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*pending, return_exceptions=True)


def _key(obj: Obj) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace') or ''}/{meta.get('name') or ''}"


def _same_placement(old: Obj, new: Obj) -> bool:
    """Whether an update of a bound pod leaves what the cache holds unchanged."""
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return (
        old.get("spec") == new.get("spec")
        and old_meta.get("labels") == new_meta.get("labels")
        and (old.get("status") or {}).get("phase") == (new.get("status") or {}).get("phase")
        and old_meta.get("ownerReferences") == new_meta.get("ownerReferences")
    )
