"""The Deployment controller (with the ReplicaSet controller) against the real API server,
with a stand-in kubelet that binds pods and reports them Ready."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from kumo.client import AsyncClient
from kumo.platform.controllers import deployment_util as util
from kumo.platform.controllers.controller_utils import (
    being_deleted,
    controller_ref,
    find_condition,
    is_pod_active,
)

from .conftest import Kubelets
from .helpers import DEPLOYMENT, POD, RS, PodWatch, active_pods, deployment, pods, watching_pods

Wait = Any
LABELS = {"app": "web"}


async def owned_sets(
    client: AsyncClient, namespace: str, owner: dict[str, Any]
) -> list[dict[str, Any]]:
    items, _ = await client.list_all_raw(RS, namespace)
    return [rs for rs in items if (controller_ref(rs) or {}).get("uid") == owner["metadata"]["uid"]]


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    found = find_condition((obj.get("status") or {}).get("conditions"), kind)
    assert found is not None, f"no {kind} condition in {obj.get('status')}"
    return found


def rolled_out(client: AsyncClient, namespace: str, name: str, replicas: int) -> Any:
    """A check: the Deployment's observed generation is current and every replica is
    updated and available (rollout status would say "successfully rolled out")."""

    async def check() -> Any:
        current = await client.get_raw(DEPLOYMENT, name, namespace)
        state = util.rollout_state(current)
        status = current.get("status") or {}
        return (
            state.done
            and status.get("replicas") == replicas
            and status.get("readyReplicas") == replicas
            and current
        )

    return check


def hash_of(pod_or_rs: dict[str, Any]) -> str:
    return str(pod_or_rs["metadata"]["labels"][util.POD_TEMPLATE_HASH])


async def test_rolling_update_with_max_unavailable_zero_keeps_every_replica_ready(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    # Terminating pods linger a little, as they do on a real node.
    await kubelets.start(finish_delay=0.3)
    strategy = {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}
    async with start_controllers("replicaset", "deployment"):
        created = await async_client.create_raw(
            deployment("web", 3, LABELS, "kumo.test/web:1", strategy=strategy), namespace
        )
        first = await wait_for(rolled_out(async_client, namespace, "web", 3))
        sets = await owned_sets(async_client, namespace, created)
        assert len(sets) == 1
        old = sets[0]
        expected_hash = util.template_hash(first["spec"]["template"])
        assert old["metadata"]["name"] == f"web-{expected_hash}"
        assert hash_of(old) == expected_hash
        assert old["spec"]["selector"]["matchLabels"][util.POD_TEMPLATE_HASH] == expected_hash
        assert old["metadata"]["annotations"][util.REVISION] == "1"
        assert first["metadata"]["annotations"][util.REVISION] == "1"
        assert {hash_of(p) for p in await active_pods(async_client, namespace)} == {expected_hash}
        assert condition(first, "Available")["status"] == "True"
        assert condition(first, "Progressing")["reason"] == util.NEW_RS_AVAILABLE

        async with watching_pods(async_client, namespace) as seen:
            await async_client.patch_raw(
                DEPLOYMENT,
                "web",
                {
                    "spec": {
                        "template": {
                            "spec": {"containers": [{"name": "main", "image": "kumo.test/web:2"}]}
                        }
                    }
                },
                namespace,
                patch_type="application/strategic-merge-patch+json",
            )
            done = await wait_for(rolled_out(async_client, namespace, "web", 3), within=30)
            await wait_for(lambda: _only_hash(async_client, namespace, hash_of_new(done)))
            await asyncio.sleep(0.2)  # let the watch deliver the last events
        new_hash = util.template_hash(done["spec"]["template"])
        assert new_hash != expected_hash
        _assert_rollout_history(seen, old_hash=expected_hash, new_hash=new_hash)
        sets = {
            rs["metadata"]["name"]: rs for rs in await owned_sets(async_client, namespace, created)
        }
        assert sets[f"web-{new_hash}"]["metadata"]["annotations"][util.REVISION] == "2"
        assert sets[f"web-{new_hash}"]["spec"]["replicas"] == 3
        assert sets[f"web-{expected_hash}"]["spec"]["replicas"] == 0
        assert done["metadata"]["annotations"][util.REVISION] == "2"
        assert done["status"]["updatedReplicas"] == 3
        assert done["status"]["availableReplicas"] == 3
        assert done["status"].get("unavailableReplicas", 0) == 0
        assert done["status"]["observedGeneration"] == done["metadata"]["generation"]


def hash_of_new(obj: dict[str, Any]) -> str:
    return util.template_hash(obj["spec"]["template"])


async def _only_hash(client: AsyncClient, namespace: str, wanted: str) -> bool:
    current = await pods(client, namespace)
    return len(current) == 3 and all(hash_of(p) == wanted and is_pod_active(p) for p in current)


def _assert_rollout_history(seen: PodWatch, *, old_hash: str, new_hash: str) -> None:
    """Every state of the pods, in order: never fewer than 3 Ready pods serving, never more
    than 3 + maxSurge active pods, and the new pods came one step at a time."""
    assert len(seen.snapshots) > 10, "the watch saw too little to judge the rollout"
    hashes_over_time = []
    for number, snapshot in enumerate(seen.snapshots):
        ready = seen.ready_serving(snapshot)
        assert ready >= 3, f"only {ready} Ready pods at observed state {number}"
        active = [p for p in snapshot.values() if is_pod_active(p)]
        assert len(active) <= 4, f"{len(active)} active pods (maxSurge 1) at state {number}"
        new_active = sum(1 for p in active if hash_of(p) == new_hash)
        old_active = sum(1 for p in active if hash_of(p) == old_hash)
        hashes_over_time.append((old_active, new_active))
    # Step by step: the number of new pods grows by one at a time, old ones shrink.
    new_counts = [n for _, n in hashes_over_time]
    assert new_counts[0] == 0 and new_counts[-1] == 3
    assert all(b - a <= 1 for a, b in itertools.pairwise(new_counts))
    assert hashes_over_time[-1][0] == 0
    # The old pods were gone one at a time while new ones were Ready.
    old_counts = [o for o, _ in hashes_over_time]
    assert all(a - b <= 1 for a, b in itertools.pairwise(old_counts))


async def test_pause_stops_the_rollout_and_resume_continues_it(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        created = await async_client.create_raw(deployment("web", 2, LABELS), namespace)
        await wait_for(rolled_out(async_client, namespace, "web", 2))
        await async_client.patch_raw(DEPLOYMENT, "web", {"spec": {"paused": True}}, namespace)

        async def shows_paused() -> Any:
            current = await async_client.get_raw(DEPLOYMENT, "web", namespace)
            progressing = find_condition(current["status"].get("conditions"), "Progressing")
            return progressing is not None and progressing["reason"] == util.PAUSED and current

        paused = await wait_for(shows_paused)
        assert condition(paused, "Progressing")["status"] == "Unknown"
        await async_client.patch_raw(
            DEPLOYMENT,
            "web",
            {"spec": {"template": {"metadata": {"labels": {"app": "web", "track": "v2"}}}}},
            namespace,
        )

        async def observed() -> Any:
            current = await async_client.get_raw(DEPLOYMENT, "web", namespace)
            return (
                current["status"].get("observedGeneration") == current["metadata"]["generation"]
                and current
            )

        await wait_for(observed)
        await asyncio.sleep(1.0)
        assert len(await owned_sets(async_client, namespace, created)) == 1, "paused yet rolled"
        assert all(
            "track" not in p["metadata"]["labels"]
            for p in await active_pods(async_client, namespace)
        )

        # Scaling still works while paused.
        await async_client.patch_raw(DEPLOYMENT, "web", {"spec": {"replicas": 3}}, namespace)
        await wait_for(lambda: _active_count(async_client, namespace, 3))
        assert len(await owned_sets(async_client, namespace, created)) == 1

        await async_client.patch_raw(DEPLOYMENT, "web", {"spec": {"paused": False}}, namespace)
        done = await wait_for(rolled_out(async_client, namespace, "web", 3), within=30)
        assert len(await owned_sets(async_client, namespace, created)) == 2
        await wait_for(lambda: _all_labelled(async_client, namespace))
        assert done["metadata"]["annotations"][util.REVISION] == "2"


async def _active_count(client: AsyncClient, namespace: str, count: int) -> bool:
    return len(await active_pods(client, namespace)) == count


async def _all_labelled(client: AsyncClient, namespace: str) -> bool:
    current = await active_pods(client, namespace)
    return len(current) == 3 and all(p["metadata"]["labels"].get("track") == "v2" for p in current)


async def test_recreate_removes_every_old_pod_before_creating_new_ones(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start(finish_delay=0.5)
    async with start_controllers("replicaset", "deployment"):
        created = await async_client.create_raw(
            deployment("web", 3, LABELS, strategy={"type": "Recreate"}), namespace
        )
        first = await wait_for(rolled_out(async_client, namespace, "web", 3))
        old_hash = util.template_hash(first["spec"]["template"])
        async with watching_pods(async_client, namespace) as seen:
            await async_client.patch_raw(
                DEPLOYMENT,
                "web",
                {"spec": {"template": {"metadata": {"labels": {"app": "web", "v": "2"}}}}},
                namespace,
            )
            done = await wait_for(rolled_out(async_client, namespace, "web", 3), within=30)
            await asyncio.sleep(0.2)
        new_hash = util.template_hash(done["spec"]["template"])
        saw_new = False
        for number, snapshot in enumerate(seen.snapshots):
            hashes = {hash_of(p) for p in snapshot.values()}
            if new_hash in hashes:
                saw_new = True
                assert old_hash not in hashes, f"old and new pods together at state {number}"
        assert saw_new
        # Old pods were terminating (and still there) for a while before any new one existed.
        assert any(all(being_deleted(p) for p in s.values()) and s for s in seen.snapshots), (
            "never saw the old pods all terminating"
        )
        sets = await owned_sets(async_client, namespace, created)
        assert sorted(rs["spec"]["replicas"] for rs in sets) == [0, 3]


async def test_progress_deadline_exceeded(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(
            deployment("web", 2, LABELS, "kumo.test/never-ready:1", progressDeadlineSeconds=2),
            namespace,
        )

        async def timed_out() -> Any:
            current = await async_client.get_raw(DEPLOYMENT, "web", namespace)
            found = find_condition(current["status"].get("conditions"), "Progressing")
            return found is not None and found["reason"] == util.TIMED_OUT and current

        current = await wait_for(timed_out, within=15)
        progressing = condition(current, "Progressing")
        assert progressing["status"] == "False"
        assert "has timed out progressing" in progressing["message"]
        available = condition(current, "Available")
        assert available["status"] == "False"
        assert available["reason"] == util.MINIMUM_UNAVAILABLE
        assert util.rollout_state(current).failed


async def test_revision_history_limit_trims_old_replica_sets(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        created = await async_client.create_raw(
            deployment("web", 1, LABELS, "kumo.test/web:1", revisionHistoryLimit=1), namespace
        )
        await wait_for(rolled_out(async_client, namespace, "web", 1))
        hashes = []
        for version in (2, 3, 4):
            await async_client.patch_raw(
                DEPLOYMENT,
                "web",
                {
                    "spec": {
                        "template": {
                            "spec": {
                                "containers": [
                                    {"name": "main", "image": f"kumo.test/web:{version}"}
                                ]
                            }
                        }
                    }
                },
                namespace,
                patch_type="application/strategic-merge-patch+json",
            )
            done = await wait_for(rolled_out(async_client, namespace, "web", 1), within=30)
            hashes.append(util.template_hash(done["spec"]["template"]))

        async def trimmed() -> Any:
            sets = await owned_sets(async_client, namespace, created)
            return len(sets) == 2 and sets

        sets = await wait_for(trimmed)
        names = {rs["metadata"]["name"] for rs in sets}
        assert names == {f"web-{hashes[-1]}", f"web-{hashes[-2]}"}
        revisions = sorted(int(rs["metadata"]["annotations"][util.REVISION]) for rs in sets)
        assert revisions == [3, 4]


async def test_resizing_a_deployment_resizes_its_replica_set(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        created = await async_client.create_raw(deployment("web", 2, LABELS), namespace)
        await wait_for(rolled_out(async_client, namespace, "web", 2))
        await async_client.patch_raw(DEPLOYMENT, "web", {"spec": {"replicas": 4}}, namespace)
        await wait_for(rolled_out(async_client, namespace, "web", 4))
        (rs,) = await owned_sets(async_client, namespace, created)
        assert rs["spec"]["replicas"] == 4
        assert rs["metadata"]["annotations"][util.DESIRED_REPLICAS] == "4"
        assert rs["metadata"]["annotations"][util.MAX_REPLICAS] == "5"  # 4 + 25% surge, up


async def test_a_settled_rollout_writes_nothing_more(
    async_client: AsyncClient,
    namespace: str,
    kubelets: Kubelets,
    start_controllers: Any,
    wait_for: Wait,
) -> None:
    await kubelets.start()
    async with start_controllers("replicaset", "deployment"):
        await async_client.create_raw(deployment("web", 2, LABELS, minReadySeconds=1), namespace)
        await wait_for(rolled_out(async_client, namespace, "web", 2))
        await asyncio.sleep(1.0)

        async def versions() -> dict[str, str]:
            out = {}
            for info in (DEPLOYMENT, RS, POD):
                items, _ = await async_client.list_all_raw(info, namespace)
                for item in items:
                    out[f"{info.kind}/{item['metadata']['name']}"] = item["metadata"][
                        "resourceVersion"
                    ]
            return out

        before = await versions()
        await asyncio.sleep(2.0)
        assert await versions() == before
