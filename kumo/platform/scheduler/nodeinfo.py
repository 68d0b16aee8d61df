"""A node as the scheduler sees it: the parsed Node plus the pods bound (or assumed) there.

Everything a filter or score reads in its inner loop is a plain attribute: allocatable and
requested resources as integers, host ports in use, images present, pods per controller owner.
``add_pod`` / ``remove_pod`` keep the aggregates exact; ``set_node`` re-parses the Node and
returns what changed (for the queue's move rules).
"""

from __future__ import annotations

from typing import Any

from kumo.platform.scheduler.podinfo import (
    CPU,
    MEMORY,
    PODS,
    WILDCARD_IP,
    PodInfo,
    normalized_image,
    resource_map,
)

Obj = dict[str, Any]

# What a Node update may change, for the queue's move rules.
NODE_ALLOCATABLE = "allocatable"
NODE_LABEL = "label"
NODE_TAINT = "taint"
NODE_CONDITION = "condition"
NODE_UNSCHEDULABLE = "unschedulable"
NODE_IMAGES = "images"

Taint = tuple[str, str, str]  # key, value, effect


class NodeInfo:
    __slots__ = (
        "alloc_cpu",
        "alloc_memory",
        "alloc_pods",
        "alloc_scalar",
        "free_cpu",
        "free_memory",
        "free_pods",
        "hard_taints",
        "images",
        "labels",
        "memo",
        "name",
        "nz_cpu",
        "nz_memory",
        "obj",
        "owner_counts",
        "pods",
        "ports",
        "prefer_taints",
        "ready",
        "req_cpu",
        "req_memory",
        "req_scalar",
        "taints",
        "unschedulable",
    )

    def __init__(self, name: str, obj: Obj | None = None) -> None:
        self.name = name
        self.obj: Obj | None = None
        self.labels: dict[str, str] = {}
        self.taints: tuple[Taint, ...] = ()
        self.hard_taints: tuple[Taint, ...] = ()
        self.prefer_taints: tuple[Taint, ...] = ()
        self.unschedulable = False
        self.ready = ""
        self.alloc_cpu = 0
        self.alloc_memory = 0
        self.alloc_pods = 0
        self.alloc_scalar: dict[str, int] = {}
        self.images: dict[str, int] = {}
        self.req_cpu = 0
        self.req_memory = 0
        self.req_scalar: dict[str, int] = {}
        self.nz_cpu = 0
        self.nz_memory = 0
        self.pods: dict[str, PodInfo] = {}
        # (protocol, port) -> host IP -> number of pods using it
        self.ports: dict[tuple[str, int], dict[str, int]] = {}
        self.owner_counts: dict[str, int] = {}
        # allocatable minus requested, kept current for the filters' inner loop
        self.free_cpu = 0
        self.free_memory = 0
        self.free_pods = 0
        # Plugins' per-node results for a given pod shape; cleared on every change of the node.
        self.memo: dict[int, int] = {}
        if obj is not None:
            self.set_node(obj)

    def __repr__(self) -> str:
        return f"NodeInfo({self.name}, pods={len(self.pods)})"

    # ---- the Node -------------------------------------------------------------------------

    def set_node(self, obj: Obj) -> set[str]:
        """Parse ``obj``; the kinds of change (``NODE_*``) against the previous Node."""
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        labels = dict((obj.get("metadata") or {}).get("labels") or {})
        taints = tuple(
            (str(t.get("key") or ""), str(t.get("value") or ""), str(t.get("effect") or ""))
            for t in spec.get("taints") or ()
        )
        unschedulable = bool(spec.get("unschedulable"))
        ready = ""
        for condition in status.get("conditions") or ():
            if condition.get("type") == "Ready":
                ready = str(condition.get("status") or "")
        # A Node without status.allocatable (not Kubernetes-conformant) offers its capacity.
        allocatable = resource_map(status.get("allocatable") or status.get("capacity") or {})
        images: dict[str, int] = {}
        for image in status.get("images") or ():
            size = int(image.get("sizeBytes") or 0)
            for name in image.get("names") or ():
                images[normalized_image(str(name))] = size

        changes: set[str] = set()
        if self.obj is None:
            changes = {
                NODE_ALLOCATABLE,
                NODE_LABEL,
                NODE_TAINT,
                NODE_CONDITION,
                NODE_UNSCHEDULABLE,
                NODE_IMAGES,
            }
        else:
            old_allocatable = dict(self.alloc_scalar)
            old_allocatable.update(
                {CPU: self.alloc_cpu, MEMORY: self.alloc_memory, PODS: self.alloc_pods}
            )
            new_allocatable = {CPU: 0, MEMORY: 0, PODS: 0, **allocatable}
            if old_allocatable != new_allocatable:
                changes.add(NODE_ALLOCATABLE)
            if labels != self.labels:
                changes.add(NODE_LABEL)
            if taints != self.taints:
                changes.add(NODE_TAINT)
            if ready != self.ready:
                changes.add(NODE_CONDITION)
            if unschedulable != self.unschedulable:
                changes.add(NODE_UNSCHEDULABLE)
            if images != self.images:
                changes.add(NODE_IMAGES)

        self.obj = obj
        self.labels = labels
        self.taints = taints
        self.hard_taints = tuple(t for t in taints if t[2] in ("NoSchedule", "NoExecute"))
        self.prefer_taints = tuple(t for t in taints if t[2] == "PreferNoSchedule")
        self.unschedulable = unschedulable
        self.ready = ready
        self.alloc_cpu = allocatable.pop(CPU, 0)
        self.alloc_memory = allocatable.pop(MEMORY, 0)
        self.alloc_pods = allocatable.pop(PODS, 0)
        self.alloc_scalar = allocatable
        self.images = images
        self._refresh()
        return changes

    def _refresh(self) -> None:
        self.free_cpu = self.alloc_cpu - self.req_cpu
        self.free_memory = self.alloc_memory - self.req_memory
        self.free_pods = self.alloc_pods - len(self.pods)
        if self.memo:
            self.memo = {}

    # ---- pods -----------------------------------------------------------------------------

    def add_pod(self, pod: PodInfo) -> None:
        if pod.key in self.pods:
            self.remove_pod(self.pods[pod.key])
        self.pods[pod.key] = pod
        self.req_cpu += pod.cpu
        self.req_memory += pod.memory
        for name, amount in pod.scalar:
            self.req_scalar[name] = self.req_scalar.get(name, 0) + amount
        self.nz_cpu += pod.nz_cpu
        self.nz_memory += pod.nz_memory
        for ip, protocol, port in pod.host_ports:
            users = self.ports.setdefault((protocol, port), {})
            users[ip] = users.get(ip, 0) + 1
        if pod.owner_uid:
            self.owner_counts[pod.owner_uid] = self.owner_counts.get(pod.owner_uid, 0) + 1
        self._refresh()

    def remove_pod(self, pod: PodInfo) -> bool:
        stored = self.pods.pop(pod.key, None)
        if stored is None:
            return False
        self.req_cpu -= stored.cpu
        self.req_memory -= stored.memory
        for name, amount in stored.scalar:
            left = self.req_scalar.get(name, 0) - amount
            if left:
                self.req_scalar[name] = left
            else:
                self.req_scalar.pop(name, None)
        self.nz_cpu -= stored.nz_cpu
        self.nz_memory -= stored.nz_memory
        for ip, protocol, port in stored.host_ports:
            users = self.ports.get((protocol, port))
            if users is None:
                continue
            count = users.get(ip, 0) - 1
            if count > 0:
                users[ip] = count
            else:
                users.pop(ip, None)
                if not users:
                    del self.ports[(protocol, port)]
        if stored.owner_uid:
            count = self.owner_counts.get(stored.owner_uid, 0) - 1
            if count > 0:
                self.owner_counts[stored.owner_uid] = count
            else:
                self.owner_counts.pop(stored.owner_uid, None)
        self._refresh()
        return True

    def port_conflict(self, ip: str, protocol: str, port: int) -> bool:
        """Kubernetes' HostPortInfo.CheckConflict: 0.0.0.0 clashes with every IP."""
        users = self.ports.get((protocol, port))
        if not users:
            return False
        if ip == WILDCARD_IP:
            return True
        return WILDCARD_IP in users or ip in users
