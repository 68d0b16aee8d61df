"""InterPodAffinity: required pod affinity and anti-affinity by any topology key (hostname,
zone, ...), symmetric as in Kubernetes — the incoming pod's anti-affinity against pods already
placed, and placed pods' anti-affinity against the incoming pod (Filter); preferred terms of
both sides, and placed pods' required affinity with ``hardPodAffinityWeight`` (Score,
min-max normalized).

The counts are computed once per pod in PreFilter / PreScore from the cache (which includes
assumed pods), per (topologyKey, value) pair, as Kubernetes does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kumo.platform.scheduler.framework import (
    ASSIGNED_POD_ADD,
    ASSIGNED_POD_DELETE,
    ASSIGNED_POD_UPDATE,
    MAX_NODE_SCORE,
    NODE_ADD,
    NODE_UPDATE_LABEL,
    CycleState,
    FilterPlugin,
    Handle,
    PreFilterPlugin,
    PreScorePlugin,
    ScorePlugin,
)
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import AffinityTerm, NamespaceLabels, PodInfo
from kumo.platform.scheduler.status import SKIP, SUCCESS, Status, unresolvable, unschedulable

NAME = "InterPodAffinity"
AFFINITY_REASON = "node(s) didn't match pod affinity rules"
ANTI_AFFINITY_REASON = "node(s) didn't match pod anti-affinity rules"
EXISTING_ANTI_AFFINITY_REASON = "node(s) didn't satisfy existing pods anti-affinity rules"
_AFFINITY_REJECTED = unresolvable(AFFINITY_REASON)
_ANTI_AFFINITY_REJECTED = unschedulable(ANTI_AFFINITY_REASON)
_EXISTING_REJECTED = unschedulable(EXISTING_ANTI_AFFINITY_REASON)

Pair = tuple[str, str]


@dataclass
class FilterState:
    existing_anti: dict[Pair, int] = field(default_factory=dict)
    affinity: dict[Pair, int] = field(default_factory=dict)
    anti: dict[Pair, int] = field(default_factory=dict)
    matches_own_terms: bool = False


def _bump(counts: dict[Pair, int], labels: Mapping[str, str], key: str, value: int) -> None:
    found = labels.get(key)
    if found is not None:
        pair = (key, found)
        total = counts.get(pair, 0) + value
        if total:
            counts[pair] = total
        else:
            counts.pop(pair, None)


def matches_all(
    terms: Sequence[AffinityTerm], pod: PodInfo, namespace_labels: NamespaceLabels
) -> bool:
    if not terms:
        return False
    return all(term.matches(pod, namespace_labels) for term in terms)


class InterPodAffinity(PreFilterPlugin, FilterPlugin, PreScorePlugin, ScorePlugin):
    name = NAME
    normalizes = True

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        super().__init__(handle, args)
        self.hard_pod_affinity_weight = int(self.args.get("hardPodAffinityWeight", 1))

    def events_to_register(self) -> Iterable[str]:
        return (
            ASSIGNED_POD_ADD,
            ASSIGNED_POD_UPDATE,
            ASSIGNED_POD_DELETE,
            NODE_ADD,
            NODE_UPDATE_LABEL,
        )

    # ---- filter ------------------------------------------------------------------------------

    def pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[frozenset[str] | None, Status]:
        cache = self.handle.cache
        ns_labels = self.handle.namespace_labels
        fs = FilterState()
        for existing in cache.anti_affinity_pods.values():
            node = cache.get_node(existing.node_name)
            if node is None:
                continue
            for term in existing.required_anti_affinity:
                if term.matches(pod, ns_labels):
                    _bump(fs.existing_anti, node.labels, term.topology_key, 1)
        if not pod.required_affinity and not pod.required_anti_affinity and not fs.existing_anti:
            return None, SKIP
        if pod.required_affinity or pod.required_anti_affinity:
            for existing in cache.pods.values():
                node = cache.get_node(existing.node_name)
                if node is None:
                    continue
                if matches_all(pod.required_affinity, existing, ns_labels):
                    for term in pod.required_affinity:
                        _bump(fs.affinity, node.labels, term.topology_key, 1)
                for term in pod.required_anti_affinity:
                    if term.matches(existing, ns_labels):
                        _bump(fs.anti, node.labels, term.topology_key, 1)
            fs.matches_own_terms = matches_all(pod.required_affinity, pod, ns_labels)
        state.data[NAME] = fs
        return None, SUCCESS

    def _filter_state(self, state: CycleState, pod: PodInfo) -> FilterState:
        fs = state.data.get(NAME)
        if not isinstance(fs, FilterState):
            self.pre_filter(state, pod)
            fs = state.data.get(NAME)
        return fs if isinstance(fs, FilterState) else FilterState()

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        fs = self._filter_state(state, pod)
        labels = node.labels
        # affinity: every topology key present, and matching pods in each domain
        if pod.required_affinity:
            pods_exist = True
            for term in pod.required_affinity:
                value = labels.get(term.topology_key)
                if value is None:
                    return _AFFINITY_REJECTED
                if fs.affinity.get((term.topology_key, value), 0) <= 0:
                    pods_exist = False
            # The first pod of a group with affinity to itself may go anywhere.
            if not pods_exist and not (not fs.affinity and fs.matches_own_terms):
                return _AFFINITY_REJECTED
        if fs.anti:
            for term in pod.required_anti_affinity:
                value = labels.get(term.topology_key)
                if value is not None and fs.anti.get((term.topology_key, value), 0) > 0:
                    return _ANTI_AFFINITY_REJECTED
        if fs.existing_anti:
            for (key, value), count in fs.existing_anti.items():
                if count > 0 and labels.get(key) == value:
                    return _EXISTING_REJECTED
        return SUCCESS

    # ---- score -------------------------------------------------------------------------------

    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        cache = self.handle.cache
        ns_labels = self.handle.namespace_labels
        own_terms = bool(pod.preferred_affinity or pod.preferred_anti_affinity)
        candidates = cache.pods.values() if own_terms else cache.affinity_pods.values()
        scores: dict[str, dict[str, int]] = {}

        def add(
            term: AffinityTerm, weight: int, target: PodInfo, labels: Mapping[str, str]
        ) -> None:
            value = labels.get(term.topology_key)
            if value is not None and term.matches(target, ns_labels):
                per_key = scores.setdefault(term.topology_key, {})
                per_key[value] = per_key.get(value, 0) + weight

        for existing in candidates:
            node = cache.get_node(existing.node_name)
            if node is None or not node.labels:
                continue
            labels = node.labels
            for weight, term in pod.preferred_affinity:
                add(term, weight, existing, labels)
            for weight, term in pod.preferred_anti_affinity:
                add(term, -weight, existing, labels)
            if existing.has_affinity:
                if self.hard_pod_affinity_weight > 0:
                    for term in existing.required_affinity:
                        add(term, self.hard_pod_affinity_weight, pod, labels)
                for weight, term in existing.preferred_affinity:
                    add(term, weight, pod, labels)
                for weight, term in existing.preferred_anti_affinity:
                    add(term, -weight, pod, labels)
        scores = {k: v for k, v in scores.items() if any(v.values())}
        if not scores:
            return SKIP
        state.data[NAME + "/score"] = scores
        return SUCCESS

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        scores: dict[str, dict[str, int]] = state.data.get(NAME + "/score") or {}
        total = 0
        for key, per_value in scores.items():
            value = node.labels.get(key)
            if value is not None:
                total += per_value.get(value, 0)
        return total

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        if not scores:
            return
        low, high = min(scores), max(scores)
        spread = high - low
        if spread <= 0:
            scores[:] = [0] * len(scores)
            return
        scores[:] = [int(float(MAX_NODE_SCORE) * ((s - low) / spread)) for s in scores]
