"""The REST verbs against the real API server: create, get, list, replace, the three patch
types, delete, and the errors each gives."""

from __future__ import annotations

from typing import Any

import pytest

from kumo.client import ApiException, Client
from kumo.client.client import JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH
from tests.conftest import ApiServerProcess, kind_info

CM = kind_info("v1", "ConfigMap")
DEPLOY = kind_info("apps/v1", "Deployment")


def config_map(name: str, data: dict[str, str] | None = None, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, **meta},
        "data": data if data is not None else {"key": "value"},
    }


def deployment(name: str, image: str = "nginx:1.27", replicas: int = 2) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": image,
                            "env": [{"name": "A", "value": "1"}],
                            "ports": [{"containerPort": 80}],
                        }
                    ]
                },
            },
        },
    }


def test_create_get_list_delete(client: Client, namespace: str) -> None:
    created = client.create_raw(config_map("settings", labels={"app": "web"}))
    meta = created["metadata"]
    assert meta["namespace"] == namespace
    assert meta["uid"]
    assert int(meta["resourceVersion"]) > 0
    assert meta["creationTimestamp"].endswith("Z")
    assert created["data"] == {"key": "value"}

    fetched = client.get_raw(CM, "settings")
    assert fetched == created

    client.create_raw(config_map("other"))
    listed = client.list_raw(CM)
    assert listed["kind"] == "ConfigMapList"
    assert listed["apiVersion"] == "v1"
    assert int(listed["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    assert [i["metadata"]["name"] for i in listed["items"]] == ["other", "settings"]
    assert [
        i["metadata"]["name"] for i in client.list_raw(CM, label_selector="app=web")["items"]
    ] == ["settings"]
    assert [
        i["metadata"]["name"]
        for i in client.list_raw(CM, field_selector="metadata.name=other")["items"]
    ] == ["other"]

    deleted = client.delete_raw(CM, "settings")
    assert deleted["metadata"]["uid"] == meta["uid"]
    assert int(deleted["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])
    with pytest.raises(ApiException) as caught:
        client.get_raw(CM, "settings")
    assert caught.value.code == 404
    assert caught.value.status["kind"] == "Status"
    assert caught.value.status["reason"] == "NotFound"
    assert caught.value.message == 'configmaps "settings" not found'
    with pytest.raises(ApiException) as again:
        client.delete_raw(CM, "settings")
    assert again.value.code == 404


def test_list_across_namespaces(client: Client, namespace: str) -> None:
    client.create_raw(config_map("everywhere", labels={"probe": namespace}))
    items = client.list_raw(CM, all_namespaces=True, label_selector=f"probe={namespace}")["items"]
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in items] == [
        (namespace, "everywhere")
    ]


def test_create_twice_is_already_exists(client: Client, namespace: str) -> None:
    client.create_raw(config_map("once"))
    with pytest.raises(ApiException) as caught:
        client.create_raw(config_map("once"))
    assert caught.value.code == 409
    assert caught.value.reason == "AlreadyExists"
    assert caught.value.message == 'configmaps "once" already exists'


def test_replace_with_a_stale_resource_version_is_a_conflict(
    client: Client, namespace: str
) -> None:
    first = client.create_raw(config_map("cas", {"n": "0"}))
    second = client.replace_raw({**first, "data": {"n": "1"}})
    assert second["data"] == {"n": "1"}
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["creationTimestamp"] == first["metadata"]["creationTimestamp"]
    with pytest.raises(ApiException) as caught:
        client.replace_raw({**first, "data": {"n": "2"}})
    assert caught.value.code == 409
    assert caught.value.reason == "Conflict"
    assert "the object has been modified" in caught.value.message
    assert client.get_raw(CM, "cas")["data"] == {"n": "1"}
    # Without a resourceVersion the replace is unconditional.
    unconditional = dict(first)
    unconditional["metadata"] = {"name": "cas"}
    assert client.replace_raw({**unconditional, "data": {"n": "3"}})["data"] == {"n": "3"}


def test_replace_cannot_rename_or_move(client: Client, namespace: str) -> None:
    obj = client.create_raw(config_map("fixed"))
    with pytest.raises(ApiException) as caught:
        client.request(
            "PUT",
            CM.path(namespace, "fixed"),
            body={**obj, "metadata": {**obj["metadata"], "name": "other"}},
        )
    assert caught.value.code == 400
    assert "does not match the name on the URL" in caught.value.message
    with pytest.raises(ApiException) as moved:
        client.request(
            "PUT",
            CM.path(namespace, "fixed"),
            body={**obj, "metadata": {**obj["metadata"], "namespace": "default"}},
        )
    assert moved.value.code == 400
    with pytest.raises(ApiException) as missing:
        client.request("PUT", CM.path(namespace, "absent"), body=config_map("absent"))
    assert missing.value.code == 404


def test_system_fields_survive_a_replace(client: Client, namespace: str) -> None:
    obj = client.create_raw(config_map("sys"))
    forged = {
        **obj,
        "metadata": {
            **obj["metadata"],
            "uid": "forged",
            "creationTimestamp": "2000-01-01T00:00:00Z",
        },
    }
    replaced = client.replace_raw(forged)
    assert replaced["metadata"]["uid"] == obj["metadata"]["uid"]
    assert replaced["metadata"]["creationTimestamp"] == obj["metadata"]["creationTimestamp"]


def test_merge_patch(client: Client, namespace: str) -> None:
    client.create_raw(config_map("mp", {"a": "1", "b": "2"}, labels={"x": "1"}))
    patched = client.patch_raw(
        CM, "mp", {"data": {"b": None, "c": "3"}, "metadata": {"labels": {"y": "2"}}}
    )
    assert patched["data"] == {"a": "1", "c": "3"}
    assert patched["metadata"]["labels"] == {"x": "1", "y": "2"}
    assert client.get_raw(CM, "mp") == patched


def test_json_patch(client: Client, namespace: str) -> None:
    client.create_raw(config_map("jp", {"a": "1"}))
    patched = client.patch_raw(
        CM,
        "jp",
        [
            {"op": "test", "path": "/data/a", "value": "1"},
            {"op": "add", "path": "/data/b", "value": "2"},
            {"op": "remove", "path": "/data/a"},
        ],
        patch_type=JSON_PATCH,
    )
    assert patched["data"] == {"b": "2"}
    with pytest.raises(ApiException) as caught:
        client.patch_raw(
            CM, "jp", [{"op": "test", "path": "/data/b", "value": "9"}], patch_type=JSON_PATCH
        )
    assert caught.value.code == 422
    assert "test failed" in caught.value.message
    assert client.get_raw(CM, "jp")["data"] == {"b": "2"}


def test_strategic_merge_patch_merges_containers_by_name(client: Client, namespace: str) -> None:
    client.create_raw(deployment("smp"))
    patched = client.patch_raw(
        DEPLOY,
        "smp",
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [
                            {
                                "name": "web",
                                "image": "nginx:1.28",
                                "env": [{"name": "B", "value": "2"}],
                            },
                            {"name": "sidecar", "image": "envoy:1"},
                        ]
                    }
                }
            }
        },
        patch_type=STRATEGIC_PATCH,
    )
    web, sidecar = patched["spec"]["template"]["spec"]["containers"]
    assert web["image"] == "nginx:1.28"
    assert web["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert web["ports"][0]["containerPort"] == 80
    assert sidecar["image"] == "envoy:1"
    # A merge patch of the same list replaces it wholesale.
    merged = client.patch_raw(
        DEPLOY,
        "smp",
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x:1"}]}}}},
        patch_type=MERGE_PATCH,
    )
    assert [c["name"] for c in merged["spec"]["template"]["spec"]["containers"]] == ["only"]


def test_patch_with_a_stale_resource_version_is_a_conflict(client: Client, namespace: str) -> None:
    obj = client.create_raw(config_map("pcas"))
    client.patch_raw(CM, "pcas", {"data": {"n": "1"}})
    with pytest.raises(ApiException) as caught:
        client.patch_raw(
            CM,
            "pcas",
            {
                "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                "data": {"n": "2"},
            },
        )
    assert caught.value.code == 409


def test_patch_that_breaks_validation_is_rejected(client: Client, namespace: str) -> None:
    client.create_raw(deployment("pv"))
    with pytest.raises(ApiException) as caught:
        client.patch_raw(DEPLOY, "pv", {"spec": {"replicas": "many"}})
    assert caught.value.code == 422
    assert "spec.replicas" in caught.value.message
    with pytest.raises(ApiException) as negative:
        client.patch_raw(DEPLOY, "pv", {"spec": {"replicas": -1}})
    assert negative.value.code == 422
    assert client.get_raw(DEPLOY, "pv")["spec"]["replicas"] == 2


def test_patch_needs_a_patch_content_type(api_server: ApiServerProcess, namespace: str) -> None:
    with api_server.http() as http:
        http.post(
            f"/api/v1/namespaces/{namespace}/configmaps", json=config_map("ct")
        ).raise_for_status()
        response = http.patch(
            f"/api/v1/namespaces/{namespace}/configmaps/ct",
            content=b'{"data":{"a":"b"}}',
            headers={"Content-Type": "text/plain"},
        )
    assert response.status_code == 415
    assert response.json()["kind"] == "Status"
    assert "application/merge-patch+json" in response.json()["message"]


def test_generation_bumps_only_on_spec_changes(client: Client, namespace: str) -> None:
    created = client.create_raw(deployment("gen"))
    assert created["metadata"]["generation"] == 1
    labelled = client.patch_raw(DEPLOY, "gen", {"metadata": {"labels": {"extra": "1"}}})
    assert labelled["metadata"]["generation"] == 1
    scaled = client.patch_raw(DEPLOY, "gen", {"spec": {"replicas": 5}})
    assert scaled["metadata"]["generation"] == 2
    same = client.patch_raw(DEPLOY, "gen", {"spec": {"replicas": 5}})
    assert same["metadata"]["generation"] == 2
    assert same["metadata"]["resourceVersion"] == scaled["metadata"]["resourceVersion"]
    # Data kinds have no generation-bumping spec.
    cm = client.create_raw(config_map("gen-cm"))
    assert (
        client.patch_raw(CM, "gen-cm", {"data": {"x": "y"}})["metadata"]["generation"]
        == (cm["metadata"]["generation"])
    )


def test_generate_name(client: Client, namespace: str) -> None:
    first = client.create_raw(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}}
    )
    second = client.create_raw(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"generateName": "job-"}}
    )
    assert first["metadata"]["name"].startswith("job-")
    assert first["metadata"]["name"] != second["metadata"]["name"]


def test_cluster_scoped_kinds(client: Client) -> None:
    role = kind_info("rbac.authorization.k8s.io/v1", "ClusterRole")
    created = client.create_raw(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": "crud-viewer-" + client.namespace},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}],
        }
    )
    assert "namespace" not in created["metadata"]
    assert client.get_raw(role, created["metadata"]["name"]) == created
    client.delete_raw(role, created["metadata"]["name"])
