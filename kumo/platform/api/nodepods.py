"""The pods bound to each node, indexed from the store's memory: the lookup behind the Node
authorizer (``kumo.auth.node_authorizer``).

``PodsByNode(store)`` indexes every stored pod by ``spec.nodeName`` and follows the store
synchronously (``SQLiteStore.observe``), so it agrees with ``store.get_entry`` at every
moment: a pod that a node agent has just seen bound is already here. ``pods_on(node)`` costs
the pods on that node, not the pods in the cluster.
"""

from __future__ import annotations

from typing import Any

from kumo.platform.store import Change
from kumo.platform.store.sqlite import SQLiteStore

PODS_PREFIX = "registry/core/pods/"


def _node_of(pod: dict[str, Any]) -> str:
    spec = pod.get("spec")
    return str(spec.get("nodeName") or "") if isinstance(spec, dict) else ""


class PodsByNode:
    def __init__(self, store: SQLiteStore) -> None:
        self._store = store
        self._keys: dict[str, set[str]] = {}  # node -> storage keys of its pods
        self._nodes: dict[str, str] = {}  # storage key -> node
        for entry in store.entries(PODS_PREFIX):
            self._put(entry.key, entry.obj)
        self._stop = store.observe(PODS_PREFIX, self._changed)

    def pods_on(self, node: str) -> list[dict[str, Any]]:
        """The pods (stored objects, read-only) whose ``spec.nodeName`` is ``node``."""
        pods = []
        for key in self._keys.get(node, ()):
            entry = self._store.get_entry(key)
            if entry is not None:
                pods.append(entry.obj)
        return pods

    def close(self) -> None:
        self._stop()

    def _changed(self, change: Change) -> None:
        if change.type == "DELETED":
            self._drop(change.key)
        else:
            self._put(change.key, change.obj)

    def _put(self, key: str, pod: dict[str, Any]) -> None:
        node = _node_of(pod)
        if self._nodes.get(key) == node:
            return
        self._drop(key)
        if node:
            self._nodes[key] = node
            self._keys.setdefault(node, set()).add(key)

    def _drop(self, key: str) -> None:
        node = self._nodes.pop(key, None)
        if node is None:
            return
        keys = self._keys.get(node)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._keys[node]


__all__ = ["PODS_PREFIX", "PodsByNode"]
