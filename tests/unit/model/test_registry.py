"""The registry of served kinds: lookup by kind, path and what users type."""

from __future__ import annotations

import pytest

from kumo.model.registry import RESOURCES, by_kind, by_path, resolve, serves


@pytest.mark.parametrize(
    ("typed", "kinds"),
    [
        ("deploy", ["Deployment"]),
        ("deployments", ["Deployment"]),
        ("Deployment", ["Deployment"]),
        ("deployments.apps", ["Deployment"]),
        ("deployment.apps", ["Deployment"]),
        ("po", ["Pod"]),
        ("svc", ["Service"]),
        ("cm", ["ConfigMap"]),
        ("hpa", ["HorizontalPodAutoscaler"]),
        ("fn", ["Function"]),
        ("clusterrolebindings", ["ClusterRoleBinding"]),
        ("rolebindings.rbac.authorization.k8s.io", ["RoleBinding"]),
        ("rolebindings.rbac", ["RoleBinding"]),
        ("widgets", []),
        ("deployments.batch", []),
    ],
)
def test_resolve_what_users_type(typed: str, kinds: list[str]) -> None:
    assert [r.kind for r in resolve(typed)] == kinds


def test_all_is_the_workload_category() -> None:
    assert {r.kind for r in resolve("all")} >= {"Pod", "Service", "Deployment", "ReplicaSet"}
    assert "Secret" not in {r.kind for r in resolve("all")}


def test_every_kind_is_found_by_kind_and_by_path() -> None:
    for info in RESOURCES:
        assert by_kind(info.api_version, info.kind) is info
        assert by_path(info.group, info.version, info.plural) is info
        assert serves(info.group, info.version)
    assert by_kind("apps/v1beta1", "Deployment") is None
    assert not serves("apps", "v2")
    assert not serves("", "v2")


def test_names_kubectl_prints() -> None:
    deployments = by_kind("apps/v1", "Deployment")
    pods = by_kind("v1", "Pod")
    assert deployments is not None and pods is not None
    assert deployments.kind_group == "deployment.apps"
    assert deployments.group_resource == "deployments.apps"
    assert pods.kind_group == "pod"
    assert deployments.path("ns", "web", "scale") == (
        "/apis/apps/v1/namespaces/ns/deployments/web/scale"
    )
    assert pods.path(None) == "/api/v1/pods"
