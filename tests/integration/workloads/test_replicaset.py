"""The ReplicaSet controller against the real API server, with a stand-in kubelet."""

from __future__ import annotations

import asyncio
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.controllers.controller_utils import controller_ref, is_pod_ready

from .conftest import Kubelets
from .helpers import (
    POD,
    RS,
    active_pods,
    bare_pod,
    events_for,
    get,
    owned_by,
    replicaset,
    watching_pods,
)

Wait = Any


async def test_creates_replicas_with_owner_refs_and_reports_status(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset"):
        rs = await async_client.create_raw(replicaset("web", 3, {"app": "web"}), namespace)

        async def three_ready() -> Any:
            current = await async_client.get_raw(RS, "web", namespace)
            status = current.get("status") or {}
            return (
                status.get("readyReplicas") == 3
                and status.get("availableReplicas") == 3
                and current
            )

        current = await wait_for(three_ready)
        pods = await active_pods(async_client, namespace, "app=web")
        assert len(pods) == 3
        for pod in pods:
            assert pod["metadata"]["name"].startswith("web-")
            assert pod["metadata"]["labels"] == {"app": "web"}
            ref = controller_ref(pod)
            assert ref is not None
            assert ref["uid"] == rs["metadata"]["uid"]
            assert ref["kind"] == "ReplicaSet" and ref["blockOwnerDeletion"] is True
        status = current["status"]
        assert status["replicas"] == 3
        assert status["fullyLabeledReplicas"] == 3
        assert status["observedGeneration"] == current["metadata"]["generation"]
        created = [
            e
            for e in await events_for(async_client, namespace, "web")
            if e["reason"] == "SuccessfulCreate"
        ]
        assert len(created) == 3


async def test_deleted_pod_is_replaced_and_scale_up_down(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset"):
        await async_client.create_raw(replicaset("web", 2, {"app": "web"}), namespace)

        async def count(n: int) -> Any:
            pods = await active_pods(async_client, namespace, "app=web")
            return len(pods) == n and all(is_pod_ready(p) for p in pods) and pods

        first = await wait_for(lambda: count(2))
        victim = first[0]["metadata"]["name"]
        await async_client.delete_raw(POD, victim, namespace)
        replaced = await wait_for(lambda: count(2))
        assert victim not in {p["metadata"]["name"] for p in replaced}

        await async_client.patch_raw(RS, "web", {"spec": {"replicas": 5}}, namespace)
        await wait_for(lambda: count(5))
        before = {
            p["metadata"]["name"] for p in await active_pods(async_client, namespace, "app=web")
        }
        await async_client.patch_raw(RS, "web", {"spec": {"replicas": 1}}, namespace)
        after = await wait_for(lambda: count(1))
        assert after[0]["metadata"]["name"] in before
        rs = await async_client.get_raw(RS, "web", namespace)
        await wait_for(lambda: _status_is(async_client, namespace, replicas=1, ready=1))
        assert rs["spec"]["replicas"] == 1


async def _status_is(client: AsyncClient, namespace: str, *, replicas: int, ready: int) -> bool:
    status = (await client.get_raw(RS, "web", namespace)).get("status") or {}
    return bool(status.get("replicas") == replicas and status.get("readyReplicas") == ready)


async def test_scale_down_deletes_unready_pods_first(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    kubelet = await kubelets.start()
    async with start_controllers("replicaset"):
        await async_client.create_raw(replicaset("web", 3, {"app": "web"}), namespace)

        async def ready(n: int) -> Any:
            pods = await active_pods(async_client, namespace, "app=web")
            return len(pods) == 3 and sum(is_pod_ready(p) for p in pods) == n and pods

        pods = await wait_for(lambda: ready(3))
        laggard = sorted(p["metadata"]["name"] for p in pods)[1]
        await kubelet.set_ready(laggard, False)
        await wait_for(lambda: ready(2))
        await async_client.patch_raw(RS, "web", {"spec": {"replicas": 2}}, namespace)

        async def gone() -> Any:
            names = {
                p["metadata"]["name"] for p in await active_pods(async_client, namespace, "app=web")
            }
            return len(names) == 2 and names

        remaining = await wait_for(gone)
        assert laggard not in remaining


async def test_adopts_matching_orphans_and_releases_pods_that_stop_matching(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    orphan = await async_client.create_raw(bare_pod("orphan", {"app": "web"}), namespace)
    async with start_controllers("replicaset"):
        rs = await async_client.create_raw(replicaset("web", 2, {"app": "web"}), namespace)

        async def two_owned() -> Any:
            pods = await active_pods(async_client, namespace, "app=web")
            return len(pods) == 2 and all(owned_by(p, rs) for p in pods) and pods

        pods = await wait_for(two_owned)
        # The orphan was adopted, so only one pod was created.
        assert "orphan" in {p["metadata"]["name"] for p in pods}
        adopted = await async_client.get_raw(POD, "orphan", namespace)
        assert adopted["metadata"]["uid"] == orphan["metadata"]["uid"]

        # Relabelling a pod takes it out of the set: released, and replaced.
        await async_client.patch_raw(
            POD, "orphan", {"metadata": {"labels": {"app": "debug"}}}, namespace
        )

        async def released() -> Any:
            pod = await get(async_client, POD, "orphan", namespace)
            return pod is not None and controller_ref(pod) is None and pod

        await wait_for(released)
        replaced = await wait_for(two_owned)
        assert "orphan" not in {p["metadata"]["name"] for p in replaced}


async def test_many_replicas_are_created_exactly_once(
    async_client: AsyncClient, namespace: str, start_controllers: Any, wait_for: Wait
) -> None:
    # No kubelet: the pods stay Pending, and every create shows up in the controller's cache
    # only through the watch; the count must still never overshoot.
    async with watching_pods(async_client, namespace) as seen, start_controllers("replicaset"):
        await async_client.create_raw(replicaset("many", 60, {"app": "many"}), namespace)

        async def all_there() -> Any:
            status = (await async_client.get_raw(RS, "many", namespace)).get("status") or {}
            return status.get("replicas") == 60

        await wait_for(all_there, within=30)
        await asyncio.sleep(0.5)
    assert len(await active_pods(async_client, namespace, "app=many")) == 60
    assert max(len(s) for s in seen.snapshots) == 60
    created = [
        e
        for e in await events_for(async_client, namespace, "many")
        if e["reason"] == "SuccessfulCreate"
    ]
    assert sum(e.get("count") or 1 for e in created) == 60
