"""Server-side defaults, as Kubernetes sets them."""

from __future__ import annotations

import base64
from typing import Any

from kumo.model import (
    ConfigMap,
    Deployment,
    HorizontalPodAutoscaler,
    Job,
    Namespace,
    Pod,
    ReplicaSet,
    Secret,
    Service,
    to_wire,
)
from kumo.model.common import scaled_value
from kumo.model.functions import Function

CONTAINER: dict[str, Any] = {"name": "web", "image": "nginx:1.27"}
TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [CONTAINER]},
}


def deployment(**spec: Any) -> Deployment:
    return Deployment.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE, **spec},
        }
    )


def test_deployment_defaults() -> None:
    d = deployment()
    d.apply_defaults()
    spec = to_wire(d)["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
    }
    assert spec["revisionHistoryLimit"] == 10
    assert spec["progressDeadlineSeconds"] == 600
    assert spec["minReadySeconds"] == 0
    assert spec["template"]["spec"]["restartPolicy"] == "Always"


def test_deployment_defaults_keep_what_the_user_set() -> None:
    d = deployment(
        replicas=0,
        revisionHistoryLimit=2,
        strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
    )
    d.apply_defaults()
    spec = to_wire(d)["spec"]
    assert spec["replicas"] == 0
    assert spec["revisionHistoryLimit"] == 2
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": "25%"}


def test_recreate_strategy_gets_no_rolling_update_defaults() -> None:
    d = deployment(strategy={"type": "Recreate"})
    d.apply_defaults()
    assert to_wire(d)["spec"]["strategy"] == {"type": "Recreate"}


def test_pod_spec_defaults() -> None:
    pod = Pod.model_validate({"metadata": {"name": "p"}, "spec": {"containers": [CONTAINER]}})
    pod.apply_defaults()
    wire = to_wire(pod)
    spec = wire["spec"]
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["serviceAccountName"] == "default"
    assert spec["enableServiceLinks"] is True
    container = spec["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert wire["status"]["phase"] == "Pending"
    assert wire["status"]["qosClass"] == "BestEffort"


def test_image_pull_policy_follows_the_tag() -> None:
    for image, policy in (
        ("nginx", "Always"),
        ("nginx:latest", "Always"),
        ("registry:5000/nginx", "Always"),
        ("nginx:1.27", "IfNotPresent"),
        ("registry:5000/nginx:1.27", "IfNotPresent"),
        ("nginx@sha256:" + "a" * 64, "IfNotPresent"),
    ):
        pod = Pod.model_validate(
            {"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": image}]}}
        )
        pod.apply_defaults()
        assert pod.spec.containers[0].image_pull_policy == policy, image


def test_probe_defaults() -> None:
    probe_spec = {"httpGet": {"port": 8080}}
    pod = Pod.model_validate(
        {
            "metadata": {"name": "p"},
            "spec": {
                "containers": [
                    {**CONTAINER, "readinessProbe": probe_spec, "livenessProbe": probe_spec}
                ]
            },
        }
    )
    pod.apply_defaults()
    for probe in ("readinessProbe", "livenessProbe"):
        wire = to_wire(pod)["spec"]["containers"][0][probe]
        assert wire == {
            "httpGet": {"path": "/", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 0,
            "timeoutSeconds": 1,
            "periodSeconds": 10,
            "successThreshold": 1,
            "failureThreshold": 3,
        }


def test_limits_without_requests_become_requests_and_qos_follows() -> None:
    resources = {"limits": {"cpu": "500m", "memory": "64Mi"}}
    pod = Pod.model_validate(
        {"metadata": {"name": "p"}, "spec": {"containers": [{**CONTAINER, "resources": resources}]}}
    )
    pod.apply_defaults()
    assert to_wire(pod)["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "64Mi",
    }
    assert pod.status is not None and pod.status.qos_class == "Guaranteed"
    burstable = Pod.model_validate(
        {
            "metadata": {"name": "p"},
            "spec": {"containers": [{**CONTAINER, "resources": {"requests": {"cpu": "1"}}}]},
        }
    )
    burstable.apply_defaults()
    assert burstable.status is not None and burstable.status.qos_class == "Burstable"


def test_service_defaults_target_port_to_port() -> None:
    service = Service.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "selector": {"app": "web"},
                "ports": [
                    {"name": "http", "port": 80},
                    {"name": "dns", "port": 53, "targetPort": "dns"},
                ],
            },
        }
    )
    service.apply_defaults()
    spec = to_wire(service)["spec"]
    assert spec["type"] == "ClusterIP"
    assert spec["sessionAffinity"] == "None"
    assert spec["ports"] == [
        {"name": "http", "port": 80, "targetPort": 80, "protocol": "TCP"},
        {"name": "dns", "port": 53, "targetPort": "dns", "protocol": "TCP"},
    ]


def test_node_port_service_gets_an_external_traffic_policy() -> None:
    service = Service.model_validate(
        {"metadata": {"name": "web"}, "spec": {"type": "NodePort", "ports": [{"port": 80}]}}
    )
    service.apply_defaults()
    assert service.spec.external_traffic_policy == "Cluster"


def test_replica_set_defaults() -> None:
    rs = ReplicaSet.model_validate(
        {
            "metadata": {"name": "rs"},
            "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
        }
    )
    rs.apply_defaults()
    assert rs.spec.replicas == 1
    assert rs.spec.template is not None
    assert rs.spec.template.spec.restart_policy == "Always"


def test_job_defaults_and_generated_selector() -> None:
    job = Job.model_validate(
        {
            "metadata": {"name": "pi", "uid": "1234"},
            "spec": {
                "template": {
                    "spec": {"restartPolicy": "Never", "containers": [CONTAINER]},
                }
            },
        }
    )
    job.apply_defaults()
    spec = to_wire(job)["spec"]
    assert spec["parallelism"] == 1
    assert spec["completions"] == 1
    assert spec["backoffLimit"] == 6
    assert spec["completionMode"] == "NonIndexed"
    assert spec["suspend"] is False
    assert spec["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": "1234"}}
    assert spec["template"]["metadata"]["labels"] == {
        "batch.kubernetes.io/controller-uid": "1234",
        "batch.kubernetes.io/job-name": "pi",
    }


def test_hpa_defaults() -> None:
    hpa = HorizontalPodAutoscaler.model_validate(
        {
            "metadata": {"name": "web"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
            },
        }
    )
    hpa.apply_defaults()
    spec = to_wire(hpa)["spec"]
    assert spec["minReplicas"] == 1
    assert spec["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    assert spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] == 300
    assert spec["behavior"]["scaleUp"]["stabilizationWindowSeconds"] == 0


def test_secret_string_data_is_folded_into_data() -> None:
    secret = Secret.model_validate(
        {
            "metadata": {"name": "s"},
            "data": {"user": base64.b64encode(b"admin").decode()},
            "stringData": {"password": "s3cr3t", "user": "root"},
        }
    )
    secret.apply_defaults()
    wire = to_wire(secret)
    assert wire["type"] == "Opaque"
    assert "stringData" not in wire
    assert secret.decoded() == {"user": b"root", "password": b"s3cr3t"}


def test_namespace_and_function_defaults() -> None:
    ns = Namespace.model_validate({"metadata": {"name": "team-a"}})
    ns.apply_defaults()
    assert ns.status is not None and ns.status.phase == "Active"
    fn = Function.model_validate({"metadata": {"name": "hello"}, "spec": {"image": "x"}})
    fn.apply_defaults()
    assert to_wire(fn)["spec"]["scale"] == {
        "minScale": 0,
        "maxScale": 10,
        "targetConcurrency": 10,
        "scaleToZeroAfterSeconds": 60,
    }


def test_data_kinds_get_no_spec_defaults() -> None:
    cm = ConfigMap.model_validate({"metadata": {"name": "c"}, "data": {"a": "1"}})
    cm.apply_defaults()
    assert to_wire(cm) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"a": "1"},
    }


def test_percentages_scale_like_kubernetes() -> None:
    # maxSurge rounds up, maxUnavailable rounds down.
    assert scaled_value("25%", 10, round_up=True) == 3
    assert scaled_value("25%", 10, round_up=False) == 2
    assert scaled_value(2, 10, round_up=True) == 2
    assert scaled_value(None, 10, round_up=True) == 0
    assert scaled_value("0%", 10, round_up=True) == 0
