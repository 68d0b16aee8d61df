"""NodeAffinity: ``spec.nodeSelector`` and required node affinity (Filter; In, NotIn, Exists,
DoesNotExist, Gt, Lt on labels, ``matchFields`` on ``metadata.name``); the weights of matching
preferred terms (Score, normalized by the maximum)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from kumo.platform.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE_LABEL,
    CycleState,
    FilterPlugin,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    default_normalize,
    default_normalize_table,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status, unresolvable

REASON = "node(s) didn't match Pod's node affinity/selector"
CONFLICT_REASON = "pod affinity terms conflict"
_REJECTED = unresolvable(REASON)


class NodeAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = "NodeAffinity"
    normalizes = True
    static = True

    def signature(self, pod: PodInfo) -> Hashable:
        return pod.required_node_affinity

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_LABEL)

    def pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[frozenset[str] | None, Status]:
        required = pod.required_node_affinity
        if required is None:
            return None, SKIP
        names = required.node_names()
        if names is not None and not names:
            return None, unresolvable(CONFLICT_REASON)
        return names, SUCCESS

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        required = pod.required_node_affinity
        if required is None or required.matches(node.labels, node.name):
            return SUCCESS
        return _REJECTED

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        required = pod.required_node_affinity
        if required is None:
            return list(nodes)
        return [n for n in nodes if required.matches(n.labels, n.name)]

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        return SUCCESS if pod.preferred_node_affinity else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return sum(
            weight
            for weight, term in pod.preferred_node_affinity
            if term.matches(node.labels, node.name)
        )

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores, reverse=False)

    def normalized_table(
        self, state: CycleState, pod: PodInfo, scores: Sequence[int]
    ) -> list[int] | None:
        return default_normalize_table(scores, reverse=False)
