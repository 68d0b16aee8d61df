"""What an update may not change, per kind (``Resource.validate_update``), worded as
Kubernetes words it."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from kumo.model import (
    ClusterRoleBinding,
    ConfigMap,
    Deployment,
    Job,
    Node,
    Pod,
    ReplicaSet,
    Resource,
    RoleBinding,
    Secret,
    Service,
)
from kumo.model.core import POD_UPDATE_FORBIDDEN

TEMPLATE: dict[str, Any] = {
    "metadata": {"labels": {"app": "web"}},
    "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
}


def update(model: type[Resource], old: dict[str, Any], **changes: Any) -> list[tuple[str, str]]:
    """validate_update of ``old`` changed by ``changes`` (dotted paths -> new values)."""
    new = copy.deepcopy(old)
    for path, value in changes.items():
        *parents, last = path.split("__")
        node = new
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is None:
            node.pop(last, None)
        elif isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    before, after = model.model_validate(old), model.model_validate(new)
    before.apply_defaults()
    after.apply_defaults()
    return after.validate_update(before)


@pytest.mark.parametrize("model", [Deployment, ReplicaSet])
def test_workload_selectors_are_immutable(model: type[Resource]) -> None:
    old = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": TEMPLATE},
    }
    assert update(model, old, spec__replicas=5) == []
    assert (
        update(model, old, spec__template__spec__containers=[{"name": "web", "image": "x"}]) == []
    )
    problems = update(model, old, spec__selector={"matchLabels": {"app": "web", "v": "2"}})
    assert problems == [
        (
            "spec.selector",
            'Invalid value: {"matchLabels":{"app":"web","v":"2"}}: field is immutable',
        )
    ]


def test_job_selector_template_and_completion_mode_are_immutable() -> None:
    old = {
        "metadata": {"name": "pi", "uid": "u-1"},
        "spec": {
            "template": {
                "spec": {"restartPolicy": "Never", "containers": [{"name": "pi", "image": "perl"}]}
            }
        },
    }
    assert update(Job, old, spec__parallelism=3, spec__suspend=True) == []
    image_change = update(
        Job,
        old,
        spec__template__spec__containers=[{"name": "pi", "image": "perl:2"}],
    )
    assert [p for p, _ in image_change] == ["spec.template"]
    assert image_change[0][1].endswith("field is immutable")
    selector_change = update(
        Job, old, spec__manualSelector=True, spec__selector={"matchLabels": {"x": "y"}}
    )
    assert "spec.selector" in [p for p, _ in selector_change]
    assert [p for p, _ in update(Job, old, spec__completionMode="Indexed")] == [
        "spec.completionMode"
    ]


IMMUTABLE_WHEN_SET = "Forbidden: field is immutable when `immutable` is set"


def test_immutable_config_map_cannot_change_its_data_or_become_mutable() -> None:
    mutable = {"metadata": {"name": "c"}, "data": {"a": "1"}}
    assert update(ConfigMap, mutable, data={"a": "2"}) == []
    assert update(ConfigMap, mutable, immutable=True) == []
    frozen = {**mutable, "immutable": True, "binaryData": {"b": "MQ=="}}
    assert update(ConfigMap, frozen, metadata={"name": "c", "labels": {"x": "y"}}) == []
    assert update(ConfigMap, frozen, data={"a": "2"}) == [("data", IMMUTABLE_WHEN_SET)]
    assert update(ConfigMap, frozen, binaryData={"b": "Mg=="}) == [
        ("binaryData", IMMUTABLE_WHEN_SET)
    ]
    assert update(ConfigMap, frozen, immutable=False) == [("immutable", IMMUTABLE_WHEN_SET)]
    assert update(ConfigMap, frozen, immutable=None) == [("immutable", IMMUTABLE_WHEN_SET)]


def test_immutable_secret_and_secret_type() -> None:
    mutable = {"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "MQ=="}}
    assert update(Secret, mutable, data={"a": "Mg=="}) == []
    assert update(Secret, mutable, type="kubernetes.io/tls") == [
        ("type", 'Invalid value: "kubernetes.io/tls": field is immutable')
    ]
    frozen = {**mutable, "immutable": True}
    assert update(Secret, frozen, data={"a": "Mg=="}) == [("data", IMMUTABLE_WHEN_SET)]
    # stringData is folded into data, so it cannot sneak a change past an immutable Secret.
    assert update(Secret, frozen, stringData={"a": "new"}) == [("data", IMMUTABLE_WHEN_SET)]
    assert update(Secret, frozen, immutable=False) == [("immutable", IMMUTABLE_WHEN_SET)]


SERVICE: dict[str, Any] = {
    "metadata": {"name": "web"},
    "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}], "clusterIP": "10.96.0.10"},
}


def test_service_cluster_ip_is_immutable_once_set_but_type_may_change() -> None:
    assert update(Service, SERVICE, spec__type="NodePort") == []
    assert update(Service, SERVICE, spec__ports=[{"port": 81}]) == []
    assert update(Service, SERVICE, spec__clusterIP="10.96.0.11") == [
        ("spec.clusterIP", 'Invalid value: "10.96.0.11": field is immutable')
    ]
    # Switching to ExternalName releases the IP, as in Kubernetes.
    assert (
        update(
            Service,
            SERVICE,
            spec__type="ExternalName",
            spec__clusterIP=None,
            spec__externalName="db.example.com",
        )
        == []
    )
    unset = {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    assert update(Service, unset, spec__clusterIP="10.96.0.12") == []
    with_ips = copy.deepcopy(SERVICE)
    with_ips["spec"]["clusterIPs"] = ["10.96.0.10"]
    assert [p for p, _ in update(Service, with_ips, spec__clusterIPs=["10.96.0.99"])] == [
        "spec.clusterIPs[0]"
    ]


@pytest.mark.parametrize("model", [RoleBinding, ClusterRoleBinding])
def test_role_ref_cannot_change(model: type[Resource]) -> None:
    old = {
        "metadata": {"name": "b"},
        "subjects": [{"kind": "User", "name": "jane"}],
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
    }
    assert update(model, old, subjects=[{"kind": "User", "name": "joe"}]) == []
    problems = update(
        model,
        old,
        roleRef={"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
    )
    assert len(problems) == 1
    assert problems[0][0] == "roleRef"
    assert problems[0][1].endswith("cannot change roleRef")


POD: dict[str, Any] = {
    "metadata": {"name": "p"},
    "spec": {
        "containers": [{"name": "web", "image": "nginx:1"}],
        "initContainers": [{"name": "init", "image": "busybox:1"}],
        "tolerations": [{"key": "a", "operator": "Exists"}],
        "activeDeadlineSeconds": 100,
    },
}


def test_pod_allows_only_kubernetes_listed_changes() -> None:
    assert update(Pod, POD, metadata={"name": "p", "labels": {"new": "label"}}) == []
    assert update(Pod, POD, spec__containers=[{"name": "web", "image": "nginx:2"}]) == []
    assert update(Pod, POD, spec__initContainers=[{"name": "init", "image": "busybox:2"}]) == []
    assert update(Pod, POD, spec__activeDeadlineSeconds=50) == []
    assert (
        update(
            Pod,
            POD,
            spec__tolerations=[
                {"key": "a", "operator": "Exists"},
                {"key": "b", "operator": "Exists"},
            ],
        )
        == []
    )


@pytest.mark.parametrize(
    ("change", "changed_field"),
    [
        ({"spec__containers": [{"name": "web", "image": "nginx:1", "args": ["x"]}]}, "containers"),
        ({"spec__restartPolicy": "Never"}, "restartPolicy"),
        ({"spec__nodeName": "node-a"}, "nodeName"),
        ({"spec__terminationGracePeriodSeconds": 5}, "terminationGracePeriodSeconds"),
        ({"spec__volumes": [{"name": "v", "emptyDir": {}}]}, "volumes"),
        (
            {
                "spec__containers": [
                    {"name": "web", "image": "nginx:1"},
                    {"name": "extra", "image": "x"},
                ]
            },
            "containers",
        ),
    ],
)
def test_pod_spec_is_otherwise_frozen(change: dict[str, Any], changed_field: str) -> None:
    problems = update(Pod, POD, **change)
    assert len(problems) == 1
    path, message = problems[0]
    assert path == "spec"
    assert message.startswith(f"Forbidden: {POD_UPDATE_FORBIDDEN}")
    assert f"spec.{changed_field}" in message


def test_pod_active_deadline_may_only_shrink() -> None:
    assert update(Pod, POD, spec__activeDeadlineSeconds=200) == [
        (
            "spec.activeDeadlineSeconds",
            "Invalid value: 200: must be less than or equal to previous value",
        )
    ]
    assert update(Pod, POD, spec__activeDeadlineSeconds=None) == [
        (
            "spec.activeDeadlineSeconds",
            "Invalid value: null: must not update from a positive integer to nil value",
        )
    ]
    unset = copy.deepcopy(POD)
    del unset["spec"]["activeDeadlineSeconds"]
    assert update(Pod, unset, spec__activeDeadlineSeconds=30) == []


def test_pod_tolerations_may_only_be_added() -> None:
    problems = update(Pod, POD, spec__tolerations=[{"key": "b", "operator": "Exists"}])
    assert problems == [
        (
            "spec.tolerations[0]",
            "Forbidden: existing toleration can not be modified except its tolerationSeconds",
        )
    ]


def test_node_pod_cidr_and_provider_id_are_set_once() -> None:
    old = {"metadata": {"name": "n"}, "spec": {}}
    assert update(Node, old, spec__podCIDR="10.0.0.0/24", spec__providerID="kumo://n") == []
    assert update(Node, old, spec__unschedulable=True) == []
    set_once = {
        "metadata": {"name": "n"},
        "spec": {"podCIDR": "10.0.0.0/24", "podCIDRs": ["10.0.0.0/24"], "providerID": "kumo://n"},
    }
    assert update(Node, set_once, spec__taints=[{"key": "k", "effect": "NoSchedule"}]) == []
    problems = update(
        Node,
        set_once,
        spec__podCIDR="10.0.1.0/24",
        spec__podCIDRs=["10.0.1.0/24"],
        spec__providerID="kumo://m",
    )
    assert sorted(p for p, _ in problems) == ["spec.podCIDR", "spec.podCIDRs", "spec.providerID"]
    assert all("node updates may not change" in m for _, m in problems)
