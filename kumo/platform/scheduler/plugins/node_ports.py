"""NodePorts: a pod's host ports (hostIP, protocol, hostPort) must be free on the node;
0.0.0.0 clashes with every address."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    NODE_ADD,
    CycleState,
    FilterPlugin,
    PreFilterPlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status, unschedulable

REASON = "node(s) didn't have free ports for the requested pod ports"
_REJECTED = unschedulable(REASON)


class NodePorts(PreFilterPlugin, FilterPlugin):
    name = "NodePorts"

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, ASSIGNED_POD_DELETE, ASSIGNED_POD_UPDATE)

    def pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[frozenset[str] | None, Status]:
        return None, (SUCCESS if pod.host_ports else SKIP)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        if node.ports:
            for ip, protocol, port in pod.host_ports:
                if node.port_conflict(ip, protocol, port):
                    return _REJECTED
        return SUCCESS

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        wanted = pod.host_ports
        return [
            n
            for n in nodes
            if not n.ports or not any(n.port_conflict(ip, pr, port) for ip, pr, port in wanted)
        ]
