"""The Node authorizer through the real server: a node's token (system:node:<name> in
system:nodes) reads the Secrets and ConfigMaps that pods bound to it use, and requests tokens
for their service accounts; anything else of those kinds is a 403 Status naming the node,
whatever RBAC says. A pod bound a moment ago counts at once; a deleted one no longer does."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from kumo.client import Client
from tests.conftest import ApiServerProcess, component_config, unique_name
from tests.integration.auth.helpers import RBAC, admin_create

AUTHZ = "/apis/authorization.k8s.io/v1"


def _obj(kind: str, name: str, **rest: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": kind, "metadata": {"name": name}, **rest}


def _pod(name: str, node: str, **spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schedulerName": "nobody",  # no scheduler or agent picks these up
        "automountServiceAccountToken": False,
        "containers": [{"name": "c", "image": "docker.io/library/busybox:latest"}],
        **spec,
    }
    if node:
        body["nodeName"] = node
    return _obj("Pod", name, spec=body)


def _forbidden(response: httpx.Response, node: str) -> str:
    assert response.status_code == 403, response.text
    body = response.json()
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Forbidden", 403)
    message = str(body["message"])
    assert f'User "system:node:{node}"' in message, message
    assert f"no relationship found between node '{node}' and this object" in message, message
    return message


def _token_request(pod: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if pod:
        spec["boundObjectRef"] = {"kind": "Pod", "apiVersion": "v1", "name": pod}
    return {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}


@pytest.fixture
def cluster(api_server: ApiServerProcess) -> Iterator[tuple[str, str, str]]:
    """(namespace, this node, another node): secrets ``volume``, ``env``, ``pull``,
    ``theirs`` and ``other``, ConfigMap ``settings``, accounts ``app`` and ``admin``; pod
    ``here`` on this node uses the first three, ``settings`` and ``app``, pod ``there`` on the
    other node uses ``theirs``."""
    ns, mine, theirs = unique_name("nodeauthz"), unique_name("n1"), unique_name("n2")
    admin_create(api_server, "/api/v1/namespaces", _obj("Namespace", ns))
    base = f"/api/v1/namespaces/{ns}"
    for name in ("volume", "env", "pull", "theirs", "other"):
        admin_create(api_server, f"{base}/secrets", _obj("Secret", name, data={}))
    admin_create(api_server, f"{base}/configmaps", _obj("ConfigMap", "settings", data={"a": "b"}))
    for account in ("app", "admin"):
        admin_create(api_server, f"{base}/serviceaccounts", _obj("ServiceAccount", account))
    here = _pod(
        "here",
        mine,
        serviceAccountName="app",
        imagePullSecrets=[{"name": "pull"}],
        volumes=[
            {"name": "v", "secret": {"secretName": "volume"}},
            {"name": "gone", "secret": {"secretName": "missing", "optional": True}},
        ],
    )
    here["spec"]["containers"][0]["env"] = [
        {"name": "E", "valueFrom": {"secretKeyRef": {"name": "env", "key": "k"}}}
    ]
    here["spec"]["containers"][0]["envFrom"] = [{"configMapRef": {"name": "settings"}}]
    admin_create(api_server, f"{base}/pods", here)
    there = _pod("there", theirs, volumes=[{"name": "v", "secret": {"secretName": "theirs"}}])
    admin_create(api_server, f"{base}/pods", there)
    yield ns, mine, theirs


def _as_node(api_server: ApiServerProcess, node: str) -> httpx.Client:
    token = component_config(api_server.client_config(), "node", node).token
    return api_server.http(token=token)


def test_a_node_reads_only_what_its_pods_use(
    api_server: ApiServerProcess, cluster: tuple[str, str, str]
) -> None:
    ns, mine, _ = cluster
    base = f"/api/v1/namespaces/{ns}"
    with _as_node(api_server, mine) as http:
        for path in ("secrets/volume", "secrets/env", "secrets/pull", "configmaps/settings"):
            response = http.get(f"{base}/{path}")
            assert response.status_code == 200, (path, response.text)
        # an optional secret that does not exist: the node may look, and learns it is absent
        assert http.get(f"{base}/secrets/missing").status_code == 404
        # a watch of one name (fieldSelector metadata.name), as a kubelet may watch
        watch = http.get(
            f"{base}/secrets",
            params={"watch": "1", "fieldSelector": "metadata.name=volume", "timeoutSeconds": "1"},
        )
        assert watch.status_code == 200, watch.text
        assert http.get(f"{base}/serviceaccounts/app").status_code == 200
        token = http.post(f"{base}/serviceaccounts/app/token", json=_token_request("here"))
        assert token.status_code == 201, token.text

        # not another secret, nor one only a pod on another node uses
        message = _forbidden(http.get(f"{base}/secrets/other"), mine)
        assert message.startswith('secrets "other" is forbidden: ')
        _forbidden(http.get(f"{base}/secrets/theirs"), mine)
        _forbidden(http.get("/api/v1/namespaces/default/secrets/volume"), mine)
        # not a token for an account no pod on the node runs as
        _forbidden(http.post(f"{base}/serviceaccounts/admin/token", json=_token_request()), mine)
        # no enumeration, no writes
        listed = http.get(f"{base}/secrets")
        assert listed.status_code == 403 and "No Object name found" in listed.json()["message"]
        assert http.get("/api/v1/secrets").status_code == 403
        write = http.put(f"{base}/secrets/volume", json=_obj("Secret", "volume", data={}))
        assert write.status_code == 403
        assert "can only read resources of this type" in write.json()["message"]
        # the rest is RBAC's: its pods, as before
        pods = http.get("/api/v1/pods", params={"fieldSelector": f"spec.nodeName={mine}"})
        assert pods.status_code == 200
        assert [p["metadata"]["name"] for p in pods.json()["items"]] == ["here"]


def test_the_relationship_follows_binding_and_deletion(
    api_server: ApiServerProcess, cluster: tuple[str, str, str]
) -> None:
    ns, mine, _ = cluster
    base = f"/api/v1/namespaces/{ns}"
    admin_create(
        api_server,
        f"{base}/pods",
        _pod("late", "", volumes=[{"name": "v", "secret": {"secretName": "other"}}]),
    )
    with _as_node(api_server, mine) as http, api_server.http() as admin:
        _forbidden(http.get(f"{base}/secrets/other"), mine)  # not bound yet
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "late"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": mine},
        }
        bound = admin.post(f"{base}/pods/late/binding", json=binding)
        assert bound.status_code == 201, bound.text
        assert http.get(f"{base}/secrets/other").status_code == 200  # at once
        deleted = admin.delete(f"{base}/pods/late", params={"gracePeriodSeconds": "0"})
        assert deleted.status_code == 200, deleted.text
        _forbidden(http.get(f"{base}/secrets/other"), mine)


def test_rbac_cannot_widen_what_a_node_reads(
    api_server: ApiServerProcess, cluster: tuple[str, str, str]
) -> None:
    """As ``--authorization-mode=Node,RBAC``: the Node authorizer decides a node's secret
    reads, even when a binding would grant more; a node of unknown name gets none."""
    ns, mine, _ = cluster
    name = unique_name("nodes-view-secrets")
    admin_create(
        api_server,
        f"{RBAC}/clusterroles",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
        },
    )
    admin_create(
        api_server,
        f"{RBAC}/namespaces/{ns}/rolebindings",
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": name, "namespace": ns},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "system:nodes"}
            ],
        },
    )
    with _as_node(api_server, mine) as http:
        _forbidden(http.get(f"/api/v1/namespaces/{ns}/secrets/other"), mine)
    with Client(api_server.client_config()) as admin:
        review = admin.request(
            "POST",
            f"{AUTHZ}/subjectaccessreviews",
            body={
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SubjectAccessReview",
                "spec": {
                    "user": f"system:node:{mine}",
                    "groups": ["system:nodes"],
                    "resourceAttributes": {
                        "verb": "get",
                        "resource": "secrets",
                        "namespace": ns,
                        "name": "volume",
                    },
                },
            },
        ).json()
        assert review["status"]["allowed"] is True
        response = admin.request(
            "POST",
            "/apis/kumo.dev/v1/usertokens",
            body={
                "apiVersion": "kumo.dev/v1",
                "kind": "UserToken",
                "spec": {"user": "rogue", "groups": ["system:nodes"]},
            },
        )
    with api_server.http(token=response.json()["status"]["token"]) as rogue:
        denied = rogue.get(f"/api/v1/namespaces/{ns}/secrets/volume")
        assert denied.status_code == 403
        assert 'unknown node for user "rogue"' in denied.json()["message"]
