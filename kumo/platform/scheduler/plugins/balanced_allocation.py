"""NodeResourcesBalancedAllocation: prefer nodes whose cpu and memory would be used in equal
shares after placing the pod: score = (1 - standard deviation of the used fractions) x 100,
on actual requests. Pods that request nothing are skipped (Kubernetes 1.32)."""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE_ALLOCATABLE,
    CycleState,
    Handle,
    PreScorePlugin,
    ScorePlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.plugins.node_resources_fit import allocatable_and_requested
from kumo.platform.scheduler.podinfo import CPU, MEMORY, PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status


def balanced_score(fractions: list[float]) -> int:
    if len(fractions) == 2:
        deviation = abs((fractions[0] - fractions[1]) / 2)
    elif len(fractions) > 2:
        mean = sum(fractions) / len(fractions)
        deviation = math.sqrt(sum((f - mean) * (f - mean) for f in fractions) / len(fractions))
    else:
        deviation = 0.0
    return int((1 - deviation) * MAX_NODE_SCORE)


class BalancedAllocation(PreScorePlugin, ScorePlugin):
    name = "NodeResourcesBalancedAllocation"

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)
        self.resources = tuple(str(r["name"]) for r in self.args.get("resources") or ()) or (
            CPU,
            MEMORY,
        )

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_ALLOCATABLE, ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        scalar = dict(pod.scalar)
        wanted = [
            pod.cpu if r == CPU else pod.memory if r == MEMORY else scalar.get(r, 0)
            for r in self.resources
        ]
        return SUCCESS if any(wanted) else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        fractions = []
        for resource in self.resources:
            allocatable, requested = allocatable_and_requested(pod, node, resource, non_zero=False)
            if allocatable == 0:
                continue
            fractions.append(min(requested / allocatable, 1.0))
        return balanced_score(fractions)

    def memo_signature(self, state: CycleState, pod: PodInfo) -> Hashable:
        return (self.resources, pod.cpu, pod.memory, pod.scalar)
