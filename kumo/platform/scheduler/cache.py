"""The scheduler's cache: every Node and every pod bound (or assumed bound) to one.

The scheduling cycle runs synchronously on the event loop, so the cache itself is the
snapshot a cycle sees: informer events are applied between cycles, never during one.

What callers may rely on:
- ``assume(pod, node)`` books the pod on the node at once, so the next cycle sees its resources
  and ports as taken; ``forget`` undoes it (bind failed); the pod's own watch event with
  ``spec.nodeName`` later confirms it (``add_pod`` / ``update_pod`` of the bound pod);
- terminal pods (Succeeded / Failed) and pods on unknown nodes hold no resources on any node
  the scheduler can pick; a pod bound to a node that is not (yet) known is kept and counted
  once the Node appears;
- ``node_list`` is the nodes in a stable order (arrival), the basis of the rotating start
  index; it is rebuilt only when nodes come or go.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from kumo.platform.scheduler.nodeinfo import (
    NODE_CONDITION,
    NODE_LABEL,
    NODE_TAINT,
    NODE_UNSCHEDULABLE,
    NodeInfo,
)
from kumo.platform.scheduler.podinfo import PodInfo

Obj = dict[str, Any]
STATIC_CHANGES = frozenset({NODE_LABEL, NODE_TAINT, NODE_CONDITION, NODE_UNSCHEDULABLE})


class Cache:
    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}  # includes placeholders for unknown nodes
        self._node_list: list[NodeInfo] | None = []
        self.pods: dict[str, PodInfo] = {}  # key -> bound or assumed pod
        self.assumed: set[str] = set()
        # pods with any (anti-)affinity term, and those with required anti-affinity
        self.affinity_pods: dict[str, PodInfo] = {}
        self.anti_affinity_pods: dict[str, PodInfo] = {}
        self.image_nodes: dict[str, int] = {}  # image -> number of nodes that have it
        self.node_count = 0
        # Bumped whenever a node comes, goes, or changes labels, taints, conditions or
        # cordoning: what "static" filters (framework.FilterPlugin.static) read.
        self.static_generation = 0
        self._memo_keys: dict[Hashable, int] = {}
        self._next_memo_key = 0

    def memo_key(self, key: Hashable) -> int:
        """A small int standing for ``key`` in ``NodeInfo.memo`` (hashing an int is far cheaper
        than hashing a tuple on every lookup). Numbers are never reused."""
        found = self._memo_keys.get(key)
        if found is None:
            if len(self._memo_keys) >= 65536:
                self._memo_keys.clear()
            self._next_memo_key += 1
            found = self._memo_keys[key] = self._next_memo_key
        return found

    # ---- nodes ------------------------------------------------------------------------------

    @property
    def node_list(self) -> list[NodeInfo]:
        if self._node_list is None:
            self._node_list = [n for n in self.nodes.values() if n.obj is not None]
        return self._node_list

    def get_node(self, name: str) -> NodeInfo | None:
        node = self.nodes.get(name)
        return node if node is not None and node.obj is not None else None

    def _count_images(self, node: NodeInfo, sign: int) -> None:
        for image in node.images:
            count = self.image_nodes.get(image, 0) + sign
            if count > 0:
                self.image_nodes[image] = count
            else:
                self.image_nodes.pop(image, None)

    def set_node(self, obj: Obj) -> tuple[NodeInfo, set[str], bool]:
        """Add or update a Node: (its info, what changed, whether it is new)."""
        name = str((obj.get("metadata") or {}).get("name") or "")
        node = self.nodes.get(name)
        if node is None:
            node = NodeInfo(name)
            self.nodes[name] = node
        added = node.obj is None
        if added:
            self._node_list = None
            self.node_count += 1
        else:
            self._count_images(node, -1)
        changes = node.set_node(obj)
        self._count_images(node, +1)
        if added or changes & STATIC_CHANGES:
            self.static_generation += 1
        return node, changes, added

    def remove_node(self, name: str) -> NodeInfo | None:
        node = self.nodes.get(name)
        if node is None or node.obj is None:
            return None
        self._count_images(node, -1)
        self._node_list = None
        self.node_count -= 1
        self.static_generation += 1
        if node.pods:
            # Pods still bound there keep a placeholder until their own deletion arrives.
            node.obj = None
        else:
            del self.nodes[name]
        return node

    # ---- pods -------------------------------------------------------------------------------

    def _book(self, pod: PodInfo, node_name: str) -> None:
        node = self.nodes.get(node_name)
        if node is None:
            node = NodeInfo(node_name)
            self.nodes[node_name] = node
        node.add_pod(pod)
        self.pods[pod.key] = pod
        if pod.has_affinity:
            self.affinity_pods[pod.key] = pod
        if pod.has_required_anti_affinity:
            self.anti_affinity_pods[pod.key] = pod

    def _unbook(self, key: str) -> PodInfo | None:
        pod = self.pods.pop(key, None)
        if pod is None:
            return None
        self.affinity_pods.pop(key, None)
        self.anti_affinity_pods.pop(key, None)
        node = self.nodes.get(pod.node_name)
        if node is not None:
            node.remove_pod(pod)
            if node.obj is None and not node.pods:
                del self.nodes[node.name]
        return pod

    def node_of(self, key: str) -> str | None:
        pod = self.pods.get(key)
        return pod.node_name if pod is not None else None

    def is_assumed(self, key: str) -> bool:
        return key in self.assumed

    def assume(self, pod: PodInfo, node_name: str) -> None:
        pod.node_name = node_name
        self._book(pod, node_name)
        self.assumed.add(pod.key)

    def forget(self, pod: PodInfo) -> None:
        if pod.key in self.assumed:
            self.assumed.discard(pod.key)
            self._unbook(pod.key)
            pod.node_name = ""

    def add_pod(self, pod: PodInfo) -> None:
        """A bound pod from the informer (also confirms an assumption)."""
        self.assumed.discard(pod.key)
        self._unbook(pod.key)
        if pod.terminal or not pod.node_name:
            return
        self._book(pod, pod.node_name)

    def confirm(self, key: str, obj: Obj) -> bool:
        """The bound pod arrived for an assumed pod on the node we chose: keep the assumed
        ``PodInfo`` (already booked) and only swap in the new object. False if it differs."""
        pod = self.pods.get(key)
        if key not in self.assumed or pod is None:
            return False
        if str((obj.get("spec") or {}).get("nodeName") or "") != pod.node_name:
            return False
        self.assumed.discard(key)
        pod.obj = obj
        return True

    def remove_pod(self, key: str) -> PodInfo | None:
        self.assumed.discard(key)
        return self._unbook(key)
