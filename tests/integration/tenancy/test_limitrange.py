"""LimitRange against the real API server: defaults for containers that state no requests
or limits, and 403s naming the LimitRange for pods out of bounds."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.client import ApiException, AsyncClient

from .conftest import LIMITS, pod


def limit_range(name: str, *items: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": {"name": name},
        "spec": {"limits": list(items)},
    }


CONTAINER_DEFAULTS = {
    "type": "Container",
    "default": {"cpu": "500m", "memory": "256Mi"},
    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
    "min": {"cpu": "50m"},
    "max": {"cpu": "1", "memory": "1Gi"},
    "maxLimitRequestRatio": {"cpu": "10"},
}


async def _refused(call: Any) -> ApiException:
    with pytest.raises(ApiException) as caught:
        await call
    return caught.value


async def test_defaults_are_applied_to_containers_without_resources(
    async_client: AsyncClient, namespace: str
) -> None:
    stored = await async_client.create_raw(limit_range("limits", CONTAINER_DEFAULTS), namespace)
    # The LimitRange itself was defaulted as Kubernetes does (nothing to add here).
    assert stored["spec"]["limits"][0]["default"] == {"cpu": "500m", "memory": "256Mi"}
    created = await async_client.create_raw(pod("plain"), namespace)
    resources = created["spec"]["containers"][0]["resources"]
    assert resources == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "100m", "memory": "128Mi"},
    }
    assert created["metadata"]["annotations"]["kubernetes.io/limit-ranger"] == (
        "LimitRanger plugin set: cpu, memory request for container main;"
        " cpu, memory limit for container main"
    )
    assert created["status"]["qosClass"] == "Burstable"
    # What a container states itself is kept; only the missing parts are filled in.
    own = await async_client.create_raw(
        pod("own", requests={"cpu": "200m"}, limits={"cpu": "400m"}), namespace
    )
    resources = own["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "200m", "memory": "128Mi"}
    assert resources["limits"] == {"cpu": "400m", "memory": "256Mi"}


async def test_max_defaults_the_limit_when_no_default_is_given(
    async_client: AsyncClient, namespace: str
) -> None:
    item = {"type": "Container", "max": {"memory": "512Mi"}}
    stored = await async_client.create_raw(limit_range("mem", item), namespace)
    assert stored["spec"]["limits"][0]["default"] == {"memory": "512Mi"}
    assert stored["spec"]["limits"][0]["defaultRequest"] == {"memory": "512Mi"}
    created = await async_client.create_raw(pod("plain"), namespace)
    assert created["spec"]["containers"][0]["resources"]["limits"] == {"memory": "512Mi"}


async def test_violations_are_refused_naming_the_limit_range(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(limit_range("limits", CONTAINER_DEFAULTS), namespace)
    error = await _refused(
        async_client.create_raw(pod("big", requests={"cpu": "1"}, limits={"cpu": "2"}), namespace)
    )
    assert error.code == 403
    assert error.message == (
        'pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
        ' (LimitRange "limits")'
    )
    error = await _refused(
        async_client.create_raw(
            pod("tiny", requests={"cpu": "10m"}, limits={"cpu": "20m"}), namespace
        )
    )
    assert error.message == (
        'pods "tiny" is forbidden: minimum cpu usage per Container is 50m, but request is 10m'
        ' (LimitRange "limits")'
    )
    error = await _refused(
        async_client.create_raw(
            pod("spiky", requests={"cpu": "60m"}, limits={"cpu": "1"}), namespace
        )
    )
    assert error.message == (
        'pods "spiky" is forbidden: cpu max limit to request ratio per Container is 10,'
        ' but provided ratio is 16.666667 (LimitRange "limits")'
    )
    # Two problems at once are both named.
    error = await _refused(
        async_client.create_raw(
            pod(
                "both", requests={"cpu": "2", "memory": "2Gi"}, limits={"cpu": "2", "memory": "2Gi"}
            ),
            namespace,
        )
    )
    assert error.message.startswith('pods "both" is forbidden: [')
    assert "maximum cpu usage per Container is 1, but limit is 2" in error.message
    assert "maximum memory usage per Container is 1Gi, but limit is 2Gi" in error.message


async def test_pod_level_bounds(async_client: AsyncClient, namespace: str) -> None:
    await async_client.create_raw(
        limit_range("per-pod", {"type": "Pod", "max": {"cpu": "1"}}), namespace
    )
    two = pod("two", limits={"cpu": "600m"})
    two["spec"]["containers"].append(
        {"name": "side", "image": "kumo.test/web:1", "resources": {"limits": {"cpu": "600m"}}}
    )
    error = await _refused(async_client.create_raw(two, namespace))
    assert error.message == (
        'pods "two" is forbidden: maximum cpu usage per Pod is 1, but limit is 1200m'
        ' (LimitRange "per-pod")'
    )
    await async_client.create_raw(pod("one", limits={"cpu": "600m"}), namespace)


async def test_default_limit_below_an_explicit_request_is_invalid(
    async_client: AsyncClient, namespace: str
) -> None:
    await async_client.create_raw(
        limit_range("small", {"type": "Container", "default": {"cpu": "200m"}}), namespace
    )
    error = await _refused(async_client.create_raw(pod("req", requests={"cpu": "1"}), namespace))
    assert error.code == 422
    assert "must be less than or equal to cpu limit of 200m" in error.message


async def test_invalid_limit_ranges_are_rejected(async_client: AsyncClient, namespace: str) -> None:
    bad = limit_range("bad", {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}})
    error = await _refused(async_client.create_raw(bad, namespace))
    assert error.code == 422
    assert "spec.limits[0].min[cpu]" in error.message
    assert "min value 2 is greater than max value 1" in error.message
    pod_default = limit_range("pd", {"type": "Pod", "default": {"cpu": "1"}})
    error = await _refused(async_client.create_raw(pod_default, namespace))
    assert error.code == 422
    assert "may not be specified when `type` is 'Pod'" in error.message
    items, _ = await async_client.list_all_raw(LIMITS, namespace)
    assert items == []
