"""LimitRanger's pure parts: defaults a LimitRange gives containers, and the bounds it checks,
worded like Kubernetes."""

from __future__ import annotations

from typing import Any

from kumo.platform.api.limitranger import apply_defaults, default_requirements, violations


def limit_range(*items: dict[str, Any]) -> dict[str, Any]:
    return {"metadata": {"name": "l"}, "spec": {"limits": list(items)}}


def pod(*containers: dict[str, Any], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": list(containers)}
    if init:
        spec["initContainers"] = init
    return {"metadata": {"name": "p"}, "spec": spec}


def container(
    name: str, requests: dict[str, str] | None = None, limits: dict[str, str] | None = None
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = requests
    if limits:
        resources["limits"] = limits
    return {"name": name, "image": "x", "resources": resources}


DEFAULTS = {
    "type": "Container",
    "default": {"cpu": "500m", "memory": "256Mi"},
    "defaultRequest": {"cpu": "100m", "memory": "128Mi"},
}


def test_default_requirements_come_from_container_items_only() -> None:
    lr = limit_range(DEFAULTS, {"type": "Pod", "max": {"cpu": "2"}})
    assert default_requirements(lr) == (
        {"cpu": "100m", "memory": "128Mi"},
        {"cpu": "500m", "memory": "256Mi"},
    )


def test_defaults_fill_only_what_is_missing_and_are_noted() -> None:
    subject = pod(container("app", requests={"cpu": "200m"}), init=[container("setup")])
    notes = apply_defaults(limit_range(DEFAULTS), subject)
    app = subject["spec"]["containers"][0]["resources"]
    assert app == {
        "limits": {"cpu": "500m", "memory": "256Mi"},
        "requests": {"cpu": "200m", "memory": "128Mi"},
    }
    setup = subject["spec"]["initContainers"][0]["resources"]
    assert setup["requests"] == {"cpu": "100m", "memory": "128Mi"}
    assert notes == [
        "cpu, memory request for init container setup",
        "cpu, memory limit for init container setup",
        "memory request for container app",
        "cpu, memory limit for container app",
    ]


def test_no_defaults_no_changes() -> None:
    subject = pod(container("app"))
    assert apply_defaults(limit_range({"type": "Container", "max": {"cpu": "1"}}), subject) == []
    assert subject["spec"]["containers"][0]["resources"] == {}


def test_container_bounds() -> None:
    lr = limit_range(
        {
            "type": "Container",
            "min": {"cpu": "100m"},
            "max": {"cpu": "1", "memory": "1Gi"},
            "maxLimitRequestRatio": {"memory": "2"},
        }
    )
    good = pod(container("ok", {"cpu": "200m", "memory": "256Mi"}, {"cpu": "1", "memory": "512Mi"}))
    assert violations(lr, good) == []
    assert violations(lr, pod(container("c", limits={"memory": "512Mi"}))) == [
        "minimum cpu usage per Container is 100m.  No request is specified",
        "maximum cpu usage per Container is 1.  No limit is specified",
        "memory max limit to request ratio per Container is 2, but no request is specified or request is 0",
    ]
    assert violations(
        lr, pod(container("c", {"cpu": "50m", "memory": "100Mi"}, {"cpu": "2", "memory": "1Gi"}))
    ) == [
        "minimum cpu usage per Container is 100m, but request is 50m",
        "maximum cpu usage per Container is 1, but limit is 2",
        "memory max limit to request ratio per Container is 2, but provided ratio is 10.240000",
    ]
    assert violations(
        lr, pod(container("c", {"cpu": "2", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}))
    ) == [
        "maximum cpu usage per Container is 1, but request is 2",
    ]


def test_every_container_is_checked_init_ones_too() -> None:
    lr = limit_range({"type": "Container", "max": {"cpu": "1"}})
    subject = pod(container("a", limits={"cpu": "1"}), init=[container("b", limits={"cpu": "3"})])
    assert violations(lr, subject) == ["maximum cpu usage per Container is 1, but limit is 3"]


def test_pod_bounds_use_the_pod_total() -> None:
    lr = limit_range({"type": "Pod", "max": {"memory": "1Gi"}, "min": {"cpu": "300m"}})
    subject = pod(
        container("a", {"cpu": "100m", "memory": "256Mi"}, {"memory": "768Mi"}),
        container("b", {"cpu": "100m", "memory": "256Mi"}, {"memory": "768Mi"}),
    )
    assert violations(lr, subject) == [
        "minimum cpu usage per Pod is 300m, but request is 200m",
        "maximum memory usage per Pod is 1Gi, but limit is 1536Mi",
    ]
