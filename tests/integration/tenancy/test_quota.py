"""ResourceQuota against the real API server: admission refuses what would pass a quota
(worded like Kubernetes), concurrent creates cannot share the last slot, the resourcequota
controller reports usage, and a Deployment over quota stops at the limit with a
FailedCreate event naming the quota."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient

from .conftest import CONFIGMAP, EVENT, POD, QUOTA, SERVICE, pod, quota

Wait = Any


async def _refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        await call
    return caught.value


async def test_pod_count_quota_refuses_the_next_pod_naming_the_quota(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(quota("team-quota", {"pods": "3"}), namespace)
    for i in range(3):
        await async_client.create_raw(pod(f"p{i}"), namespace)
    error = await _refused(async_client.create_raw(pod("x"), namespace))
    assert error.code == 403
    assert error.reason == "Forbidden"
    assert error.message == (
        'pods "x" is forbidden: exceeded quota: team-quota, '
        "requested: pods=1, used: pods=3, limited: pods=3"
    )
    # A pod that finished no longer counts: the slot is free again.
    await async_client.patch_raw(
        POD, "p0", {"status": {"phase": "Succeeded"}}, namespace, sub="status"
    )
    await async_client.create_raw(pod("x"), namespace)


async def test_count_and_legacy_names_and_other_kinds(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(
        quota("objects", {"count/configmaps": "1", "secrets": "1", "services": "1"}), namespace
    )
    await async_client.create_raw(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "one"}}, namespace
    )
    error = await _refused(
        async_client.create_raw(
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "two"}}, namespace
        )
    )
    assert error.code == 403
    assert "exceeded quota: objects, requested: count/configmaps=1" in error.message
    assert error.message.startswith('configmaps "two" is forbidden')
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s1"}}
    await async_client.create_raw(secret, namespace)
    error = await _refused(
        async_client.create_raw({**secret, "metadata": {"name": "s2"}}, namespace)
    )
    assert "requested: secrets=1, used: secrets=1, limited: secrets=1" in error.message
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]},
    }
    await async_client.create_raw(service, namespace)
    error = await _refused(
        async_client.create_raw({**service, "metadata": {"name": "web2"}}, namespace)
    )
    assert "exceeded quota: objects" in error.message and "services=1" in error.message
    # Updates that do not add usage are never refused, even at the limit.
    await async_client.patch_raw(CONFIGMAP, "one", {"data": {"k": "v"}}, namespace)


async def test_compute_quota_needs_requests_and_counts_them(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(
        quota("compute", {"requests.cpu": "1", "limits.memory": "1Gi"}), namespace
    )
    error = await _refused(async_client.create_raw(pod("bare"), namespace))
    assert error.code == 403
    assert error.message == (
        'pods "bare" is forbidden: failed quota: compute: must specify '
        "limits.memory for: main; requests.cpu for: main"
    )
    await async_client.create_raw(
        pod("a", requests={"cpu": "600m"}, limits={"memory": "512Mi"}), namespace
    )
    error = await _refused(
        async_client.create_raw(
            pod("b", requests={"cpu": "500m"}, limits={"memory": "256Mi"}), namespace
        )
    )
    assert error.message == (
        'pods "b" is forbidden: exceeded quota: compute, '
        "requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"
    )
    await async_client.create_raw(
        pod("c", requests={"cpu": "400m"}, limits={"memory": "512Mi"}), namespace
    )


async def test_scoped_quota_counts_only_matching_pods(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(quota("best-effort", {"pods": "1"}, ["BestEffort"]), namespace)
    await async_client.create_raw(pod("be1"), namespace)
    error = await _refused(async_client.create_raw(pod("be2"), namespace))
    assert "exceeded quota: best-effort" in error.message
    # A pod with requests is not BestEffort: this quota does not see it.
    await async_client.create_raw(pod("burst", requests={"cpu": "100m"}), namespace)


async def test_concurrent_creates_cannot_exceed_the_quota(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(quota("pods", {"pods": "5"}), namespace)
    results = await asyncio.gather(
        *(async_client.create_raw(pod(f"race-{i}"), namespace) for i in range(24)),
        return_exceptions=True,
    )
    created = [r for r in results if isinstance(r, dict)]
    refused = [r for r in results if isinstance(r, ApiException)]
    assert len(created) == 5
    assert len(refused) == 19
    assert all(r.code == 403 and "exceeded quota: pods" in r.message for r in refused)
    items, _ = await async_client.list_all_raw(POD, namespace)
    assert len(items) == 5


async def test_controller_reports_usage_in_status(
    async_client: AsyncClient, namespace: str, start_controllers: Any, wait_for: Wait
) -> None:
    await async_client.create_raw(
        quota(
            "team",
            {
                "pods": "10",
                "requests.cpu": "4",
                "requests.memory": "4Gi",
                "limits.memory": "8Gi",
                "count/secrets": "5",
                "count/deployments.apps": "2",
                "persistentvolumeclaims": "3",
            },
        ),
        namespace,
    )
    async with start_controllers("resourcequota"):
        for i in range(2):
            await async_client.create_raw(
                pod(
                    f"p{i}",
                    requests={"cpu": "250m", "memory": "256Mi"},
                    limits={"memory": "512Mi"},
                ),
                namespace,
            )
        await async_client.create_raw(
            {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}, namespace
        )

        async def used() -> Any:
            current = await async_client.get_raw(QUOTA, "team", namespace)
            status = current.get("status") or {}
            expected = {
                "pods": "2",
                "requests.cpu": "500m",
                "requests.memory": "512Mi",
                "limits.memory": "1Gi",
                "count/secrets": "1",
                "count/deployments.apps": "0",
                "persistentvolumeclaims": "0",
            }
            return status.get("used") == expected and status

        status = await wait_for(used)
        assert status["hard"]["requests.cpu"] == "4"
        # A deleted pod stops counting.
        await async_client.delete_raw(POD, "p1", namespace)

        async def one_pod() -> Any:
            current = await async_client.get_raw(QUOTA, "team", namespace)
            return (current.get("status") or {}).get("used", {}).get("pods") == "1"

        await wait_for(one_pod)


async def test_deployment_over_quota_stops_at_the_limit_with_an_event(
    async_client: AsyncClient, namespace: str, start_controllers: Any, wait_for: Wait
) -> None:
    await async_client.create_raw(quota("team-quota", {"pods": "2"}), namespace)
    labels = {"app": "web"}
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 4,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": "kumo.test/web:1"}]},
            },
        },
    }
    async with start_controllers("deployment", "replicaset", "resourcequota"):
        await async_client.create_raw(deployment, namespace)

        async def failed_create() -> Any:
            items, _ = await async_client.list_all_raw(EVENT, namespace)
            return [e for e in items if e.get("reason") == "FailedCreate"]

        events = await wait_for(failed_create)
        event = events[0]
        assert event["type"] == "Warning"
        assert event["involvedObject"]["kind"] == "ReplicaSet"
        assert "exceeded quota: team-quota" in event["message"]
        assert "requested: pods=1, used: pods=2, limited: pods=2" in event["message"]
        items, _ = await async_client.list_all_raw(POD, namespace)
        assert len(items) == 2

        async def quota_full() -> Any:
            current = await async_client.get_raw(QUOTA, "team-quota", namespace)
            return (current.get("status") or {}).get("used") == {"pods": "2"}

        await wait_for(quota_full)
        # A direct create is refused the same way.
        error = await _refused(async_client.create_raw(pod("extra"), namespace))
        assert error.code == 403
        assert error.message == (
            'pods "extra" is forbidden: exceeded quota: team-quota, '
            "requested: pods=1, used: pods=2, limited: pods=2"
        )
        # Still two pods after the controllers retried for a while.
        await asyncio.sleep(1.0)
        items, _ = await async_client.list_all_raw(POD, namespace)
        assert len(items) == 2


async def test_an_update_that_adds_usage_is_checked(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(quota("lb", {"services.loadbalancers": "1"}), namespace)
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "a"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }
    await async_client.create_raw(service, namespace)
    await async_client.create_raw(
        {**service, "metadata": {"name": "b"}, "spec": {"ports": [{"port": 80}]}}, namespace
    )
    error = await _refused(
        async_client.patch_raw(SERVICE, "b", {"spec": {"type": "LoadBalancer"}}, namespace)
    )
    assert error.code == 403
    assert error.message == (
        'services "b" is forbidden: exceeded quota: lb, requested: services.loadbalancers=1,'
        " used: services.loadbalancers=1, limited: services.loadbalancers=1"
    )
    # Other changes to the same service pass.
    await async_client.patch_raw(SERVICE, "b", {"metadata": {"labels": {"tier": "web"}}}, namespace)
