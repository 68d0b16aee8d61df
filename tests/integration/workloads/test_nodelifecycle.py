"""The node lifecycle controller against the real API server: stand-in kubelets renew their
node leases; one "dies" (stops renewing) and its pods move to the other node."""

from __future__ import annotations

import functools
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.controllers.controller_utils import (
    being_deleted,
    find_condition,
    is_pod_active,
    is_pod_ready,
)
from kumo.platform.controllers.nodelifecycle import (
    NOT_READY,
    UNREACHABLE,
    NodeLifecycleController,
)

from .conftest import NODE_LEASE_NAMESPACE, Kubelets, ensure_namespace
from .helpers import NODE, POD, bare_pod, get, pods, replicaset

Wait = Any
FAST = functools.partial(
    NodeLifecycleController, grace_period=1.5, eviction_timeout=2.0, force_delete=True
)


def taint_keys(node: dict[str, Any]) -> set[tuple[str, str]]:
    return {(t["key"], t["effect"]) for t in (node.get("spec") or {}).get("taints") or []}


async def test_a_silent_node_is_tainted_and_its_pods_move_elsewhere(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await ensure_namespace(async_client, NODE_LEASE_NAMESPACE)
    first = await kubelets.start(node=f"{namespace}-a", lease_interval=0.3)
    manifest = replicaset("web", 2, {"app": "web"})
    manifest["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1
    patient = bare_pod("patient", {"role": "cache"})
    patient["spec"]["tolerations"] = [
        {"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}
    ]
    async with start_controllers("replicaset", nodelifecycle=FAST):
        await async_client.create_raw(manifest, namespace)
        await async_client.create_raw(patient, namespace)

        async def on_node(node: str, count: int) -> Any:
            found = [
                p
                for p in await pods(async_client, namespace, "app=web")
                if is_pod_active(p) and p["spec"].get("nodeName") == node and is_pod_ready(p)
            ]
            return len(found) == count and found

        original = await wait_for(lambda: on_node(first.node, 2))
        await first.stop()  # the agent dies: no more lease renewals
        second = await kubelets.start(node=f"{namespace}-b", lease_interval=0.3)

        async def unreachable() -> Any:
            node = await async_client.get_raw(NODE, first.node)
            ready = find_condition(node["status"]["conditions"], "Ready")
            return (
                ready is not None
                and ready["status"] == "Unknown"
                and {(UNREACHABLE, "NoExecute"), (UNREACHABLE, "NoSchedule")} <= taint_keys(node)
                and node
            )

        node = await wait_for(unreachable, within=10)
        ready = find_condition(node["status"]["conditions"], "Ready")
        assert ready is not None
        assert ready["reason"] == "NodeStatusUnknown"
        assert ready["message"] == "Kubelet stopped posting node status."

        async def marked_not_ready() -> bool:
            current = [
                await get(async_client, POD, p["metadata"]["name"], namespace) for p in original
            ]
            return all(p is None or not is_pod_ready(p) for p in current)

        await wait_for(marked_not_ready, within=10)
        # After the eviction timeout the pods go, and the ReplicaSet makes new ones that the
        # other node runs.
        await wait_for(lambda: on_node(second.node, 2), within=20)

        async def old_pods_gone() -> bool:
            names = {p["metadata"]["name"] for p in await pods(async_client, namespace, "app=web")}
            return not names & {p["metadata"]["name"] for p in original}

        await wait_for(old_pods_gone, within=20)
        kept = await async_client.get_raw(POD, "patient", namespace)
        assert not being_deleted(kept), "a pod tolerating the taint for ever was evicted"
        assert kept["spec"]["nodeName"] == first.node

        # The agent comes back and renews its lease: the taints go.
        await first.start()

        async def untainted() -> Any:
            node = await async_client.get_raw(NODE, first.node)
            return not {k for k, _ in taint_keys(node)} & {UNREACHABLE, NOT_READY} and node

        await wait_for(untainted, within=10)


async def test_a_node_reporting_not_ready_gets_the_not_ready_taint(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await ensure_namespace(async_client, NODE_LEASE_NAMESPACE)
    kubelet = await kubelets.start(node=f"{namespace}-a", lease_interval=0.3)
    async with start_controllers(nodelifecycle=FAST):
        stamp = kubelet._ready_condition()["lastHeartbeatTime"]
        await async_client.patch_raw(
            NODE,
            kubelet.node,
            {
                "status": {
                    "conditions": [
                        {
                            "type": "Ready",
                            "status": "False",
                            "reason": "KubeletNotReady",
                            "lastHeartbeatTime": stamp,
                            "lastTransitionTime": stamp,
                        }
                    ]
                }
            },
            sub="status",
        )

        async def tainted() -> Any:
            node = await async_client.get_raw(NODE, kubelet.node)
            keys = taint_keys(node)
            return {(NOT_READY, "NoExecute"), (NOT_READY, "NoSchedule")} <= keys and (
                UNREACHABLE,
                "NoExecute",
            ) not in keys

        await wait_for(tainted, within=10)
        await kubelet.post_ready()

        async def cleared() -> Any:
            node = await async_client.get_raw(NODE, kubelet.node)
            return not taint_keys(node)

        await wait_for(cleared, within=10)

        # Cordoning adds the unschedulable taint, uncordoning removes it.
        await async_client.patch_raw(NODE, kubelet.node, {"spec": {"unschedulable": True}})

        async def cordoned() -> Any:
            node = await async_client.get_raw(NODE, kubelet.node)
            return taint_keys(node) == {("node.kubernetes.io/unschedulable", "NoSchedule")}

        await wait_for(cordoned, within=10)
