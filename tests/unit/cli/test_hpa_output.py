"""How HorizontalPodAutoscalers print: kubectl's columns, TARGETS per metric."""

from __future__ import annotations

from typing import Any

from kumo.cli.printers import table
from kumo.model.registry import by_kind

HPA = by_kind("autoscaling/v2", "HorizontalPodAutoscaler")
assert HPA is not None


def utilization(kind: str, name: str, percent: int, container: str = "") -> dict[str, Any]:
    key = "resource" if kind == "Resource" else "containerResource"
    source: dict[str, Any] = {
        "name": name,
        "target": {"type": "Utilization", "averageUtilization": percent},
    }
    if container:
        source["container"] = container
    return {"type": kind, key: source}


def hpa(metrics: list[dict[str, Any]], current: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "a", "creationTimestamp": "2020-01-01T00:00:00Z"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 2,
            "maxReplicas": 10,
            "metrics": metrics,
        },
        "status": {"currentReplicas": 3, "desiredReplicas": 3, "currentMetrics": current},
    }


def test_columns_and_measured_targets() -> None:
    metrics = [
        utilization("Resource", "cpu", 60),
        utilization("ContainerResource", "cpu", 50, "app"),
        {
            "type": "Resource",
            "resource": {
                "name": "memory",
                "target": {"type": "AverageValue", "averageValue": "200Mi"},
            },
        },
    ]
    current = [
        {"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 84}}},
        {
            "type": "ContainerResource",
            "containerResource": {
                "name": "cpu",
                "container": "app",
                "current": {"averageUtilization": 70},
            },
        },
    ]
    rows = table(HPA, [hpa(metrics, current)])
    assert rows[0][:6] == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS"]
    assert rows[1][:6] == [
        "web",
        "Deployment/web",
        "cpu: 84%/60%, cpu(app): 70%/50%, memory: <unknown>/200Mi",
        "2",
        "10",
        "3",
    ]


def test_unmeasured_and_unsupported_metrics() -> None:
    metrics = [
        utilization("Resource", "cpu", 80),
        {"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue"}}},
    ]
    assert table(HPA, [hpa(metrics, [])])[1][2] == "cpu: <unknown>/80%, <Pods>"
