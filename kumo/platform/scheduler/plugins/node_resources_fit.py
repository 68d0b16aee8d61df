"""NodeResourcesFit: the pod's requests must fit the node's allocatable minus what its pods
already request — cpu, memory, the pod count, and every extended resource the pod asks for
(Filter). Score: Kubernetes' LeastAllocated (default) or MostAllocated strategy over the
configured resources (default cpu and memory, weight 1 each), on non-zero requests.

Args: ``{"scoringStrategy": {"type": "LeastAllocated" | "MostAllocated",
"resources": [{"name": "cpu", "weight": 1}, ...]}}``.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE_ALLOCATABLE,
    CycleState,
    FilterPlugin,
    Handle,
    ScorePlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import CPU, MEMORY, PodInfo
from kumo.platform.scheduler.status import SUCCESS, Status, unschedulable

TOO_MANY_PODS = "Too many pods"
EPHEMERAL_STORAGE = "ephemeral-storage"
LEAST_ALLOCATED = "LeastAllocated"
MOST_ALLOCATED = "MostAllocated"


def insufficient(resource: str) -> str:
    return f"Insufficient {resource}"


def fit_reasons(pod: PodInfo, node: NodeInfo) -> list[str]:
    """Kubernetes' fitsRequest: every resource that does not fit, in its order."""
    reasons = []
    if len(node.pods) + 1 > node.alloc_pods:
        reasons.append(TOO_MANY_PODS)
    if not pod.requests_anything:
        return reasons
    if pod.cpu > 0 and pod.cpu > node.alloc_cpu - node.req_cpu:
        reasons.append(insufficient(CPU))
    if pod.memory > 0 and pod.memory > node.alloc_memory - node.req_memory:
        reasons.append(insufficient(MEMORY))
    scalars = sorted(pod.scalar, key=lambda item: (item[0] != EPHEMERAL_STORAGE, item[0]))
    for name, amount in scalars:
        if amount > node.alloc_scalar.get(name, 0) - node.req_scalar.get(name, 0):
            reasons.append(insufficient(name))
    return reasons


def _resources(args: Mapping[str, Any]) -> tuple[str, tuple[tuple[str, int], ...]]:
    strategy = dict(args.get("scoringStrategy") or {})
    kind = str(strategy.get("type") or LEAST_ALLOCATED)
    if kind not in (LEAST_ALLOCATED, MOST_ALLOCATED):
        raise ValueError(f"NodeResourcesFit: unknown scoring strategy {kind!r}")
    resources = tuple(
        (str(r["name"]), int(r.get("weight") or 1)) for r in strategy.get("resources") or ()
    ) or ((CPU, 1), (MEMORY, 1))
    return kind, resources


def allocatable_and_requested(
    pod: PodInfo, node: NodeInfo, resource: str, *, non_zero: bool
) -> tuple[int, int]:
    """(allocatable, requested including the pod) for one resource; Kubernetes scores cpu and
    memory on non-zero requests, extended resources only when the pod asks for them."""
    if resource == CPU:
        if non_zero:
            return node.alloc_cpu, node.nz_cpu + pod.nz_cpu
        return node.alloc_cpu, node.req_cpu + pod.cpu
    if resource == MEMORY:
        if non_zero:
            return node.alloc_memory, node.nz_memory + pod.nz_memory
        return node.alloc_memory, node.req_memory + pod.memory
    wanted = dict(pod.scalar).get(resource, 0)
    if wanted == 0:
        return 0, 0
    return node.alloc_scalar.get(resource, 0), node.req_scalar.get(resource, 0) + wanted


class NodeResourcesFit(FilterPlugin, ScorePlugin):
    name = "NodeResourcesFit"

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)
        self.strategy, self.resources = _resources(self.args)
        self._memo_tag = (self.name, self.strategy, self.resources)

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_ALLOCATABLE, ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        reasons = fit_reasons(pod, node)
        return unschedulable(*reasons) if reasons else SUCCESS

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        if pod.scalar:
            return [n for n in nodes if not fit_reasons(pod, n)]
        # A zero request always fits (Kubernetes checks only requests > 0); free_* can be
        # negative on an overcommitted node, hence the explicit cases.
        cpu, memory = pod.cpu, pod.memory
        if cpu > 0 and memory > 0:
            return [
                n
                for n in nodes
                if n.free_pods > 0 and cpu <= n.free_cpu and memory <= n.free_memory
            ]
        return [
            n
            for n in nodes
            if n.free_pods > 0
            and (cpu == 0 or cpu <= n.free_cpu)
            and (memory == 0 or memory <= n.free_memory)
        ]

    # ---- score -----------------------------------------------------------------------------

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        total = 0
        weights = 0
        for resource, weight in self.resources:
            allocatable, requested = allocatable_and_requested(pod, node, resource, non_zero=True)
            if allocatable == 0:
                continue
            if self.strategy == LEAST_ALLOCATED:
                share = (
                    0
                    if requested > allocatable
                    else (allocatable - requested) * MAX_NODE_SCORE // allocatable
                )
            else:
                share = min(requested, allocatable) * MAX_NODE_SCORE // allocatable
            total += share * weight
            weights += weight
        return total // weights if weights else 0

    def memo_signature(self, state: CycleState, pod: PodInfo) -> Hashable:
        return (self._memo_tag, pod.nz_cpu, pod.nz_memory, pod.scalar)
