"""Garbage collection by ownerReferences against a real API server: background cascade,
foreground deletion, orphaning, chains, uid identity and scoping rules."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from kumo.client import ApiException, AsyncClient
from kumo.model.registry import RESOURCES, by_kind
from kumo.platform.controllers import ControllerManager

Obj = dict[str, Any]
Wait = Callable[..., Awaitable[Any]]
HOLD = "test.kumo.dev/hold"


def _info(api_version: str, kind: str) -> Any:
    info = by_kind(api_version, kind)
    assert info is not None
    return info


def ref(owner: Obj, *, block: bool | None = None, controller: bool | None = None) -> Obj:
    out: Obj = {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
    }
    if block is not None:
        out["blockOwnerDeletion"] = block
    if controller is not None:
        out["controller"] = controller
    return out


def _meta(name: str, owners: list[Obj] | None, finalizers: list[str] | None) -> Obj:
    meta: Obj = {"name": name}
    if owners:
        meta["ownerReferences"] = owners
    if finalizers:
        meta["finalizers"] = finalizers
    return meta


def configmap(
    name: str, owners: list[Obj] | None = None, finalizers: list[str] | None = None
) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _meta(name, owners, finalizers),
        "data": {"k": "v"},
    }


def pod(name: str, owners: list[Obj] | None = None, finalizers: list[str] | None = None) -> Obj:
    meta = _meta(name, owners, finalizers)
    meta["labels"] = {"app": "web"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": {"containers": [{"name": "web", "image": "busybox"}]},
    }


def _template() -> Obj:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": "busybox"}]},
    }


def replicaset(name: str, owners: list[Obj] | None = None) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": _meta(name, owners, None),
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": _template(),
        },
    }


def deployment(name: str) -> Obj:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": _template(),
        },
    }


async def get(async_client: AsyncClient, obj: Obj, namespace: str) -> Obj | None:
    info = _info(obj["apiVersion"], obj["kind"])
    try:
        return await async_client.get_raw(info, obj["metadata"]["name"], namespace)
    except ApiException as exc:
        if exc.not_found:
            return None
        raise


async def delete(
    async_client: AsyncClient, obj: Obj, namespace: str, propagation: str | None = None
) -> Obj:
    info = _info(obj["apiVersion"], obj["kind"])
    return await async_client.delete_raw(
        info, obj["metadata"]["name"], namespace, propagation=propagation
    )


def gone(async_client: AsyncClient, namespace: str, *objs: Obj) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        for obj in objs:
            if await get(async_client, obj, namespace) is not None:
                return False
        return True

    return check


def owner_uids(obj: Obj) -> list[str]:
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or []]


async def test_deleting_an_owner_removes_its_dependents_in_the_background(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    web = await async_client.create_raw(deployment("web"), namespace)
    settings = await async_client.create_raw(configmap("web-settings", [ref(web)]), namespace)
    rs = await async_client.create_raw(
        replicaset("web-1", [ref(web, controller=True, block=True)]), namespace
    )
    pods = [
        await async_client.create_raw(
            pod(f"web-1-{i}", [ref(rs, controller=True, block=True)]), namespace
        )
        for i in range(3)
    ]
    bystander = await async_client.create_raw(configmap("unowned"), namespace)
    other_owner = await async_client.create_raw(deployment("other"), namespace)
    other_dependent = await async_client.create_raw(
        configmap("other-settings", [ref(other_owner)]), namespace
    )

    await delete(async_client, web, namespace)  # Background is the default
    assert await get(async_client, web, namespace) is None, (
        "background deletion removes the owner at once"
    )
    # the chain Deployment -> ReplicaSet -> Pods cascades, and the ConfigMap goes too
    await wait_for(gone(async_client, namespace, settings, rs, *pods))

    assert await get(async_client, bystander, namespace) is not None
    assert await get(async_client, other_owner, namespace) is not None
    assert await get(async_client, other_dependent, namespace) is not None


async def test_foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    rs = await async_client.create_raw(replicaset("web-1"), namespace)
    held = await async_client.create_raw(
        pod("web-1-held", [ref(rs, block=True)], finalizers=[HOLD]), namespace
    )
    others = [
        await async_client.create_raw(pod(f"web-1-{i}", [ref(rs, block=True)]), namespace)
        for i in range(2)
    ]
    non_blocking = await async_client.create_raw(configmap("web-1-cm", [ref(rs)]), namespace)

    answer = await delete(async_client, rs, namespace, "Foreground")
    assert answer["metadata"].get("deletionTimestamp")
    assert "foregroundDeletion" in answer["metadata"]["finalizers"]

    # every dependent is deleted; the held pod stays, marked for deletion, behind its finalizer
    await wait_for(gone(async_client, namespace, *others, non_blocking))

    async def held_is_terminating() -> bool:
        current = await get(async_client, held, namespace)
        return current is not None and bool(current["metadata"].get("deletionTimestamp"))

    await wait_for(held_is_terminating)
    owner = await get(async_client, rs, namespace)
    assert owner is not None, "the owner waits for its blocking dependent"
    assert owner["metadata"]["finalizers"] == ["foregroundDeletion"]

    # release the pod: it goes, and then the owner goes
    await async_client.patch_raw(
        _info("v1", "Pod"), "web-1-held", {"metadata": {"finalizers": None}}, namespace
    )
    await wait_for(gone(async_client, namespace, held, rs))


async def test_foreground_does_not_wait_for_dependents_that_do_not_block(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    rs = await async_client.create_raw(replicaset("web-2"), namespace)
    held = await async_client.create_raw(
        pod("web-2-held", [ref(rs, block=False)], finalizers=[HOLD]), namespace
    )
    await delete(async_client, rs, namespace, "Foreground")
    # the owner goes while its finalizer still holds the pod (the owner does not wait for
    # it), and the pod is deleted all the same, as Kubernetes does it: not necessarily first
    await wait_for(gone(async_client, namespace, rs))

    async def held_is_deleting() -> bool:
        current = await get(async_client, held, namespace)
        return current is not None and bool(current["metadata"].get("deletionTimestamp"))

    await wait_for(held_is_deleting)
    await async_client.patch_raw(
        _info("v1", "Pod"), "web-2-held", {"metadata": {"finalizers": None}}, namespace
    )
    await wait_for(gone(async_client, namespace, held))


async def test_orphan_deletion_leaves_dependents_without_the_reference(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    rs = await async_client.create_raw(replicaset("web-1"), namespace)
    keeper = await async_client.create_raw(configmap("keeper"), namespace)
    pods = [
        await async_client.create_raw(
            pod(f"web-1-{i}", [ref(rs, controller=True, block=True)]), namespace
        )
        for i in range(3)
    ]
    shared = await async_client.create_raw(configmap("shared", [ref(rs), ref(keeper)]), namespace)

    answer = await delete(async_client, rs, namespace, "Orphan")
    assert "orphan" in answer["metadata"]["finalizers"]
    await wait_for(gone(async_client, namespace, rs))

    # The orphan finalizer is only released after every dependent lost its reference, so
    # there is nothing to wait for here.
    for dependent in [*pods, shared]:
        current = await get(async_client, dependent, namespace)
        assert current is not None, f"{dependent['metadata']['name']} was orphaned, not deleted"
        assert rs["metadata"]["uid"] not in owner_uids(current)
    current_shared = await get(async_client, shared, namespace)
    assert current_shared is not None
    assert owner_uids(current_shared) == [keeper["metadata"]["uid"]], "other owners stay"


async def test_foreground_chain_waits_for_the_whole_chain(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    web = await async_client.create_raw(deployment("web"), namespace)
    rs = await async_client.create_raw(
        replicaset("web-1", [ref(web, controller=True, block=True)]), namespace
    )
    held = await async_client.create_raw(
        pod("web-1-held", [ref(rs, block=True)], finalizers=[HOLD]), namespace
    )
    free = await async_client.create_raw(pod("web-1-free", [ref(rs, block=True)]), namespace)

    await delete(async_client, web, namespace, "Foreground")
    await wait_for(gone(async_client, namespace, free))

    async def rs_deleting_in_foreground() -> bool:
        current = await get(async_client, rs, namespace)
        return current is not None and "foregroundDeletion" in (
            current["metadata"].get("finalizers") or []
        )

    # the ReplicaSet has dependents and a waiting owner, so it is deleted in the foreground too
    await wait_for(rs_deleting_in_foreground)
    assert await get(async_client, web, namespace) is not None, (
        "the Deployment waits for the ReplicaSet"
    )

    await async_client.patch_raw(
        _info("v1", "Pod"), "web-1-held", {"metadata": {"finalizers": None}}, namespace
    )
    await wait_for(gone(async_client, namespace, held, rs, web))


async def test_owner_identity_is_the_uid_not_the_name(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    owner = await async_client.create_raw(configmap("owner"), namespace)
    dependent = await async_client.create_raw(configmap("dependent", [ref(owner)]), namespace)
    await delete(async_client, owner, namespace)
    successor = await async_client.create_raw(configmap("owner"), namespace)  # same name, new uid
    assert successor["metadata"]["uid"] != owner["metadata"]["uid"]
    await wait_for(gone(async_client, namespace, dependent))
    assert await get(async_client, successor, namespace) is not None

    # a reference whose uid does not match the object of that name has no owner either
    impostor_ref = {**ref(successor), "uid": "00000000-0000-0000-0000-000000000000"}
    misled = await async_client.create_raw(configmap("misled", [impostor_ref]), namespace)
    await wait_for(gone(async_client, namespace, misled))
    assert await get(async_client, successor, namespace) is not None


async def test_a_dependent_with_a_remaining_owner_only_loses_the_dead_reference(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    first = await async_client.create_raw(configmap("first"), namespace)
    second = await async_client.create_raw(configmap("second"), namespace)
    shared = await async_client.create_raw(
        configmap("shared", [ref(first), ref(second)]), namespace
    )
    await delete(async_client, first, namespace)

    async def reference_dropped() -> bool:
        current = await get(async_client, shared, namespace)
        assert current is not None, "a dependent with a live owner is not collected"
        return owner_uids(current) == [second["metadata"]["uid"]]

    await wait_for(reference_dropped)
    await delete(async_client, second, namespace)
    await wait_for(gone(async_client, namespace, shared))


async def test_scoping_rules(
    async_client: AsyncClient, namespace: str, manager: ControllerManager, wait_for: Wait
) -> None:
    nodes = _info("v1", "Node")
    cluster_roles = _info("rbac.authorization.k8s.io/v1", "ClusterRole")
    node_name = f"node-{secrets.token_hex(3)}"
    node = await async_client.create_raw(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name}}
    )
    # a namespaced dependent of a cluster-scoped owner
    on_node = await async_client.create_raw(configmap("on-node", [ref(node)]), namespace)
    # a cluster-scoped object naming a namespaced owner kind: unresolvable, never collected
    namespaced_owner = await async_client.create_raw(configmap("ns-owner"), namespace)
    role_name = f"role-{secrets.token_hex(3)}"
    await async_client.create_raw(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name, "ownerReferences": [ref(namespaced_owner)]},
            "rules": [],
        }
    )
    # an owner of a kind kumo does not serve: unresolvable too
    foreign = {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "name": "w",
        "uid": "11111111-2222-3333-4444-555555555555",
    }
    foreign_dependent = await async_client.create_raw(configmap("foreign", [foreign]), namespace)
    # a dependent in another namespace than its namespaced owner: the owner is absent there
    elsewhere_ns = f"t-{secrets.token_hex(4)}"
    await async_client.create_raw(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": elsewhere_ns}}
    )
    elsewhere = await async_client.create_raw(
        configmap("elsewhere", [ref(namespaced_owner)]), elsewhere_ns
    )

    await wait_for(gone(async_client, elsewhere_ns, elsewhere))
    await async_client.delete_raw(nodes, node_name)
    await wait_for(gone(async_client, namespace, on_node))

    # The collector has processed everything above (the two deletions show it is running);
    # the unresolvable ones are still there.
    await delete(async_client, namespaced_owner, namespace)
    probe_owner = await async_client.create_raw(configmap("probe-owner"), namespace)
    probe = await async_client.create_raw(configmap("probe", [ref(probe_owner)]), namespace)
    await delete(async_client, probe_owner, namespace)
    await wait_for(gone(async_client, namespace, probe))
    assert await async_client.get_raw(cluster_roles, role_name)
    assert await get(async_client, foreign_dependent, namespace) is not None


async def test_dependents_left_behind_while_the_collector_was_down_are_collected(
    async_client: AsyncClient, namespace: str, start_manager: Any, wait_for: Wait
) -> None:
    owner = await async_client.create_raw(configmap("owner"), namespace)
    dependents = [
        await async_client.create_raw(configmap(f"dep-{i}", [ref(owner)]), namespace)
        for i in range(5)
    ]
    await delete(async_client, owner, namespace)
    assert all([await get(async_client, d, namespace) for d in dependents]), (
        "no collector is running yet"
    )
    async with start_manager(async_client, ["garbagecollector"]):
        await wait_for(gone(async_client, namespace, *dependents))


async def test_the_collector_watches_every_served_kind(manager: ControllerManager) -> None:
    collector = manager.controller("garbagecollector")
    watched = {informer.info.group_resource for informer in manager.informers.informers}
    assert watched >= {info.group_resource for info in RESOURCES}
    assert collector.informers is manager.informers
