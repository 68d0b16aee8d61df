"""The scheduling framework: extension points, plugin base classes, and the per-profile runner.

Extension points (Kubernetes' scheduling framework, in order):
- ``PreFilterPlugin.pre_filter(state, pod)`` -> (node names or None, Status): compute per-pod
  state once; ``SKIP`` means "this plugin has nothing to check for this pod" and its Filter is
  not run; a rejecting status rejects every node; a set of node names restricts the nodes.
- ``FilterPlugin.filter(state, pod, node)`` -> Status: may this pod run on this node?
  ``filter_nodes(state, pod, nodes)`` is the batch form the scheduler uses on its hot path; it
  must return exactly the nodes (in order) for which ``filter`` returns success — the default
  loops over ``filter``; plugins override it with a faster equivalent, and the unit tests check
  the agreement on random clusters.
- ``PreScorePlugin.pre_score(state, pod, nodes)`` -> Status: ``SKIP`` skips its Score.
- ``ScorePlugin.score(state, pod, node)`` -> int, ``score_nodes`` its batch form (same rule),
  and ``normalize(state, pod, scores)`` (in place) bringing scores to 0..``MAX_NODE_SCORE``;
  the framework multiplies by the profile's weight and sums.
- ``BindPlugin.bind(state, pod, node_name)`` -> Status (async); ``SKIP`` passes to the next.
- ``EnqueueExtensions.events_to_register()``: the cluster events that may make a pod this
  plugin rejected schedulable again (the queue's move rules, Kubernetes' queueing hints in a
  simple form).

Plugins never raise for an ordinary outcome; an unexpected exception inside a plugin becomes
an ``ERROR`` status for that pod (the pod is retried with backoff).
"""

from __future__ import annotations

import bisect
import itertools
import logging
import operator
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from kumo.platform.scheduler.cache import Cache
from kumo.platform.scheduler.nodeinfo import (
    NODE_ALLOCATABLE,
    NODE_CONDITION,
    NODE_IMAGES,
    NODE_LABEL,
    NODE_TAINT,
    NODE_UNSCHEDULABLE,
    NodeInfo,
)
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.status import SUCCESS, Status, error

log = logging.getLogger(__name__)

MAX_NODE_SCORE = 100

# ---- cluster events (what may make a rejected pod schedulable) --------------------------------

NODE_ADD = "Node/Add"
NODE_UPDATE_ALLOCATABLE = f"Node/{NODE_ALLOCATABLE}"
NODE_UPDATE_LABEL = f"Node/{NODE_LABEL}"
NODE_UPDATE_TAINT = f"Node/{NODE_TAINT}"
NODE_UPDATE_CONDITION = f"Node/{NODE_CONDITION}"
NODE_UPDATE_UNSCHEDULABLE = f"Node/{NODE_UNSCHEDULABLE}"
NODE_UPDATE_IMAGES = f"Node/{NODE_IMAGES}"
ASSIGNED_POD_ADD = "Pod/AssignedAdd"
ASSIGNED_POD_UPDATE = "Pod/AssignedUpdate"
ASSIGNED_POD_DELETE = "Pod/AssignedDelete"

ALL_EVENTS = frozenset(
    {
        NODE_ADD,
        NODE_UPDATE_ALLOCATABLE,
        NODE_UPDATE_LABEL,
        NODE_UPDATE_TAINT,
        NODE_UPDATE_CONDITION,
        NODE_UPDATE_UNSCHEDULABLE,
        NODE_UPDATE_IMAGES,
        ASSIGNED_POD_ADD,
        ASSIGNED_POD_UPDATE,
        ASSIGNED_POD_DELETE,
    }
)


def node_update_events(changes: Iterable[str]) -> list[str]:
    return [f"Node/{change}" for change in changes]


# ---- plugin API -----------------------------------------------------------------------------


class CycleState:
    """Per-pod, per-cycle scratch space: plugin data and the plugins PreFilter/PreScore
    skipped."""

    __slots__ = ("data", "skip_filter", "skip_score")

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.skip_filter: set[str] = set()
        self.skip_score: set[str] = set()


class Writer(Protocol):
    """An HTTP request to the API server: (status code, body)."""

    async def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, bytes]: ...


def _no_namespace_labels(namespace: str) -> Mapping[str, str]:
    return {}


@dataclass
class Handle:
    """What plugins may use: the cache (the cycle's snapshot), namespace labels (for
    namespaceSelector in pod affinity terms) and the API writer (binders)."""

    cache: Cache
    namespace_labels: Callable[[str], Mapping[str, str]] = _no_namespace_labels
    writer: Writer | None = None
    scheduler_name: str = "default-scheduler"


class Plugin:
    name: ClassVar[str] = ""

    def __init__(self, handle: Handle, args: Mapping[str, Any] | None = None) -> None:
        self.handle = handle
        self.args: Mapping[str, Any] = args or {}

    def events_to_register(self) -> Iterable[str]:
        """Cluster events that may make a pod this plugin rejected schedulable (default: all)."""
        return ALL_EVENTS


class PreFilterPlugin(Plugin):
    def pre_filter(self, state: CycleState, pod: PodInfo) -> tuple[frozenset[str] | None, Status]:
        raise NotImplementedError


class FilterPlugin(Plugin):
    # A static filter's verdict depends only on the Node object (labels, taints, conditions,
    # cordoning) and on what ``signature(pod)`` returns, never on the pods placed on the node.
    # The framework then caches which nodes pass per signature until a node changes.
    static: ClassVar[bool] = False

    def signature(self, pod: PodInfo) -> Hashable:
        """For static filters: everything about the pod the verdict depends on."""
        raise NotImplementedError

    def filter(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        raise NotImplementedError

    def filter_nodes(
        self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]
    ) -> list[NodeInfo]:
        return [n for n in nodes if self.filter(state, pod, n).is_success]


class PreScorePlugin(Plugin):
    def pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        raise NotImplementedError


class ScorePlugin(Plugin):
    normalizes: ClassVar[bool] = False

    def score(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> int:
        raise NotImplementedError

    def score_nodes(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        return [self.score(state, pod, n) for n in nodes]

    def normalize(self, state: CycleState, pod: PodInfo, scores: list[int]) -> None:
        """Bring ``scores`` (one per node, in place) to 0..MAX_NODE_SCORE."""

    def normalized_table(
        self, state: CycleState, pod: PodInfo, scores: Sequence[int]
    ) -> list[int] | None:
        """None, or a table ``t`` with ``t[s]`` equal to what ``normalize`` makes of every raw
        score ``s`` in ``scores`` (small counts): the framework then looks the normalized
        (and weighted) scores up instead of calling ``normalize``."""
        return None

    def memo_signature(self, state: CycleState, pod: PodInfo) -> Hashable | None:
        """None, or a value such that ``score`` on a node depends only on that node's state and
        on it (for plugins that do not normalize). The framework then keeps the weighted sum
        of such plugins in ``NodeInfo.memo`` until the node changes."""
        return None


class BindPlugin(Plugin):
    def bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Awaitable[Status]:
        raise NotImplementedError


def default_normalize_table(
    scores: Sequence[int], *, reverse: bool, counts: bool = False
) -> list[int] | None:
    """``default_normalize`` as a lookup table indexed by the raw score, when the raw scores
    are small non-negative numbers (else None); ``counts``: the caller knows that none is
    negative."""
    if not scores:
        return None
    if not counts and min(scores) < 0:
        return None
    highest = max(scores)
    if highest == 0:
        return [MAX_NODE_SCORE if reverse else 0]
    if highest > 4096:
        return None
    if reverse:
        return [MAX_NODE_SCORE - MAX_NODE_SCORE * s // highest for s in range(highest + 1)]
    return [MAX_NODE_SCORE * s // highest for s in range(highest + 1)]


def default_normalize(scores: list[int], *, reverse: bool) -> None:
    """Kubernetes' DefaultNormalizeScore: scale to 0..100 by the maximum; ``reverse`` flips
    (a node with the highest raw score gets 0). All zero: 0, or 100 when reversed."""
    highest = max(scores, default=0)
    if highest == 0:
        if reverse:
            scores[:] = [MAX_NODE_SCORE] * len(scores)
        return
    if highest <= 4096 and min(scores) >= 0:
        # The same values through a lookup table: raw scores are small counts or weights.
        if reverse:
            table = [MAX_NODE_SCORE - MAX_NODE_SCORE * s // highest for s in range(highest + 1)]
        else:
            table = [MAX_NODE_SCORE * s // highest for s in range(highest + 1)]
        scores[:] = [table[s] for s in scores]
    elif reverse:
        scores[:] = [MAX_NODE_SCORE - MAX_NODE_SCORE * s // highest for s in scores]
    else:
        scores[:] = [MAX_NODE_SCORE * s // highest for s in scores]


def _add_looked_up(
    totals: list[int] | None, looked_up: Sequence[tuple[list[int], list[int]]], count: int
) -> list[int]:
    """``totals`` (None: zeros) plus ``table[raw]`` of each (raw scores, table) pair, node by
    node; the common shapes in one pass."""
    if not looked_up:
        return totals if totals is not None else [0] * count
    if totals is None:
        (first, table), *rest = looked_up
        totals = [table[s] for s in first]
        looked_up = rest
    while len(looked_up) >= 2:
        (a, ta), (b, tb), *rest = looked_up
        totals = [t + ta[x] + tb[y] for t, x, y in zip(totals, a, b, strict=True)]
        looked_up = rest
    if looked_up:
        a, ta = looked_up[0]
        totals = [t + ta[x] for t, x in zip(totals, a, strict=True)]
    return totals


# ---- the profile runner ----------------------------------------------------------------------

PREFILTER_RESULT_REASON = "node is filtered out by the prefilter result"


@dataclass
class Diagnosis:
    """Why no node fits: each node's status, and the plugins that said no."""

    node_statuses: dict[str, Status] = field(default_factory=dict)
    unschedulable_plugins: set[str] = field(default_factory=set)
    pre_filter_message: str = ""


class Framework:
    """One profile's plugins, ready to run. Build with ``registry.build_framework``."""

    def __init__(
        self,
        plugins: Sequence[tuple[Plugin, int]],
        *,
        percentage_of_nodes_to_score: int = 0,
        scheduler_name: str = "default-scheduler",
        memo_key: Callable[[Hashable], int] | None = None,
    ) -> None:
        self.scheduler_name = scheduler_name
        self.memo_key = memo_key
        self.percentage_of_nodes_to_score = percentage_of_nodes_to_score
        self.plugins = [p for p, _ in plugins]
        self.pre_filter_plugins = [p for p in self.plugins if isinstance(p, PreFilterPlugin)]
        self.filter_plugins = [p for p in self.plugins if isinstance(p, FilterPlugin)]
        self.pre_score_plugins = [p for p in self.plugins if isinstance(p, PreScorePlugin)]
        self.score_plugins = [
            (p, weight) for p, weight in plugins if isinstance(p, ScorePlugin) and weight > 0
        ]
        self.bind_plugins = [p for p in self.plugins if isinstance(p, BindPlugin)]
        # event -> plugins interested in it
        self.event_plugins: dict[str, set[str]] = {}
        for plugin in self.plugins:
            for event in plugin.events_to_register():
                self.event_plugins.setdefault(event, set()).add(plugin.name)
        self.next_start_index = 0
        # (static plugin names, their pod signatures) ->
        # (generation, positions in the node list, the nodes at those positions)
        self._static: dict[tuple[Hashable, ...], tuple[int, list[int], list[NodeInfo]]] = {}
        self.static_hits = 0
        self.static_misses = 0

    # ---- PreFilter / Filter ---------------------------------------------------------------

    def run_pre_filter(
        self, state: CycleState, pod: PodInfo
    ) -> tuple[frozenset[str] | None, Status]:
        allowed: frozenset[str] | None = None
        for plugin in self.pre_filter_plugins:
            try:
                names, status = plugin.pre_filter(state, pod)
            except Exception as exc:
                log.exception("PreFilter plugin %s failed on %s", plugin.name, pod.key)
                return None, error(f"running PreFilter plugin {plugin.name}: {exc}").with_plugin(
                    plugin.name
                )
            if status.is_skip:
                state.skip_filter.add(plugin.name)
                continue
            if not status.is_success:
                return None, status.with_plugin(plugin.name)
            if names is not None:
                allowed = names if allowed is None else allowed & names
        return allowed, SUCCESS

    def active_filters(self, state: CycleState) -> list[FilterPlugin]:
        return [p for p in self.filter_plugins if p.name not in state.skip_filter]

    def filter_node(self, state: CycleState, pod: PodInfo, node: NodeInfo) -> Status:
        """The reference path: every active Filter on one node, first rejection wins."""
        for plugin in self.active_filters(state):
            try:
                status = plugin.filter(state, pod, node)
            except Exception as exc:
                log.exception("Filter plugin %s failed on %s", plugin.name, pod.key)
                return error(f"running Filter plugin {plugin.name}: {exc}").with_plugin(plugin.name)
            if not status.is_success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    def nodes_to_find(self, total: int) -> int:
        """Kubernetes' numFeasibleNodesToFind: all nodes below 100; otherwise an adaptive
        share (50% minus 1% per 125 nodes, at least 5%), and never fewer than 100."""
        minimum = 100
        if total < minimum or self.percentage_of_nodes_to_score >= 100:
            return total
        percentage = self.percentage_of_nodes_to_score
        if percentage <= 0:
            percentage = max(50 - total // 125, 5)
        wanted = total * percentage // 100
        return max(wanted, minimum)

    def find_feasible(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: Sequence[NodeInfo],
        generation: int | None = None,
    ) -> list[NodeInfo]:
        """The first ``nodes_to_find`` nodes, in order from the rotating start index, that pass
        every active filter; the next pod starts after the last node examined (Kubernetes).

        ``generation`` (the cache's ``static_generation``, only when ``nodes`` is the cache's
        whole node list) enables the static-filter cache: the nodes that pass the static
        filters are computed once per pod signature, and only they go through the others.
        The result is the same either way (the unit tests check this)."""
        total = len(nodes)
        if total == 0:
            return []
        wanted = self.nodes_to_find(total)
        start = self.next_start_index % total
        filters = self.active_filters(state)
        static = [p for p in filters if p.static] if generation is not None else []
        # The candidates in rotation order, as (positions in ``nodes``) or None for "all".
        positions: list[int] | None = None
        candidates: Sequence[NodeInfo] = nodes
        if static:
            positions, candidates = self._static_positions(
                state, pod, nodes, static, generation or 0
            )
            dynamic = [p for p in filters if not p.static]
            split = bisect.bisect_left(positions, start)
            count = len(positions)
        else:
            dynamic = filters
            split = start
            count = total
        feasible: list[NodeInfo] = []
        # A little more than needed: most candidates pass the dynamic filters.
        chunk_size = wanted + wanted // 16 + 16
        examined = total
        for low, high in ((split, count), (0, split)):
            for begin in range(low, high, chunk_size):
                end = min(begin + chunk_size, high)
                chunk = candidates[begin:end]
                passing: Sequence[NodeInfo] = chunk
                for plugin in dynamic:
                    passing = plugin.filter_nodes(state, pod, passing)
                    if not passing:
                        break
                room = wanted - len(feasible)
                if len(passing) < room:
                    feasible.extend(passing)
                    continue
                feasible.extend(passing[:room])
                at = begin + chunk.index(passing[room - 1])
                position = at if positions is None else positions[at]
                examined = (position - start) % total + 1
                self.next_start_index = (start + examined) % total
                return feasible
        self.next_start_index = (start + examined) % total
        return feasible

    def _static_positions(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: Sequence[NodeInfo],
        static: Sequence[FilterPlugin],
        generation: int,
    ) -> tuple[list[int], list[NodeInfo]]:
        """The positions in ``nodes`` of the nodes that pass the static filters, and those
        nodes (cached per pod signature until the cache's static generation moves)."""
        key = tuple((p.name, p.signature(pod)) for p in static)
        found = self._static.get(key)
        if found is not None and found[0] == generation:
            self.static_hits += 1
            return found[1], found[2]
        self.static_misses += 1
        passing: Sequence[NodeInfo] = nodes
        for plugin in static:
            passing = plugin.filter_nodes(state, pod, passing)
        keep = {id(n) for n in passing}
        positions = [i for i, n in enumerate(nodes) if id(n) in keep]
        if len(self._static) >= 256:
            self._static.clear()
        kept = [nodes[i] for i in positions]
        self._static[key] = (generation, positions, kept)
        return positions, kept

    def diagnose(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Diagnosis:
        """Every node's status through the reference path (only when nothing fits)."""
        diagnosis = Diagnosis()
        for node in nodes:
            status = self.filter_node(state, pod, node)
            if status.is_success:
                continue
            diagnosis.node_statuses[node.name] = status
            if status.is_rejected:
                diagnosis.unschedulable_plugins.add(status.plugin)
        return diagnosis

    # ---- PreScore / Score --------------------------------------------------------------------

    def run_pre_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> Status:
        for plugin in self.pre_score_plugins:
            status = plugin.pre_score(state, pod, nodes)
            if status.is_skip:
                state.skip_score.add(plugin.name)
            elif not status.is_success:
                return status.with_plugin(plugin.name)
        return SUCCESS

    def run_score(self, state: CycleState, pod: PodInfo, nodes: Sequence[NodeInfo]) -> list[int]:
        """The weighted sum of every active Score plugin, one total per node."""
        totals: list[int] | None = None
        active = [(p, w) for p, w in self.score_plugins if p.name not in state.skip_score]
        if self.memo_key is not None:
            fused, signature = [], []
            rest = []
            for plugin, weight in active:
                found = None if plugin.normalizes else plugin.memo_signature(state, pod)
                if found is None:
                    rest.append((plugin, weight))
                else:
                    fused.append((plugin.score, weight))
                    signature.append((plugin.name, weight, found))
            if fused:
                totals = self._fused_scores(state, pod, nodes, fused, tuple(signature))
            active = rest
        # Scores normalized through a lookup table are added in one pass at the end.
        looked_up: list[tuple[list[int], list[int]]] = []
        for plugin, weight in active:
            scores = plugin.score_nodes(state, pod, nodes)
            if len(scores) != len(nodes):
                raise AssertionError(f"{plugin.name}: {len(scores)} scores for {len(nodes)} nodes")
            table = plugin.normalized_table(state, pod, scores) if plugin.normalizes else None
            if table is not None:
                looked_up.append(
                    (scores, table if weight == 1 else [value * weight for value in table])
                )
                continue
            if plugin.normalizes:
                plugin.normalize(state, pod, scores)
            weighted: Iterable[int] = scores
            if weight != 1:
                weighted = map(operator.mul, scores, itertools.repeat(weight))
            if totals is None:
                totals = list(weighted)
            else:
                totals = list(map(operator.add, totals, weighted))
        return _add_looked_up(totals, looked_up, len(nodes))

    def _fused_scores(
        self,
        state: CycleState,
        pod: PodInfo,
        nodes: Sequence[NodeInfo],
        fused: Sequence[tuple[Callable[[CycleState, PodInfo, NodeInfo], int], int]],
        signature: Hashable,
    ) -> list[int]:
        assert self.memo_key is not None
        key = self.memo_key(signature)
        # Mostly memo hits (a node's memo is cleared only when the node changes): look them
        # all up in one pass, then fill the misses.
        out: list[int | None] = [n.memo.get(key) for n in nodes]
        if None in out:
            at = out.index(None)
            while True:
                n = nodes[at]
                value = 0
                for score, weight in fused:
                    value += score(state, pod, n) * weight
                n.memo[key] = value
                out[at] = value
                try:
                    at = out.index(None, at + 1)
                except ValueError:
                    break
        return out  # type: ignore[return-value]  # no None is left

    # ---- Bind ------------------------------------------------------------------------------

    async def run_bind(self, state: CycleState, pod: PodInfo, node_name: str) -> Status:
        for plugin in self.bind_plugins:
            try:
                status = await plugin.bind(state, pod, node_name)
            except Exception as exc:
                log.exception("Bind plugin %s failed on %s", plugin.name, pod.key)
                return error(f"binding: {exc}").with_plugin(plugin.name)
            if status.is_skip:
                continue
            return status.with_plugin(plugin.name)
        return error("no bind plugin bound the pod")


__all__ = [
    "MAX_NODE_SCORE",
    "BindPlugin",
    "CycleState",
    "Diagnosis",
    "FilterPlugin",
    "Framework",
    "Handle",
    "Plugin",
    "PreFilterPlugin",
    "PreScorePlugin",
    "ScorePlugin",
    "default_normalize",
    "default_normalize_table",
]
