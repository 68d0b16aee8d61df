"""Quota accounting (kumo.model.quota) and the ResourceQuota / LimitRange kinds."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest

from kumo.model.core import LimitRange, ResourceQuota
from kumo.model.quota import (
    count_name,
    format_amount,
    matches_scopes,
    missing_requests,
    pod_charged,
    pod_resources,
    pretty,
    subtract_non_negative,
    total_usage,
    tracks,
    usage,
)

D = Decimal


def container(name: str, requests: dict[str, str] | None = None, **more: Any) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if more.get("limits"):
        resources["limits"] = more.pop("limits")
    out: dict[str, Any] = {"name": name, "image": "x", **more}
    if resources:
        out["resources"] = resources
    return out


def pod(*containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "p"}, "spec": {"containers": list(containers), **spec}}


def test_count_names() -> None:
    assert count_name("pods", "") == "count/pods"
    assert count_name("deployments", "apps") == "count/deployments.apps"


@pytest.mark.parametrize(
    ("plural", "group", "name", "tracked"),
    [
        ("pods", "", "pods", True),
        ("pods", "", "count/pods", True),
        ("pods", "", "cpu", True),
        ("pods", "", "requests.memory", True),
        ("pods", "", "limits.cpu", True),
        ("pods", "", "requests.nvidia.com/gpu", True),
        ("pods", "", "services", False),
        ("services", "", "services", True),
        ("services", "", "services.nodeports", True),
        ("services", "", "count/services", True),
        ("secrets", "", "secrets", True),
        ("secrets", "", "count/secrets", True),
        ("configmaps", "", "configmaps", True),
        ("deployments", "apps", "count/deployments.apps", True),
        ("deployments", "apps", "deployments", False),
        ("deployments", "apps", "count/deployments", False),
        ("events", "", "count/events", True),
    ],
)
def test_tracks(plural: str, group: str, name: str, tracked: bool) -> None:
    assert tracks(plural, group, name) is tracked


def test_pod_usage_sums_containers_and_aliases_requests() -> None:
    spec = pod(
        container("a", {"cpu": "250m", "memory": "128Mi"}, limits={"memory": "256Mi"}),
        container("b", {"cpu": "500m"}, limits={"cpu": "1"}),
    )
    assert usage("pods", "", spec) == {
        "count/pods": D(1),
        "pods": D(1),
        "requests.cpu": D("0.75"),
        "cpu": D("0.75"),
        "requests.memory": D(128 * 2**20),
        "memory": D(128 * 2**20),
        "limits.memory": D(256 * 2**20),
        "limits.cpu": D(1),
    }


def test_init_containers_count_as_their_peak_and_sidecars_add_up() -> None:
    spec = pod(
        container("app", {"cpu": "100m"}),
        initContainers=[
            container("setup", {"cpu": "2"}),
            container("proxy", {"cpu": "200m"}, restartPolicy="Always"),
            container("late", {"cpu": "500m"}),
        ],
    )["spec"]
    # max(app + proxy = 300m, setup = 2, late + proxy = 700m)
    assert pod_resources(spec, "requests") == {"cpu": D(2)}
    spec["initContainers"][0]["resources"]["requests"]["cpu"] = "100m"
    assert pod_resources(spec, "requests") == {"cpu": D("0.7")}


def test_finished_and_long_gone_pods_do_not_count() -> None:
    running = pod(container("a"))
    assert usage("pods", "", running)
    assert usage("pods", "", {**running, "status": {"phase": "Succeeded"}}) == {}
    assert usage("pods", "", {**running, "status": {"phase": "Failed"}}) == {}
    now = datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC)
    deleting = {
        **running,
        "metadata": {"deletionTimestamp": "2030-01-01T00:00:00Z", "deletionGracePeriodSeconds": 30},
    }
    assert pod_charged(deleting, now)  # still within its grace period
    assert pod_charged(deleting, now + datetime.timedelta(seconds=29))
    assert not pod_charged(deleting, now + datetime.timedelta(seconds=31))


def test_services_by_type() -> None:
    cluster = {"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}}
    node_port = {"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}
    balancer = {"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    assert usage("services", "", cluster) == {"count/services": D(1), "services": D(1)}
    assert usage("services", "", node_port)["services.nodeports"] == D(2)
    assert usage("services", "", balancer)["services.loadbalancers"] == D(1)
    assert usage("services", "", balancer)["services.nodeports"] == D(1)


def test_other_kinds_count_once() -> None:
    assert usage("deployments", "apps", {}) == {"count/deployments.apps": D(1)}
    assert usage("secrets", "", {}) == {"count/secrets": D(1), "secrets": D(1)}


@pytest.mark.parametrize(
    ("scopes", "spec", "matched"),
    [
        ([], {"containers": [container("a")]}, True),
        (["BestEffort"], {"containers": [container("a")]}, True),
        (["BestEffort"], {"containers": [container("a", {"cpu": "1"})]}, False),
        (["NotBestEffort"], {"containers": [container("a", {"cpu": "1"})]}, True),
        (["Terminating"], {"containers": [container("a")], "activeDeadlineSeconds": 30}, True),
        (["Terminating"], {"containers": [container("a")]}, False),
        (["NotTerminating"], {"containers": [container("a")]}, True),
        (
            ["NotTerminating", "BestEffort"],
            {"containers": [container("a")], "activeDeadlineSeconds": 5},
            False,
        ),
    ],
)
def test_scopes(scopes: list[str], spec: dict[str, Any], matched: bool) -> None:
    assert matches_scopes(scopes, "pods", "", {"spec": spec}) is matched


def test_scopes_never_match_other_kinds() -> None:
    assert matches_scopes(["BestEffort"], "services", "", {"spec": {}}) is False
    assert matches_scopes([], "services", "", {"spec": {}}) is True


def test_missing_requests_names_containers_per_resource() -> None:
    subject = pod(
        container("a", {"cpu": "1"}),
        container("b", limits={"memory": "1Gi"}),
        initContainers=[container("init")],
    )
    assert missing_requests(["pods", "cpu", "limits.memory"], subject) == {
        "cpu": ["b", "init"],
        "limits.memory": ["a", "init"],
    }
    assert missing_requests(["pods", "count/pods", "requests.storage"], subject) == {}


def test_total_usage_and_delta() -> None:
    pods = [pod(container("a", {"cpu": "100m"})), pod(container("b"))]
    total = total_usage("pods", "", pods, ["NotBestEffort"])
    assert total["pods"] == D(1) and total["requests.cpu"] == D("0.1")
    assert subtract_non_negative({"a": D(2), "b": D(1)}, {"a": D(1), "b": D(3)}) == {
        "a": D(1),
        "b": D(0),
    }


@pytest.mark.parametrize(
    ("name", "amount", "text"),
    [
        ("pods", D(3), "3"),
        ("requests.cpu", D("0.5"), "500m"),
        ("cpu", D(2), "2"),
        ("requests.cpu", D("0.0005"), "1m"),
        ("requests.memory", D(256 * 2**20), "256Mi"),
        ("limits.memory", D(2**30), "1Gi"),
        ("requests.memory", D(10**9), "1G"),
        ("memory", D(1500), "1500"),
        ("memory", D(0), "0"),
        ("count/pods", D(1024), "1024"),
    ],
)
def test_format_amount(name: str, amount: Decimal, text: str) -> None:
    assert format_amount(name, amount) == text


def test_pretty_sorts_by_name() -> None:
    assert pretty({"requests.cpu": D("0.5"), "pods": D(1)}) == "pods=1,requests.cpu=500m"


def test_absurd_quantities_stay_finite() -> None:
    huge = pod(container("a", {"cpu": "9e999999"}), container("b", {"cpu": "9e999999"}))
    assert usage("pods", "", huge)["cpu"] == D(2) * D(2**63 - 1)


# ---- the kinds ---------------------------------------------------------------------------------


def test_resource_quota_validation() -> None:
    ok = ResourceQuota.model_validate(
        {"metadata": {"name": "q"}, "spec": {"hard": {"pods": "3", "requests.cpu": "1"}}}
    )
    assert ok.validate_semantics() == []
    bad = ResourceQuota.model_validate(
        {
            "metadata": {"name": "q"},
            "spec": {
                "hard": {"pods": "-1", "requests.cpu": "1"},
                "scopes": ["BestEffort", "NotBestEffort", "Sometimes"],
            },
        }
    )
    problems = dict(bad.validate_semantics())
    assert problems["spec.hard[pods]"] == "Invalid value: '-1': must be greater than or equal to 0"
    assert problems["spec.scopes[2]"].startswith('Unsupported value: "Sometimes"')
    assert problems["spec.scopes"].endswith("conflicting scopes")
    assert problems["spec.hard[requests.cpu]"] == (
        'Invalid value: "requests.cpu": unsupported scope applied to resource'
    )


def test_limit_range_defaults_like_kubernetes() -> None:
    lr = LimitRange.model_validate(
        {
            "metadata": {"name": "l"},
            "spec": {
                "limits": [
                    {"type": "Container", "max": {"cpu": "2"}, "min": {"memory": "64Mi"}},
                    {"type": "Pod", "max": {"cpu": "4"}},
                ]
            },
        }
    )
    lr.apply_defaults()
    container_item, pod_item = lr.spec.limits
    assert container_item.default == {"cpu": "2"}
    assert container_item.default_request == {"cpu": "2", "memory": "64Mi"}
    assert pod_item.default is None and pod_item.default_request is None


@pytest.mark.parametrize(
    ("item", "field", "message"),
    [
        (
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}},
            "spec.limits[0].min[cpu]",
            'Invalid value: "2": min value 2 is greater than max value 1',
        ),
        (
            {"type": "Container", "default": {"cpu": "2"}, "max": {"cpu": "1"}},
            "spec.limits[0].default[cpu]",
            'Invalid value: "2": default value 2 is greater than max value 1',
        ),
        (
            {"type": "Container", "default": {"cpu": "1"}, "defaultRequest": {"cpu": "2"}},
            "spec.limits[0].defaultRequest[cpu]",
            'Invalid value: "2": default request value 2 is greater than default limit value 1',
        ),
        (
            {"type": "Container", "maxLimitRequestRatio": {"cpu": "500m"}},
            "spec.limits[0].maxLimitRequestRatio[cpu]",
            'Invalid value: "500m": ratio 500m is less than 1',
        ),
        (
            {"type": "Pod", "defaultRequest": {"cpu": "1"}},
            "spec.limits[0].defaultRequest",
            "Forbidden: may not be specified when `type` is 'Pod'",
        ),
        (
            {"type": "Node"},
            "spec.limits[0].type",
            'Unsupported value: "Node": supported values: "Container", "Pod", "PersistentVolumeClaim"',
        ),
    ],
)
def test_limit_range_validation(item: dict[str, Any], field: str, message: str) -> None:
    lr = LimitRange.model_validate({"metadata": {"name": "l"}, "spec": {"limits": [item]}})
    assert (field, message) in lr.validate_semantics()
