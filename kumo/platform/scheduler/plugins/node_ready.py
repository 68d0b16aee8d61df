"""NodeReady: only nodes whose Ready condition is True, unless the pod tolerates the taint the
node lifecycle controller puts on such a node (``node.kubernetes.io/not-ready`` for False,
``node.kubernetes.io/unreachable`` for Unknown or missing) with effect NoSchedule.

Kubernetes leaves this to those taints alone; kumo also checks the condition, so a node whose
agent stopped reporting is avoided before the lifecycle controller has tainted it.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from kumo.platform.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE_CONDITION,
    CycleState,
    FilterPlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo, tolerates
from kumo.platform.scheduler.status import SUCCESS, Status, unresolvable

NOT_READY_TAINT = "node.kubernetes.io/not-ready"
UNREACHABLE_TAINT = "node.kubernetes.io/unreachable"
REASON = "node(s) were not ready"
_REJECTED = unresolvable(REASON)


class NodeReady(FilterPlugin):
    name = "NodeReady"
    static = True

    def signature(self, pod: PodInfo) -> Hashable:
        return pod.tolerations

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_CONDITION)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if node.ready == "True":
            return SUCCESS
        taint = NOT_READY_TAINT if node.ready == "False" else UNREACHABLE_TAINT
        if tolerates(pod.tolerations, taint, "", "NoSchedule"):
            return SUCCESS
        return _REJECTED

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        if pod.tolerations:
            return [n for n in nodes if n.ready == "True" or self.filter(state, pod, n) is SUCCESS]
        return [n for n in nodes if n.ready == "True"]
