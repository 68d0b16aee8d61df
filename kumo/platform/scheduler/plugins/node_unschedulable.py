"""NodeUnschedulable: a cordoned node (``spec.unschedulable``) takes only pods that tolerate
the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from kumo.platform.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE_TAINT,
    NODE_UPDATE_UNSCHEDULABLE,
    CycleState,
    FilterPlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo, tolerates
from kumo.platform.scheduler.status import SUCCESS, Status, unresolvable

UNSCHEDULABLE_TAINT = "node.kubernetes.io/unschedulable"
REASON = "node(s) were unschedulable"
_REJECTED = unresolvable(REASON)


class NodeUnschedulable(FilterPlugin):
    name = "NodeUnschedulable"
    static = True

    def signature(self, pod: PodInfo) -> Hashable:
        return bool(pod.tolerations) and self._tolerant(pod)

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_UNSCHEDULABLE, NODE_UPDATE_TAINT)

    @staticmethod
    def _tolerant(pod: PodInfo) -> bool:
        return tolerates(pod.tolerations, UNSCHEDULABLE_TAINT, "", "NoSchedule")

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if node.unschedulable and not self._tolerant(pod):
            return _REJECTED
        return SUCCESS

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        if pod.tolerations and self._tolerant(pod):
            return list(nodes)
        return [n for n in nodes if not n.unschedulable]
