"""Namespace deletion and the default ServiceAccount, against a real API server."""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient
from kumo.model.core import Namespace, ServiceAccount
from kumo.model.registry import RESOURCES, by_kind, for_model
from kumo.platform.controllers import ControllerManager

Obj = dict[str, Any]
Wait = Callable[..., Awaitable[Any]]
HOLD = "test.kumo.dev/hold"
NAMESPACES = for_model(Namespace)
SERVICE_ACCOUNTS = for_model(ServiceAccount)

TEMPLATE = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "busybox"}]},
}


def contents() -> list[Obj]:
    """One object of most namespaced kinds, some owning others."""
    selector = {"matchLabels": {"app": "web"}}
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "settings"},
            "data": {"a": "b"},
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "creds"},
            "stringData": {"p": "q"},
        },
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}},
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web-0", "labels": {"app": "web"}},
            "spec": TEMPLATE["spec"],
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web"},
            "spec": {"replicas": 2, "selector": selector, "template": TEMPLATE},
        },
        {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {"name": "web-1"},
            "spec": {"replicas": 2, "selector": selector, "template": TEMPLATE},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}],
        },
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": "lock"},
            "spec": {},
        },
    ]


async def namespace_state(async_client: AsyncClient, name: str) -> Obj | None:
    try:
        return await async_client.get_raw(NAMESPACES, name)
    except ApiException as exc:
        if exc.not_found:
            return None
        raise


async def count_everything(async_client: AsyncClient, namespace: str) -> dict[str, int]:
    counts = {}
    for info in RESOURCES:
        if info.namespaced:
            items, _ = await async_client.list_all_raw(info, namespace)
            if items:
                counts[info.group_resource] = len(items)
    return counts


async def new_namespace(async_client: AsyncClient) -> str:
    name = f"t-{secrets.token_hex(4)}"
    await async_client.create_raw(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


async def test_deleting_a_namespace_deletes_everything_in_it_then_the_namespace(
    async_client: AsyncClient, manager: ControllerManager, wait_for: Wait
) -> None:
    name = await new_namespace(async_client)
    created = [await async_client.create_raw(obj, name) for obj in contents()]
    rs = next(o for o in created if o["kind"] == "ReplicaSet")
    owned = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "web-1-a",
            "labels": {"app": "web"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "web-1",
                    "uid": rs["metadata"]["uid"],
                }
            ],
        },
        "spec": TEMPLATE["spec"],
    }
    await async_client.create_raw(owned, name)
    before = await count_everything(async_client, name)
    assert len(before) >= 9, before

    answer = await async_client.delete_raw(NAMESPACES, name)
    assert answer["status"]["phase"] == "Terminating"
    assert answer["spec"]["finalizers"] == ["kubernetes"]

    async def namespace_gone() -> bool:
        return await namespace_state(async_client, name) is None

    await wait_for(namespace_gone)
    assert await count_everything(async_client, name) == {}, "nothing is left behind in the store"


async def test_a_terminating_namespace_waits_for_finalizers_and_reports_them(
    async_client: AsyncClient, manager: ControllerManager, wait_for: Wait
) -> None:
    name = await new_namespace(async_client)
    configmaps = by_kind("v1", "ConfigMap")
    assert configmaps is not None
    await async_client.create_raw(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "held", "finalizers": [HOLD]},
        },
        name,
    )
    await async_client.create_raw(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "free"}}, name
    )
    await async_client.delete_raw(NAMESPACES, name)

    async def reported() -> Obj | None:
        ns = await namespace_state(async_client, name)
        assert ns is not None, "the namespace must wait for the held object"
        conditions = {c["type"]: c for c in (ns.get("status") or {}).get("conditions") or []}
        remaining = conditions.get("NamespaceContentRemaining")
        if remaining is None or remaining["status"] != "True":
            return None
        return conditions

    conditions = await wait_for(reported)
    assert (
        "configmaps has 1 resource instances" in conditions["NamespaceContentRemaining"]["message"]
    )
    assert conditions["NamespaceFinalizersRemaining"]["status"] == "True"
    assert HOLD in conditions["NamespaceFinalizersRemaining"]["message"]
    held = await async_client.get_raw(configmaps, "held", name)
    assert held["metadata"].get("deletionTimestamp")
    with pytest.raises(ApiException) as refused:
        await async_client.create_raw(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "late"}}, name
        )
    assert refused.value.code == 403

    await async_client.patch_raw(configmaps, "held", {"metadata": {"finalizers": None}}, name)

    async def namespace_gone() -> bool:
        return await namespace_state(async_client, name) is None

    await wait_for(namespace_gone)


async def test_a_new_namespace_gets_a_default_service_account_that_comes_back(
    async_client: AsyncClient, manager: ControllerManager, wait_for: Wait
) -> None:
    name = await new_namespace(async_client)

    async def default_account() -> Obj | None:
        try:
            return await async_client.get_raw(SERVICE_ACCOUNTS, "default", name)
        except ApiException as exc:
            if exc.not_found:
                return None
            raise

    first = await wait_for(default_account)
    await async_client.delete_raw(SERVICE_ACCOUNTS, "default", name)

    async def recreated() -> Obj | None:
        account = await default_account()
        if account is None or account["metadata"]["uid"] == first["metadata"]["uid"]:
            return None
        return account

    await wait_for(recreated)

    # and a namespace that is deleted and created again under the same name gets a fresh one
    await async_client.delete_raw(NAMESPACES, name)

    async def namespace_gone() -> bool:
        return await namespace_state(async_client, name) is None

    await wait_for(namespace_gone)
    await async_client.create_raw(
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    again = await wait_for(default_account)
    assert again["metadata"]["uid"] != first["metadata"]["uid"]


async def test_the_bootstrap_namespaces_get_default_service_accounts(
    async_client: AsyncClient, manager: ControllerManager, wait_for: Wait
) -> None:

    async def all_present() -> bool:
        for name in ("default", "kube-system", "kumo-system"):
            try:
                await async_client.get_raw(SERVICE_ACCOUNTS, "default", name)
            except ApiException as exc:
                if exc.not_found:
                    return False
                raise
        return True

    await wait_for(all_present)
