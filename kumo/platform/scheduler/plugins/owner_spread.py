"""OwnerSpread: spread the pods of one controller (same controller ownerReference uid, e.g.
one ReplicaSet) across nodes — fewer of its pods on a node scores higher. Kubernetes'
SelectorSpread scoring, keyed by owner rather than by service / controller selectors."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    MAX_NODE_SCORE,
    NODE_ADD,
    CycleState,
    PreScorePlugin,
    ScorePlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status


class OwnerSpread(PreScorePlugin, ScorePlugin):
    name = "OwnerSpread"
    normalizes = True

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, ASSIGNED_POD_ADD, ASSIGNED_POD_DELETE)

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        return SUCCESS if pod.owner_uid else SKIP

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        return node.owner_counts.get(pod.owner_uid, 0)

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        uid = pod.owner_uid
        return [n.owner_counts.get(uid, 0) if n.owner_counts else 0 for n in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        table = self.normalized_table(state, pod, scores)
        if table is None:
            highest = max(scores)
            scores[:] = [int(float(MAX_NODE_SCORE) * ((highest - s) / highest)) for s in scores]
        else:
            scores[:] = [table[s] for s in scores]

    def normalized_table(
        self, state: CycleState, pod: PodInfo, scores: Sequence[int]
    ) -> list[int] | None:
        highest = max(scores, default=0)
        if highest <= 0:
            return [MAX_NODE_SCORE]  # no pod of the owner anywhere: every count is 0
        if highest > 4096:
            return None
        # float arithmetic and truncation exactly as Kubernetes' SelectorSpread (counts are
        # never negative)
        return [int(float(MAX_NODE_SCORE) * ((highest - s) / highest)) for s in range(highest + 1)]
