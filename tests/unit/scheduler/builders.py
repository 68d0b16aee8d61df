"""Raw Node / Pod objects for scheduler tests (the API's wire form, camelCase)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kumo.platform.scheduler.cache import Cache
from kumo.platform.scheduler.framework import CycleState, Framework, Handle
from kumo.platform.scheduler.nodeinfo import NodeInfo
from kumo.platform.scheduler.podinfo import PodInfo
from kumo.platform.scheduler.profile import default_profile
from kumo.platform.scheduler.registry import build_framework

Obj = dict[str, Any]


def node(
    name: str,
    *,
    cpu: str = "4",
    memory: str = "8Gi",
    pods: str = "110",
    labels: dict[str, str] | None = None,
    taints: list[Obj] | None = None,
    ready: str | None = "True",
    unschedulable: bool = False,
    images: list[Obj] | None = None,
    extra: dict[str, str] | None = None,
) -> Obj:
    allocatable = {"cpu": cpu, "memory": memory, "pods": pods, **(extra or {})}
    status: Obj = {"allocatable": allocatable, "capacity": dict(allocatable)}
    if ready is not None:
        status["conditions"] = [{"type": "Ready", "status": ready}]
    if images:
        status["images"] = images
    spec: Obj = {}
    if taints:
        spec["taints"] = taints
    if unschedulable:
        spec["unschedulable"] = True
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "spec": spec,
        "status": status,
    }


def container(
    name: str = "c",
    *,
    cpu: str | None = None,
    memory: str | None = None,
    image: str = "busybox:1.36",
    ports: list[Obj] | None = None,
    extra: dict[str, str] | None = None,
    restart_policy: str | None = None,
) -> Obj:
    requests: dict[str, str] = {}
    if cpu is not None:
        requests["cpu"] = cpu
    if memory is not None:
        requests["memory"] = memory
    requests.update(extra or {})
    out: Obj = {"name": name, "image": image}
    if requests:
        out["resources"] = {"requests": requests}
    if ports:
        out["ports"] = ports
    if restart_policy:
        out["restartPolicy"] = restart_policy
    return out


def pod(
    name: str = "p",
    *,
    namespace: str = "default",
    cpu: str | None = None,
    memory: str | None = None,
    containers: list[Obj] | None = None,
    init_containers: list[Obj] | None = None,
    labels: dict[str, str] | None = None,
    node_name: str | None = None,
    node_selector: dict[str, str] | None = None,
    affinity: Obj | None = None,
    tolerations: list[Obj] | None = None,
    host_ports: list[int] | None = None,
    owner_uid: str | None = None,
    priority: int | None = None,
    scheduler_name: str | None = None,
    phase: str | None = None,
) -> Obj:
    spec: Obj = {
        "containers": containers
        or [
            container(
                cpu=cpu,
                memory=memory,
                ports=[{"containerPort": p, "hostPort": p} for p in host_ports or []],
            )
        ]
    }
    if init_containers:
        spec["initContainers"] = init_containers
    for key, value in (
        ("nodeName", node_name),
        ("nodeSelector", node_selector),
        ("affinity", affinity),
        ("tolerations", tolerations),
        ("priority", priority),
        ("schedulerName", scheduler_name),
    ):
        if value is not None:
            spec[key] = value
    meta: Obj = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    if labels:
        meta["labels"] = labels
    if owner_uid:
        meta["ownerReferences"] = [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "rs",
                "uid": owner_uid,
                "controller": True,
            }
        ]
    obj: Obj = {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}
    if phase:
        obj["status"] = {"phase": phase}
    return obj


def _pod_affinity(kind: str, labels: dict[str, str], topology_key: str, weight: int | None) -> Obj:
    """``{kind: ...}`` with one term selecting ``labels`` over ``topology_key``: required, or
    preferred with ``weight``."""
    term: Obj = {"labelSelector": {"matchLabels": labels}, "topologyKey": topology_key}
    if weight is None:
        return {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [term]}}
    preferred = {"weight": weight, "podAffinityTerm": term}
    return {kind: {"preferredDuringSchedulingIgnoredDuringExecution": [preferred]}}


def anti_affinity(labels: dict[str, str], topology_key: str = "kubernetes.io/hostname") -> Obj:
    return _pod_affinity("podAntiAffinity", labels, topology_key, None)


def pod_affinity(labels: dict[str, str], topology_key: str = "kubernetes.io/hostname") -> Obj:
    return _pod_affinity("podAffinity", labels, topology_key, None)


def preferred_anti_affinity(weight: int, labels: dict[str, str], topology_key: str) -> Obj:
    return _pod_affinity("podAntiAffinity", labels, topology_key, weight)


def preferred_pod_affinity(weight: int, labels: dict[str, str], topology_key: str) -> Obj:
    return _pod_affinity("podAffinity", labels, topology_key, weight)


def node_affinity_required(*terms: Obj) -> Obj:
    return {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": list(terms)}
        }
    }


def node_affinity_preferred(*weighted: tuple[int, Obj]) -> Obj:
    return {
        "nodeAffinity": {
            "preferredDuringSchedulingIgnoredDuringExecution": [
                {"weight": w, "preference": term} for w, term in weighted
            ]
        }
    }


class World:
    """A cache with nodes and bound pods, and the default framework over it."""

    def __init__(self, nodes: Sequence[Obj] = (), pods: Sequence[Obj] = ()) -> None:
        self.cache = Cache()
        self.handle = Handle(self.cache)
        for obj in nodes:
            self.cache.set_node(obj)
        for obj in pods:
            self.cache.add_pod(PodInfo(obj))
        self.framework: Framework = build_framework(default_profile(), self.handle)

    def node(self, name: str) -> NodeInfo:
        found = self.cache.get_node(name)
        assert found is not None
        return found

    def plugin(self, name: str) -> Any:
        for plugin in self.framework.plugins:
            if plugin.name == name:
                return plugin
        raise KeyError(name)

    def state_for(self, pod_info: PodInfo, plugin: Any) -> CycleState:
        """A CycleState after the plugin's PreFilter (if it has one and does not skip)."""
        state = CycleState()
        if hasattr(plugin, "pre_filter"):
            plugin.pre_filter(state, pod_info)
        return state
