"""NodeMetrics and PodMetrics from node Summaries (pure shaping)."""

from __future__ import annotations

from kumo.platform.api.resourcemetrics import node_metrics, pod_metrics

NODE = {"metadata": {"name": "n1", "labels": {"zone": "a"}}}


def test_node_metrics_in_nanocores_and_kibibytes() -> None:
    summary = {
        "node": {
            "nodeName": "n1",
            "window": "10.002s",
            "cpu": {"time": "2026-01-01T00:00:00Z", "usageNanoCores": 250_000_000},
            "memory": {"workingSetBytes": 3 * 1024 * 1024 + 100},
        }
    }
    found = node_metrics(NODE, summary)
    assert found is not None
    assert found["kind"] == "NodeMetrics"
    assert found["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert found["metadata"]["name"] == "n1"
    assert found["metadata"]["labels"] == {"zone": "a"}
    assert found["timestamp"] == "2026-01-01T00:00:00Z"
    assert found["window"] == "10.002s"
    assert found["usage"] == {"cpu": "250000000n", "memory": "3072Ki"}


def test_a_node_without_a_cpu_rate_has_no_metrics_yet() -> None:
    assert node_metrics(NODE, {"node": {"cpu": {"usageCoreNanoSeconds": 5}}}) is None
    assert node_metrics(NODE, {}) is None


def test_pod_metrics_list_containers_by_name() -> None:
    pod = {"metadata": {"name": "web", "namespace": "team", "labels": {"app": "web"}}}
    stats = {
        "window": "1.000s",
        "cpu": {"time": "2026-01-01T00:00:01Z"},
        "containers": [
            {"name": "proxy", "cpu": {"usageNanoCores": 7}, "memory": {"workingSetBytes": 2048}},
            {"name": "app", "cpu": {"usageNanoCores": 9}, "memory": {"workingSetBytes": 4096}},
        ],
    }
    found = pod_metrics(pod, stats)
    assert found["kind"] == "PodMetrics"
    assert found["metadata"]["namespace"] == "team"
    assert found["metadata"]["labels"] == {"app": "web"}
    assert found["timestamp"] == "2026-01-01T00:00:01Z"
    assert found["window"] == "1.000s"
    assert found["containers"] == [
        {"name": "app", "usage": {"cpu": "9n", "memory": "4Ki"}},
        {"name": "proxy", "usage": {"cpu": "7n", "memory": "2Ki"}},
    ]


def test_request_paths_read_as_kubernetes_reads_them() -> None:
    from kumo.platform.api.resourcemetrics import _target

    assert _target("nodes") == ("nodes", "", "")
    assert _target("nodes/n1") == ("nodes", "", "n1")
    assert _target("pods") == ("pods", "", "")
    assert _target("namespaces/team/pods") == ("pods", "team", "")
    assert _target("namespaces/team/pods/web") == ("pods", "team", "web")
    assert _target("") is None
    assert _target("namespaces/team/pods/web/extra") is None
