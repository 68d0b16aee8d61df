"""RBAC through the real server: user tokens bound by Roles and RoleBindings get what
Kubernetes would give them, on every kind of route (list, watch, get, create, delete,
deletecollection, subresources), and nothing else."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ApiServerProcess, unique_name
from tests.integration.auth.helpers import (
    RBAC,
    admin_create,
    binding,
    grant,
    group,
    mint_token,
    user,
)

DEPLOYMENT_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]},
    {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "get"]},
    {
        "apiGroups": [""],
        "resources": ["configmaps"],
        "resourceNames": ["shared"],
        "verbs": ["list", "watch", "delete"],
    },
    {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list"]},
    {"apiGroups": ["apps"], "resources": ["deployments/scale"], "verbs": ["get", "patch"]},
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get"]},
]


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}]
                },
            },
        },
    }


def _pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}]},
    }


@pytest.fixture
def developer(api_server: ApiServerProcess, namespace: str) -> str:
    """A user token bound in ``namespace`` to DEPLOYMENT_RULES."""
    name = unique_name("alice")
    _, token = mint_token(api_server, name, ["developers"])
    grant(api_server, namespace, user(name), DEPLOYMENT_RULES, "dev")
    admin_create(
        api_server, f"/apis/apps/v1/namespaces/{namespace}/deployments", _deployment("web")
    )
    admin_create(api_server, f"/api/v1/namespaces/{namespace}/pods", _pod("p"))
    for cm in ("shared", "private"):
        admin_create(
            api_server,
            f"/api/v1/namespaces/{namespace}/configmaps",
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": cm}},
        )
    return token


def test_a_role_allows_what_it_lists_and_nothing_else(
    api_server: ApiServerProcess, namespace: str, developer: str
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    apps = f"/apis/apps/v1/namespaces/{namespace}"
    with api_server.http(token=developer) as http:
        # reads the role grants
        assert http.get(f"{ns}/pods").status_code == 200
        assert http.get(f"{ns}/pods/p").status_code == 200
        assert http.get(f"{apps}/deployments/web").status_code == 200
        # a verb the role does not list
        denied = http.delete(f"{ns}/pods/p")
        assert denied.status_code == 403
        body = denied.json()
        assert body["kind"] == "Status" and body["reason"] == "Forbidden"
        assert 'cannot delete resource "pods"' in body["message"]
        assert f'in the namespace "{namespace}"' in body["message"]
        assert http.post(f"{ns}/pods", json=_pod("q")).status_code == 403
        assert (
            http.patch(
                f"{apps}/deployments/web",
                json={"spec": {"replicas": 3}},
                headers={"Content-Type": "application/merge-patch+json"},
            ).status_code
            == 403
        )
        # kinds the role does not name
        assert http.get(f"{ns}/secrets").status_code == 403
        assert http.get(f"{ns}/services").status_code == 403
        # the same rights do not reach other namespaces, nor the cluster scope
        assert http.get("/api/v1/namespaces/default/pods").status_code == 403
        assert http.get("/api/v1/pods").status_code == 403
        assert http.get("/api/v1/nodes").status_code == 403
        # create is allowed, deletecollection is not
        created = http.post(
            f"{ns}/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "mine"}},
        )
        assert created.status_code == 201
        assert http.delete(f"{ns}/configmaps").status_code == 403


def test_watch_is_its_own_verb(
    api_server: ApiServerProcess, namespace: str, developer: str
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    with api_server.http(token=developer) as http:
        with http.stream("GET", f"{ns}/pods?watch=1&timeoutSeconds=1") as stream:
            assert stream.status_code == 200
            first = next(stream.iter_lines())
        assert '"ADDED"' in first
        # deployments: get and list, but no watch
        watch = http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments?watch=1")
        assert watch.status_code == 403
        assert 'cannot watch resource "deployments"' in watch.json()["message"]
        assert http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments").status_code == 200


def test_subresources_are_authorized_separately(
    api_server: ApiServerProcess, namespace: str, developer: str
) -> None:
    apps = f"/apis/apps/v1/namespaces/{namespace}"
    ns = f"/api/v1/namespaces/{namespace}"
    merge = {"Content-Type": "application/merge-patch+json"}
    with api_server.http(token=developer) as http:
        # deployments/scale: get and patch are granted, update is not
        scale = http.get(f"{apps}/deployments/web/scale")
        assert scale.status_code == 200
        assert scale.json()["kind"] == "Scale"
        patched = http.patch(
            f"{apps}/deployments/web/scale", json={"spec": {"replicas": 2}}, headers=merge
        )
        assert patched.status_code == 200, patched.text
        assert patched.json()["spec"]["replicas"] == 2
        body = scale.json()
        body["spec"]["replicas"] = 3
        assert http.put(f"{apps}/deployments/web/scale", json=body).status_code == 403
        # status is a subresource of its own: holding deployments get does not grant it
        status = http.get(f"{apps}/deployments/web/status")
        assert status.status_code == 403
        assert 'resource "deployments/status"' in status.json()["message"]
        # pods/log is granted (the request gets past RBAC: the pod is on no node yet) ...
        log = http.get(f"{ns}/pods/p/log")
        assert log.status_code != 403, log.text
        assert log.json()["kind"] == "Status"
        # ... pods/exec is not
        exec_ = http.post(f"{ns}/pods/p/exec?command=true&stdout=1")
        assert exec_.status_code == 403
        assert 'resource "pods/exec"' in exec_.json()["message"]
        # eviction is "create" on pods/eviction
        evict = http.post(
            f"{ns}/pods/p/eviction",
            json={"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "p"}},
        )
        assert evict.status_code == 403


def test_a_user_without_pods_log_cannot_read_logs(
    api_server: ApiServerProcess, namespace: str
) -> None:
    name = unique_name("bob")
    _, token = mint_token(api_server, name)
    grant(
        api_server,
        namespace,
        user(name),
        [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}],
        "pods-only",
    )
    admin_create(api_server, f"/api/v1/namespaces/{namespace}/pods", _pod("p"))
    with api_server.http(token=token) as http:
        assert http.get(f"/api/v1/namespaces/{namespace}/pods/p").status_code == 200
        log = http.get(f"/api/v1/namespaces/{namespace}/pods/p/log")
    assert log.status_code == 403
    assert 'cannot get resource "pods/log"' in log.json()["message"]


def test_resource_names_limit_by_name(
    api_server: ApiServerProcess, namespace: str, developer: str
) -> None:
    ns = f"/api/v1/namespaces/{namespace}"
    with api_server.http(token=developer) as http:
        # get is granted for every configmap, list/watch/delete only for "shared"
        assert http.get(f"{ns}/configmaps/private").status_code == 200
        assert http.get(f"{ns}/configmaps").status_code == 403
        one = http.get(f"{ns}/configmaps?fieldSelector=metadata.name%3Dshared")
        assert one.status_code == 200
        assert [i["metadata"]["name"] for i in one.json()["items"]] == ["shared"]
        assert http.get(f"{ns}/configmaps?fieldSelector=metadata.name%3Dprivate").status_code == 403
        assert http.delete(f"{ns}/configmaps/private").status_code == 403
        assert http.delete(f"{ns}/configmaps/shared").status_code == 200


def test_a_namespace_is_authorized_inside_itself(
    api_server: ApiServerProcess, namespace: str, developer: str
) -> None:
    with api_server.http(token=developer) as http:
        assert http.get(f"/api/v1/namespaces/{namespace}").status_code == 200
        assert http.get("/api/v1/namespaces/default").status_code == 403
        assert http.get("/api/v1/namespaces").status_code == 403
        assert http.delete(f"/api/v1/namespaces/{namespace}").status_code == 403


def test_default_cluster_roles_bound_to_a_group_in_one_namespace(
    api_server: ApiServerProcess, namespace: str
) -> None:
    readers = unique_name("readers")
    _, token = mint_token(api_server, unique_name("reader"), [readers])
    admin_create(
        api_server,
        f"{RBAC}/namespaces/{namespace}/rolebindings",
        binding("view", "ClusterRole", "view", [group(readers)], namespace),
    )
    admin_create(
        api_server,
        f"/api/v1/namespaces/{namespace}/secrets",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}},
    )
    with api_server.http(token=token) as http:
        assert http.get(f"/apis/apps/v1/namespaces/{namespace}/deployments").status_code == 200
        assert http.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 200
        # view: no secrets, no writes, nothing outside the binding's namespace
        assert http.get(f"/api/v1/namespaces/{namespace}/secrets").status_code == 403
        assert http.get(f"/api/v1/namespaces/{namespace}/secrets/s").status_code == 403
        created = http.post(
            f"/api/v1/namespaces/{namespace}/configmaps",
            json={"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
        )
        assert created.status_code == 403
        assert http.get("/api/v1/namespaces/default/configmaps").status_code == 403
        # discovery is open to every authenticated user
        assert http.get("/api").status_code == 200
        assert http.get("/apis/apps/v1").status_code == 200
        assert http.get("/version").status_code == 200
        # the API server's own /metrics is not
        assert http.get("/metrics").status_code == 403


def test_a_cluster_role_binding_applies_everywhere(
    api_server: ApiServerProcess, namespace: str
) -> None:
    name = unique_name("ops")
    _, token = mint_token(api_server, name)
    role_name = unique_name("node-reader")
    admin_create(
        api_server,
        f"{RBAC}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": role_name},
            "rules": [
                {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list"]}
            ],
        },
    )
    with api_server.http(token=token) as http:
        assert http.get("/api/v1/nodes").status_code == 403
        admin_create(
            api_server,
            f"{RBAC}/clusterrolebindings",
            binding(role_name, "ClusterRole", role_name, [user(name)]),
        )
        assert http.get("/api/v1/nodes").status_code == 200
        assert http.get("/api/v1/pods").status_code == 200
        assert http.get(f"/api/v1/namespaces/{namespace}/pods").status_code == 200
        assert http.get(f"/api/v1/namespaces/{namespace}/configmaps").status_code == 403
        # deleting the binding takes the rights away at once
        with api_server.http() as admin:
            assert admin.delete(f"{RBAC}/clusterrolebindings/{role_name}").status_code == 200
        assert http.get("/api/v1/nodes").status_code == 403


def test_bootstrap_policy_objects_exist_and_are_marked_for_autoupdate(
    api_server: ApiServerProcess,
) -> None:
    with api_server.http() as http:
        for name in ("cluster-admin", "admin", "edit", "view", "system:discovery"):
            role = http.get(f"{RBAC}/clusterroles/{name}")
            assert role.status_code == 200, name
            annotations = role.json()["metadata"]["annotations"]
            assert annotations["rbac.authorization.kubernetes.io/autoupdate"] == "true"
        masters = http.get(f"{RBAC}/clusterrolebindings/cluster-admin").json()
    assert {"kind": "Group", "name": "system:masters", "apiGroup": "rbac.authorization.k8s.io"} in (
        masters["subjects"]
    )
