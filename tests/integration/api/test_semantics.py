"""API semantics beyond plain CRUD: status and scale subresources, generation, finalizers,
dryRun, fieldValidation and Warning headers, discovery, namespaces."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.client import ApiException, Client
from kumo.client.client import JSON_PATCH
from tests.conftest import ApiServerProcess, kind_info, unique_name
from tests.integration.api.test_crud import config_map, deployment

CM = kind_info("v1", "ConfigMap")
DEPLOY = kind_info("apps/v1", "Deployment")
NS = kind_info("v1", "Namespace")


# ---- status -----------------------------------------------------------------------------


def test_put_on_the_main_resource_cannot_change_status(client: Client, namespace: str) -> None:
    created = client.create_raw(deployment("st"))
    replaced = client.replace_raw({**created, "status": {"replicas": 42, "readyReplicas": 42}})
    assert replaced["status"] == created["status"]
    patched = client.patch_raw(DEPLOY, "st", {"status": {"replicas": 42}})
    assert patched["status"] == created["status"]


def test_put_on_status_cannot_change_spec_or_generation(client: Client, namespace: str) -> None:
    created = client.create_raw(deployment("st2", replicas=2))
    body = {
        **created,
        "spec": {**created["spec"], "replicas": 9},
        "metadata": {**created["metadata"], "labels": {"changed": "yes"}},
        "status": {"replicas": 2, "readyReplicas": 1, "observedGeneration": 1},
    }
    updated = client.replace_raw(body, sub="status")
    assert updated["status"] == {"replicas": 2, "readyReplicas": 1, "observedGeneration": 1}
    assert updated["spec"]["replicas"] == 2
    assert updated["metadata"]["labels"] == created["metadata"]["labels"]
    assert updated["metadata"]["generation"] == 1
    stored = client.get_raw(DEPLOY, "st2")
    assert stored == updated
    assert client.get_raw(DEPLOY, "st2", sub="status") == stored


def test_patch_on_status(client: Client, namespace: str) -> None:
    client.create_raw(deployment("st3"))
    patched = client.patch_raw(
        DEPLOY, "st3", {"status": {"availableReplicas": 1}, "spec": {"replicas": 7}}, sub="status"
    )
    assert patched["status"]["availableReplicas"] == 1
    assert patched["spec"]["replicas"] == 2


def test_status_write_with_a_stale_resource_version_conflicts(
    client: Client, namespace: str
) -> None:
    created = client.create_raw(deployment("st4"))
    client.patch_raw(DEPLOY, "st4", {"spec": {"replicas": 3}})
    with pytest.raises(ApiException) as caught:
        client.replace_raw({**created, "status": {"replicas": 1}}, sub="status")
    assert caught.value.code == 409


# ---- scale ------------------------------------------------------------------------------


def test_scale_subresource(client: Client, namespace: str) -> None:
    client.create_raw(deployment("sc", replicas=2))
    scale = client.get_raw(DEPLOY, "sc", sub="scale")
    assert scale["kind"] == "Scale"
    assert scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"]["selector"] == "app=sc"
    assert scale["metadata"]["name"] == "sc"

    scale["spec"]["replicas"] = 5
    updated = client.request("PUT", DEPLOY.path(namespace, "sc", "scale"), body=scale).json()
    assert updated["spec"]["replicas"] == 5
    stored = client.get_raw(DEPLOY, "sc")
    assert stored["spec"]["replicas"] == 5
    assert stored["metadata"]["generation"] == 2

    patched = client.patch_raw(DEPLOY, "sc", {"spec": {"replicas": 1}}, sub="scale")
    assert patched["kind"] == "Scale"
    assert patched["spec"]["replicas"] == 1
    assert client.get_raw(DEPLOY, "sc")["spec"]["replicas"] == 1

    # The old resourceVersion is stale now.
    with pytest.raises(ApiException) as stale:
        client.request("PUT", DEPLOY.path(namespace, "sc", "scale"), body=scale)
    assert stale.value.code == 409
    scale["metadata"].pop("resourceVersion")
    scale["spec"]["replicas"] = -1
    with pytest.raises(ApiException) as negative:
        client.request("PUT", DEPLOY.path(namespace, "sc", "scale"), body=scale)
    assert negative.value.code == 422
    assert "spec.replicas" in negative.value.message


def test_scale_of_a_kind_without_it_is_not_found(client: Client, namespace: str) -> None:
    client.create_raw(config_map("noscale"))
    with pytest.raises(ApiException) as caught:
        client.request("GET", CM.path(namespace, "noscale", "scale"))
    assert caught.value.code == 404
    assert caught.value.status["kind"] == "Status"


# ---- finalizers -----------------------------------------------------------------------------


def test_delete_waits_for_finalizers(client: Client, namespace: str) -> None:
    client.create_raw(config_map("fin", finalizers=["example.com/hold", "example.com/other"]))
    deleting = client.delete_raw(CM, "fin")
    assert deleting["metadata"]["deletionTimestamp"]
    live = client.get_raw(CM, "fin")
    assert live["metadata"]["deletionTimestamp"] == deleting["metadata"]["deletionTimestamp"]
    assert live["metadata"]["finalizers"] == ["example.com/hold", "example.com/other"]

    # Deleting again changes nothing; adding a finalizer is refused.
    assert client.delete_raw(CM, "fin")["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as caught:
        client.patch_raw(
            CM,
            "fin",
            {"metadata": {"finalizers": ["example.com/hold", "example.com/other", "x.io/y"]}},
        )
    assert caught.value.code == 422
    assert "no new finalizers can be added" in caught.value.message
    # Other writes are still allowed while it waits.
    assert client.patch_raw(CM, "fin", {"data": {"still": "writable"}})["data"]["still"] == (
        "writable"
    )

    client.patch_raw(CM, "fin", {"metadata": {"finalizers": ["example.com/other"]}})
    assert client.get_raw(CM, "fin")["metadata"]["finalizers"] == ["example.com/other"]
    client.patch_raw(
        CM, "fin", [{"op": "remove", "path": "/metadata/finalizers"}], patch_type=JSON_PATCH
    )
    with pytest.raises(ApiException) as gone:
        client.get_raw(CM, "fin")
    assert gone.value.code == 404


def test_delete_with_preconditions(client: Client, namespace: str) -> None:
    obj = client.create_raw(config_map("pre"))
    client.patch_raw(CM, "pre", {"data": {"x": "1"}})
    with pytest.raises(ApiException) as caught:
        client.request(
            "DELETE",
            CM.path(namespace, "pre"),
            body={"preconditions": {"resourceVersion": obj["metadata"]["resourceVersion"]}},
        )
    assert caught.value.code == 409
    with pytest.raises(ApiException) as uid:
        client.request("DELETE", CM.path(namespace, "pre"), body={"preconditions": {"uid": "x"}})
    assert uid.value.code == 409
    client.request(
        "DELETE", CM.path(namespace, "pre"), body={"preconditions": {"uid": obj["metadata"]["uid"]}}
    )


def test_delete_collection_by_label(client: Client, namespace: str) -> None:
    for i in range(3):
        client.create_raw(config_map(f"dc-{i}", labels={"batch": "a" if i < 2 else "b"}))
    response = client.request("DELETE", CM.path(namespace), params={"labelSelector": "batch=a"})
    assert sorted(i["metadata"]["name"] for i in response.json()["items"]) == ["dc-0", "dc-1"]
    assert [i["metadata"]["name"] for i in client.list_raw(CM)["items"]] == ["dc-2"]


# ---- dryRun -------------------------------------------------------------------------------


def test_dry_run_writes_nothing(client: Client, namespace: str) -> None:
    preview = client.create_raw(config_map("dry"), dry_run=True)
    assert preview["metadata"]["name"] == "dry"
    assert preview["metadata"]["uid"]
    with pytest.raises(ApiException):
        client.get_raw(CM, "dry")

    stored = client.create_raw(config_map("dry", {"v": "1"}))
    params = {"dryRun": "All"}
    put = client.request(
        "PUT", CM.path(namespace, "dry"), body={**stored, "data": {"v": "2"}}, params=params
    ).json()
    assert put["data"] == {"v": "2"}
    patch = client.request(
        "PATCH",
        CM.path(namespace, "dry"),
        body={"data": {"v": "3"}},
        params=params,
        content_type="application/merge-patch+json",
    ).json()
    assert patch["data"] == {"v": "3"}
    client.request("DELETE", CM.path(namespace, "dry"), params=params)
    assert client.get_raw(CM, "dry") == stored

    # dryRun still validates.
    with pytest.raises(ApiException) as caught:
        client.create_raw(config_map("Bad_Name"), dry_run=True)
    assert caught.value.code == 422


# ---- fieldValidation and warnings ------------------------------------------------------------


def test_unknown_fields_warn_by_default_and_fail_when_strict(
    api_server: ApiServerProcess, namespace: str
) -> None:
    body = config_map("fv")
    body["surprise"] = {"x": 1}
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    with api_server.http() as http:
        strict = http.post(path, json=body, params={"fieldValidation": "Strict"})
        assert strict.status_code == 400
        assert strict.json()["kind"] == "Status"
        assert 'unknown field "surprise"' in strict.json()["message"]

        warned = http.post(path, json=body)
        assert warned.status_code == 201
        warning = warned.headers.get("warning", "")
        assert warning.startswith("299 - ")
        assert 'unknown field \\"surprise\\"' in warning
        assert warned.json()["surprise"] == {"x": 1}  # kept, not silently dropped

        body["metadata"]["name"] = "fv-ignored"
        ignored = http.post(path, json=body, params={"fieldValidation": "Ignore"})
        assert ignored.status_code == 201
        assert "warning" not in ignored.headers


def test_client_hands_warnings_to_its_callback(
    api_server: ApiServerProcess, namespace: str
) -> None:
    seen: list[str] = []
    with Client(api_server.client_config(namespace), on_warning=seen.append) as client:
        body = config_map("cb")
        body["spec"] = {"nope": True}
        client.create_raw(body)
    assert len(seen) == 1
    assert 'unknown field "spec"' in seen[0]


# ---- discovery -------------------------------------------------------------------------------


def test_discovery(client: Client) -> None:
    api = client.request("GET", "/api").json()
    assert api["kind"] == "APIVersions"
    assert api["versions"] == ["v1"]

    apis = client.request("GET", "/apis").json()
    assert apis["kind"] == "APIGroupList"
    groups = {g["name"]: g["preferredVersion"]["groupVersion"] for g in apis["groups"]}
    assert groups == {
        "apps": "apps/v1",
        "batch": "batch/v1",
        "coordination.k8s.io": "coordination.k8s.io/v1",
        "rbac.authorization.k8s.io": "rbac.authorization.k8s.io/v1",
        "autoscaling": "autoscaling/v2",
        "policy": "policy/v1",
        "kumo.dev": "kumo.dev/v1",
        # served without storage: access reviews, token reviews (kumo.platform.api.reviews)
        "authentication.k8s.io": "authentication.k8s.io/v1",
        "authorization.k8s.io": "authorization.k8s.io/v1",
        # read from the node agents (kumo.platform.api.resourcemetrics)
        "metrics.k8s.io": "metrics.k8s.io/v1beta1",
    }

    core = client.request("GET", "/api/v1").json()
    assert core["kind"] == "APIResourceList"
    assert core["groupVersion"] == "v1"
    by_name = {r["name"]: r for r in core["resources"]}
    for name in (
        "pods",
        "pods/status",
        "pods/binding",
        "services",
        "configmaps",
        "secrets",
        "namespaces",
        "nodes",
        "endpoints",
        "events",
        "serviceaccounts",
    ):
        assert name in by_name, name
    assert by_name["pods"]["namespaced"] is True
    assert by_name["pods"]["kind"] == "Pod"
    assert "po" in by_name["pods"]["shortNames"]
    assert by_name["nodes"]["namespaced"] is False
    assert set(by_name["configmaps"]["verbs"]) >= {"create", "get", "list", "watch", "patch"}

    apps = client.request("GET", "/apis/apps/v1").json()
    names = {r["name"]: r for r in apps["resources"]}
    assert set(names) == {
        "deployments",
        "deployments/status",
        "deployments/scale",
        "replicasets",
        "replicasets/status",
        "replicasets/scale",
    }
    assert names["deployments/scale"]["kind"] == "Scale"
    assert names["deployments/scale"]["group"] == "autoscaling"

    version = client.request("GET", "/version").json()
    assert version["gitVersion"].startswith("v")


def test_openapi_document_covers_every_kind(client: Client) -> None:
    document = client.request("GET", "/openapi/v3").json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    assert "/api/v1/namespaces/{namespace}/pods/{name}" in paths
    assert "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale" in paths
    assert "/apis/kumo.dev/v1/namespaces/{namespace}/functions" in paths
    assert "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}" in paths


# ---- namespaces ------------------------------------------------------------------------------


def test_namespaced_object_in_a_missing_namespace_is_not_found(client: Client) -> None:
    missing = unique_name("missing")
    with pytest.raises(ApiException) as caught:
        client.create_raw(config_map("orphan"), namespace=missing)
    assert caught.value.code == 404
    assert caught.value.message == f'namespaces "{missing}" not found'


def test_terminating_namespace_refuses_new_objects(client: Client) -> None:
    name = unique_name("doomed")
    client.create_raw({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    client.create_raw(config_map("before"), namespace=name)
    deleting = client.delete_raw(NS, name)
    assert deleting["status"]["phase"] == "Terminating"
    assert deleting["metadata"]["deletionTimestamp"]
    with pytest.raises(ApiException) as caught:
        client.create_raw(config_map("after"), namespace=name)
    assert caught.value.code == 403
    assert "being terminated" in caught.value.message
    # What was there stays readable until the namespace is finalized.
    assert client.get_raw(CM, "before", name)["metadata"]["name"] == "before"


def test_namespace_names_are_dns_labels(client: Client) -> None:
    with pytest.raises(ApiException) as caught:
        client.create_raw(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "has.dots"}}
        )
    assert caught.value.code == 422
    assert "metadata.name" in caught.value.message


def _names(items: list[dict[str, Any]]) -> list[str]:
    return [i["metadata"]["name"] for i in items]


def test_bootstrap_namespaces_exist(client: Client) -> None:
    names = _names(client.list_raw(NS)["items"])
    assert {"default", "kube-system", "kumo-system"} <= set(names)
