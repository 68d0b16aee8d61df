"""TaintToleration: a node's NoSchedule / NoExecute taints must be tolerated (Filter); fewer
untolerated PreferNoSchedule taints score higher (Score, normalized in reverse)."""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence

from kumo.platform.scheduler.framework import (
    NODE_ADD,
    NODE_UPDATE_TAINT,
    CycleState,
    FilterPlugin,
    PreScorePlugin,
    ScorePlugin,
    default_normalize,
    default_normalize_table,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo, Taint
from kumo.platform.scheduler.podinfo import PodInfo, Toleration, tolerates
from kumo.platform.scheduler.status import SUCCESS, Status, unresolvable

NAME = "TaintToleration"


def untolerated_reason(taint: Taint) -> str:
    key, value, _ = taint
    return f"node(s) had untolerated taint {{{key}: {value}}}"


def first_untolerated(tolerations: tuple[Toleration, ...], node: NodeInfo) -> Taint | None:
    for taint in node.hard_taints:
        if not tolerates(tolerations, *taint):
            return taint
    return None


class TaintToleration(FilterPlugin, PreScorePlugin, ScorePlugin):
    name = NAME
    normalizes = True
    static = True

    def signature(self, pod: PodInfo) -> Hashable:
        return pod.tolerations

    def events_to_register(self) -> Iterable[str]:
        return (NODE_ADD, NODE_UPDATE_TAINT)

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        taint = first_untolerated(pod.tolerations, node)
        if taint is None:
            return SUCCESS
        return unresolvable(untolerated_reason(taint))

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        tolerations = pod.tolerations
        if not tolerations:
            return [n for n in nodes if not n.hard_taints]
        return [n for n in nodes if not n.hard_taints or first_untolerated(tolerations, n) is None]

    # ---- score -----------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        state.data[NAME] = tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule"))
        return SUCCESS

    @staticmethod
    def _prefer_tolerations(state: CycleState, pod: PodInfo) -> tuple[Toleration, ...]:
        found = state.data.get(NAME)
        if found is None:
            return tuple(t for t in pod.tolerations if t.effect in ("", "PreferNoSchedule"))
        return found  # type: ignore[no-any-return]

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        tolerations = self._prefer_tolerations(state, pod)
        return sum(1 for taint in node.prefer_taints if not tolerates(tolerations, *taint))

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        tolerations = self._prefer_tolerations(state, pod)
        if not tolerations:
            return [len(n.prefer_taints) for n in nodes]
        return [
            sum(1 for taint in n.prefer_taints if not tolerates(tolerations, *taint))
            if n.prefer_taints
            else 0
            for n in nodes
        ]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        default_normalize(scores, reverse=True)

    def normalized_table(
        self, state: CycleState, pod: PodInfo, scores: Sequence[int]
    ) -> list[int] | None:
        # raw scores count untolerated taints: never negative
        return default_normalize_table(scores, reverse=True, counts=True)
