"""The index of pods by node behind the Node authorizer, over a real SQLite store: filled from
what is stored, in step with every write (bind, move, delete) as soon as the write returns,
and only the node's pods are read."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kumo.platform.api.nodepods import PODS_PREFIX, PodsByNode
from kumo.platform.store.sqlite import SQLiteStore


def _pod(name: str, node: str = "") -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "c", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name, "namespace": "ns"}, "spec": spec}


def _names(index: PodsByNode, node: str) -> set[str]:
    return {pod["metadata"]["name"] for pod in index.pods_on(node)}


async def test_the_index_follows_the_store(tmp_path: Path) -> None:
    path = tmp_path / "store.db"
    store = await SQLiteStore.open(path)
    try:
        await store.create(f"{PODS_PREFIX}ns/a", _pod("a", "n1"))
        await store.create(f"{PODS_PREFIX}ns/b", _pod("b"))
        index = PodsByNode(store)
        assert _names(index, "n1") == {"a"}
        assert _names(index, "") == set()  # unbound pods are nobody's
        await store.update(f"{PODS_PREFIX}ns/b", _pod("b", "n1"))  # bound
        assert _names(index, "n1") == {"a", "b"}
        await store.update(f"{PODS_PREFIX}ns/a", _pod("a", "n2"))  # (not Kubernetes, but moved)
        assert (_names(index, "n1"), _names(index, "n2")) == ({"b"}, {"a"})
        await store.delete(f"{PODS_PREFIX}ns/b")
        assert _names(index, "n1") == set()
        await store.create("registry/core/configmaps/ns/b", _pod("cm", "n1"))  # not a pod
        assert _names(index, "n1") == set()
        index.close()
        await store.create(f"{PODS_PREFIX}ns/c", _pod("c", "n2"))
        assert _names(index, "n2") == {"a"}  # no longer following
    finally:
        await store.close()
    reopened = await SQLiteStore.open(path)
    try:
        assert _names(PodsByNode(reopened), "n2") == {"a", "c"}
    finally:
        await reopened.close()


async def test_a_failing_observer_does_not_break_the_store(tmp_path: Path) -> None:
    store = await SQLiteStore.open(tmp_path / "store.db")
    try:
        seen: list[str] = []

        def broken(change: Any) -> None:
            raise RuntimeError("boom")

        store.observe(PODS_PREFIX, broken)
        store.observe(PODS_PREFIX, lambda change: seen.append(change.key))
        created = await store.create(f"{PODS_PREFIX}ns/a", _pod("a", "n1"))
        assert created["metadata"]["name"] == "a"
        assert seen == [f"{PODS_PREFIX}ns/a"]
    finally:
        await store.close()
