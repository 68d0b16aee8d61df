"""Manifests and queries the workload tests share."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import by_kind
from kumo.platform.controllers.controller_utils import (
    being_deleted,
    controller_ref,
    is_pod_active,
    is_pod_ready,
)

Obj = dict[str, Any]
POD = by_kind("v1", "Pod")
RS = by_kind("apps/v1", "ReplicaSet")
DEPLOYMENT = by_kind("apps/v1", "Deployment")
JOB = by_kind("batch/v1", "Job")
SERVICE = by_kind("v1", "Service")
ENDPOINTS = by_kind("v1", "Endpoints")
EVENT = by_kind("v1", "Event")
NODE = by_kind("v1", "Node")
assert POD and RS and DEPLOYMENT and JOB and SERVICE and ENDPOINTS and EVENT and NODE


def template(
    labels: dict[str, str],
    image: str = "kumo.test/web:1",
    *,
    ports: list[Obj] | None = None,
    restart_policy: str | None = None,
) -> Obj:
    container: Obj = {"name": "main", "image": image}
    if ports:
        container["ports"] = ports
    pod_spec: Obj = {"containers": [container], "terminationGracePeriodSeconds": 5}
    if restart_policy:
        pod_spec["restartPolicy"] = restart_policy
    return {"metadata": {"labels": dict(labels)}, "spec": pod_spec}


def replicaset(name: str, replicas: int, labels: dict[str, str], **options: Any) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "template": template(labels, **options),
    }
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": name}, "spec": spec}


def deployment(
    name: str,
    replicas: int,
    labels: dict[str, str],
    image: str = "kumo.test/web:1",
    *,
    strategy: Obj | None = None,
    **spec_fields: Any,
) -> Obj:
    spec: Obj = {
        "replicas": replicas,
        "selector": {"matchLabels": dict(labels)},
        "template": template(labels, image),
        **spec_fields,
    }
    if strategy is not None:
        spec["strategy"] = strategy
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def bare_pod(name: str, labels: dict[str, str], image: str = "kumo.test/web:1") -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": dict(labels)},
        "spec": {
            "containers": [{"name": "main", "image": image}],
            "terminationGracePeriodSeconds": 5,
        },
    }


async def pods(client: AsyncClient, namespace: str, selector: str | None = None) -> list[Obj]:
    items, _ = await client.list_all_raw(POD, namespace, label_selector=selector)
    return items


async def active_pods(
    client: AsyncClient, namespace: str, selector: str | None = None
) -> list[Obj]:
    return [p for p in await pods(client, namespace, selector) if is_pod_active(p)]


def owned_by(pod: Obj, owner: Obj) -> bool:
    ref = controller_ref(pod)
    return ref is not None and ref.get("uid") == owner["metadata"]["uid"]


async def get(client: AsyncClient, info: Any, name: str, namespace: str) -> Obj | None:
    try:
        return await client.get_raw(info, name, namespace)
    except ApiException as exc:
        if exc.not_found:
            return None
        raise


async def events_for(client: AsyncClient, namespace: str, name: str) -> list[Obj]:
    items, _ = await client.list_all_raw(
        EVENT, namespace, field_selector=f"involvedObject.name={name}"
    )
    return items


@dataclass
class PodWatch:
    """Every state of a namespace's pods, as a watch delivers them (one snapshot per event)."""

    pods: dict[str, Obj] = field(default_factory=dict)
    snapshots: list[dict[str, Obj]] = field(default_factory=list)

    def ready_serving(self, snapshot: dict[str, Obj] | None = None) -> int:
        """Pods that are Ready and not being deleted (those a Service would send to)."""
        current = self.pods if snapshot is None else snapshot
        return sum(1 for p in current.values() if is_pod_ready(p) and not being_deleted(p))


@contextlib.asynccontextmanager
async def watching_pods(client: AsyncClient, namespace: str) -> AsyncIterator[PodWatch]:
    record = PodWatch()
    items, version = await client.list_all_raw(POD, namespace)
    for pod in items:
        record.pods[pod["metadata"]["name"]] = pod
    record.snapshots.append(dict(record.pods))

    async def follow() -> None:
        nonlocal version
        async for event in client.watch_raw(POD, namespace, resource_version=version):
            name = event.object["metadata"]["name"]
            if event.type == "DELETED":
                record.pods.pop(name, None)
            elif event.type in ("ADDED", "MODIFIED"):
                record.pods[name] = event.object
            else:
                continue
            record.snapshots.append(dict(record.pods))

    task = asyncio.create_task(follow())
    try:
        yield record
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
